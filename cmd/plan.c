/* cmd/plan.c: kmsctl plan, what apply would change, field by field. */
#include "cmd/ui.h"

int cmd_plan(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs) {
        fprintf(stderr, "error: plan takes no arguments (got '%s')\n",
                opts.args[0]);
        cmd_opts_release(&opts);
        return KC_EXIT_ERROR;
    }
    ret = ui_open(&s, &opts, false, false, "kmsctl plan", &err);
    if (ret == 0)
        ret = ui_plan(&s, false, &err);
    if (ret == 0) {
        ui_print_plan(&s);
        if (opts.out) {
            ret = ui_save_plan(&s, opts.out, &err);
            if (ret == 0 && !opts.json)
                printf("\nSaved the plan to '%s': apply it with 'kmsctl "
                       "apply %s'.\n",
                       opts.out, opts.out);
        }
    }
    if (ret < 0) {
        cmd_print_err(&opts, &err);
        ret = ui_exit_code(ret);
    } else {
        ret = opts.detailed_exitcode && kc_plan_has_changes(s.plan)
                  ? KC_EXIT_DRIFT
                  : KC_EXIT_OK;
    }
    ui_close(&s);
    cmd_opts_release(&opts);
    return ret;
}
