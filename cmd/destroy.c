/* cmd/destroy.c: kmsctl destroy, take everything down in reverse order. */
#include "cmd/ui.h"

int cmd_destroy(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    ret = ui_open(&s, &opts, true, false, "kmsctl destroy", &err);
    if (ret == 0)
        ret = ui_plan(&s, true, &err);
    if (ret < 0)
        goto out;
    if (!kc_plan_has_changes(s.plan)) {
        if (!opts.json)
            printf("Nothing to destroy: the state records no resource.\n");
        goto out;
    }
    ui_print_plan(&s);
    for (size_t i = 0; i < s.plan->n; i++) {
        const struct kc_plan_item *it = &s.plan->items[i];

        if (!it->excluded && it->consent && !it->consented) {
            ret = kc_err_set(&err, KC_EPERM,
                             "'%s' delete refused: %s (consent with "
                             "--allow-identity-loss %s)",
                             it->res->address, it->consent, it->res->address);
            goto out;
        }
    }
    ret =
        ui_confirm(&s, "Destroy these resources? This cannot be undone.", &err);
    if (ret == 0)
        ret = ui_apply(&s, &err);
out:
    return ui_finish(&s, &opts, ret, &err);
}
