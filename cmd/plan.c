/* cmd/plan.c: kmsctl plan. */
#include "cmd/cmd.h"

int cmd_plan(int argc, char **argv)
{
    struct cmd_opts opts;
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret == 0)
        ret = cmd_not_available("plan");
    else if (ret < 0)
        ret = KC_EXIT_OK;
    cmd_opts_release(&opts);
    return ret;
}
