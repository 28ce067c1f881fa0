/* cmd/logs.c: kmsctl logs. */
#include "cmd/cmd.h"

int cmd_logs(int argc, char **argv)
{
    struct cmd_opts opts;
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret == 0)
        ret = cmd_not_available("logs");
    else if (ret < 0)
        ret = KC_EXIT_OK;
    cmd_opts_release(&opts);
    return ret;
}
