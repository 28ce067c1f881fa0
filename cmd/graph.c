/* cmd/graph.c: kmsctl graph. */
#include "cmd/cmd.h"

int cmd_graph(int argc, char **argv)
{
    struct cmd_opts opts;
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret == 0)
        ret = cmd_not_available("graph");
    else if (ret < 0)
        ret = KC_EXIT_OK;
    cmd_opts_release(&opts);
    return ret;
}
