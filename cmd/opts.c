/* cmd/opts.c: the options every verb shares, parsed once. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <unistd.h>

enum {
    OPT_STATE = 256,
    OPT_JSON,
    OPT_NO_COLOR,
    OPT_DEBUG,
    OPT_LOCK_TIMEOUT,
    OPT_PARALLELISM,
    OPT_TARGET,
    OPT_AUTO_APPROVE,
    OPT_DETAILED,
    OPT_OUT,
    OPT_PROM,
    OPT_SET,
    OPT_IDENTITY,
    OPT_LITERAL,
    OPT_FOLLOW,
};

static const struct option long_opts[] = {
    { "file", required_argument, NULL, 'f' },
    { "state", required_argument, NULL, OPT_STATE },
    { "json", no_argument, NULL, OPT_JSON },
    { "no-color", no_argument, NULL, OPT_NO_COLOR },
    { "debug", no_argument, NULL, OPT_DEBUG },
    { "lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT },
    { "parallelism", required_argument, NULL, OPT_PARALLELISM },
    { "target", required_argument, NULL, OPT_TARGET },
    { "auto-approve", no_argument, NULL, OPT_AUTO_APPROVE },
    { "detailed-exitcode", no_argument, NULL, OPT_DETAILED },
    { "out", required_argument, NULL, OPT_OUT },
    { "prom", required_argument, NULL, OPT_PROM },
    { "set", required_argument, NULL, OPT_SET },
    { "allow-identity-loss", required_argument, NULL, OPT_IDENTITY },
    { "allow-literal-secrets", no_argument, NULL, OPT_LITERAL },
    { "follow", no_argument, NULL, OPT_FOLLOW },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void push(char ***list, size_t *n, const char *s)
{
    *list = kc_xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = kc_xstrdup(s);
}

double cmd_parse_duration(const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    if (*end == '\0' || strcmp(end, "s") == 0)
        return v;
    if (strcmp(end, "ms") == 0)
        return v / 1000.0;
    if (strcmp(end, "m") == 0)
        return v * 60.0;
    if (strcmp(end, "h") == 0)
        return v * 3600.0;
    return -1;
}

int cmd_parse_opts(struct cmd_opts *opts, int argc, char **argv)
{
    int c;
    bool no_color = false;
    const char *nc = getenv("NO_COLOR");

    memset(opts, 0, sizeof(*opts));
    opts->verb = argv[0];
    opts->file = "kmsctl.yaml";
    opts->parallelism = 10;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:vh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            opts->file = optarg;
            break;
        case 'v':
            opts->verbose++;
            break;
        case 'h':
            opts->help = true;
            break;
        case OPT_STATE:
            opts->state_path = optarg;
            break;
        case OPT_JSON:
            opts->json = true;
            break;
        case OPT_NO_COLOR:
            no_color = true;
            break;
        case OPT_DEBUG:
            opts->debug = true;
            break;
        case OPT_LOCK_TIMEOUT:
            opts->lock_timeout = cmd_parse_duration(optarg);
            if (opts->lock_timeout < 0) {
                fprintf(stderr,
                        "error: --lock-timeout: '%s' is not a duration "
                        "(e.g. 30s, 2m)\n",
                        optarg);
                return KC_EXIT_ERROR;
            }
            break;
        case OPT_PARALLELISM: {
            char *end;
            long n = strtol(optarg, &end, 10);

            if (*end || n < 1 || n > 1000) {
                fprintf(stderr,
                        "error: --parallelism: '%s' is not a number from 1 "
                        "to 1000\n",
                        optarg);
                return KC_EXIT_ERROR;
            }
            opts->parallelism = (int)n;
            break;
        }
        case OPT_TARGET:
            push(&opts->targets, &opts->ntargets, optarg);
            break;
        case OPT_AUTO_APPROVE:
            opts->auto_approve = true;
            break;
        case OPT_DETAILED:
            opts->detailed_exitcode = true;
            break;
        case OPT_OUT:
            opts->out = optarg;
            break;
        case OPT_PROM:
            opts->prom = optarg;
            break;
        case OPT_SET:
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "error: --set: expected KEY=VALUE, got '%s'\n",
                        optarg);
                return KC_EXIT_ERROR;
            }
            push(&opts->sets, &opts->nsets, optarg);
            break;
        case OPT_IDENTITY:
            push(&opts->identity_loss, &opts->nidentity_loss, optarg);
            break;
        case OPT_LITERAL:
            opts->allow_literal_secrets = true;
            break;
        case OPT_FOLLOW:
            opts->follow = true;
            break;
        case ':':
            fprintf(stderr, "error: option '%s' needs a value\n",
                    argv[optind - 1]);
            return KC_EXIT_ERROR;
        default:
            fprintf(stderr,
                    "error: unknown option '%s' (see kmsctl %s --help)\n",
                    argv[optind - 1], opts->verb);
            return KC_EXIT_ERROR;
        }
    }
    for (int i = optind; i < argc; i++)
        push(&opts->args, &opts->nargs, argv[i]);
    opts->color = !no_color && !(nc && nc[0]) && isatty(STDOUT_FILENO);
    if (opts->help) {
        cmd_usage(stdout, opts->verb);
        return -1;
    }
    return 0;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

bool cmd_parse_opts_or_exit(struct cmd_opts *opts, int argc, char **argv,
                            int *exit_code)
{
    int ret = cmd_parse_opts(opts, argc, argv);

    *exit_code = ret < 0 ? KC_EXIT_OK : ret;
    if (ret == 0)
        return true;
    cmd_opts_release(opts);
    return false;
}

void cmd_opts_release(struct cmd_opts *opts)
{
    free_list(opts->targets, opts->ntargets);
    free_list(opts->sets, opts->nsets);
    free_list(opts->identity_loss, opts->nidentity_loss);
    free_list(opts->args, opts->nargs);
    memset(opts, 0, sizeof(*opts));
}

void cmd_print_err(const struct cmd_opts *opts, const struct kc_err *err)
{
    (void)opts;
    fprintf(stderr, "error: %s\n", err->msg[0] ? err->msg : "failed");
}

int cmd_not_available(const char *verb)
{
    fprintf(stderr, "error: 'kmsctl %s' is not available yet\n", verb);
    return KC_EXIT_ERROR;
}
