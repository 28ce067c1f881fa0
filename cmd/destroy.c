/* cmd/destroy.c: kmsctl destroy. */
#include "cmd/cmd.h"

int cmd_destroy(int argc, char **argv)
{
    struct cmd_opts opts;
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret == 0)
        ret = cmd_not_available("destroy");
    else if (ret < 0)
        ret = KC_EXIT_OK;
    cmd_opts_release(&opts);
    return ret;
}
