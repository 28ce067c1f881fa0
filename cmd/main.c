/* cmd/main.c: kmsctl's entry point, dispatching to one file per verb. */
#include "cmd/cmd.h"

#include <curl/curl.h>

struct cmd_entry {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct cmd_entry commands[] = {
    { "validate", cmd_validate, "check a manifest against the schema" },
    { "plan", cmd_plan, "show what apply would change, field by field" },
    { "apply", cmd_apply, "make the world match the manifest" },
    { "destroy", cmd_destroy, "take everything down, in reverse order" },
    { "drift", cmd_drift, "compare the world with the manifest (for cron)" },
    { "output", cmd_output, "print outputs recorded in the state" },
    { "graph", cmd_graph, "print the resource graph as Graphviz DOT" },
    { "state", cmd_state, "list, show, remove records; unlock" },
    { "logs", cmd_logs, "serial console output of a KMS VM" },
    { "render", cmd_render, "write a KMS VM's disk contents to a folder" },
    { "version", cmd_version, "print the version" },
    { NULL, NULL, NULL },
};

void cmd_usage(FILE *out, const char *verb)
{
    if (!verb) {
        fprintf(out, "usage: kmsctl [--version] [--help] VERB [options]\n\n"
                     "Verbs:\n");
        for (size_t i = 0; commands[i].name; i++)
            fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    } else {
        const char *summary = "";

        for (size_t i = 0; commands[i].name; i++)
            if (strcmp(commands[i].name, verb) == 0)
                summary = commands[i].summary;
        fprintf(out, "usage: kmsctl %s [options]%s\n  %s\n", verb,
                strcmp(verb, "render") == 0 ? " KMS_VM --out DIR"
                : strcmp(verb, "logs") == 0 ? " KMS_VM [--follow]"
                : strcmp(verb, "state") == 0
                    ? " list|show ADDR|rm ADDR|unlock [--if-stale]"
                : strcmp(verb, "output") == 0 ? " [NAME]"
                : strcmp(verb, "apply") == 0  ? " [PLANFILE]"
                                              : "",
                summary);
    }
    fprintf(out,
            "\nGlobal options:\n"
            "  -f, --file FILE          manifest (default ./kmsctl.yaml)\n"
            "      --state PATH         state file (default "
            ".kmsctl/<name>.state.json beside the manifest)\n"
            "      --json               machine-readable output\n"
            "      --no-color           no colour (also when NO_COLOR is set "
            "or stdout is not a TTY)\n"
            "  -v                       more output (repeatable)\n"
            "      --debug              trace HTTP requests, secrets redacted\n"
            "      --lock-timeout DUR   wait for the state lock (default 0)\n"
            "      --unlock-stale       apply/destroy/drift: first clear a "
            "stale lock whose\n"
            "                           holder is a dead process on this host "
            "(warns, naming it)\n"
            "      --if-stale           state unlock: only such a lock; else "
            "exit 3\n"
            "      --parallelism N      resources at once (default 10)\n"
            "      --target ADDRESS     limit to ADDRESS and its dependencies\n"
            "      --auto-approve       apply/destroy without asking\n"
            "      --detailed-exitcode  plan: exit 2 when changes are pending\n"
            "      --out FILE           plan: save the plan; render: folder\n"
            "      --prom FILE          drift: write a Prometheus textfile\n"
            "      --set KEY=VALUE      render: supply an unknown value\n"
            "      --allow-identity-loss ADDRESS\n"
            "                           consent to replacing/destroying a KMS "
            "VM\n"
            "      --allow-literal-secrets\n"
            "                           accept literal secrets in the "
            "manifest\n"
            "  -h, --help               this text\n"
            "      --version            print the version\n"
            "\nExit codes:\n"
            "  0    success; drift: in sync\n"
            "  1    error\n"
            "  2    plan --detailed-exitcode: changes pending; drift: the "
            "world changed outside kmsctl\n"
            "  3    the state lock is held by another process, or a stale lock "
            "needs\n"
            "       'kmsctl state unlock' (see --unlock-stale)\n"
            "  4    drift: only manifest changes not applied yet\n"
            "  130  interrupted\n");
}

/* Global options given before the verb ("kmsctl -v --no-color plan"):
 * moves the verb to ARGV[1] so that the verb's own parser sees the options
 * after it (getopt_long permutes). Options that take a value skip it. Leaves
 * ARGV alone when no verb follows the options. */
static void hoist_verb(int argc, char **argv)
{
    static const char *const with_value[] = {
        "-f",
        "--file",
        "--state",
        "--lock-timeout",
        "--parallelism",
        "--target",
        "--out",
        "--prom",
        "--set",
        "--allow-identity-loss",
    };
    int i = 1;

    while (i < argc && argv[i][0] == '-' && argv[i][1] != '\0') {
        bool takes = false;

        if (strcmp(argv[i], "--") == 0)
            return;
        for (size_t k = 0; k < KC_ARRAY_SIZE(with_value); k++)
            if (strcmp(argv[i], with_value[k]) == 0)
                takes = true;
        i += takes ? 2 : 1;
    }
    if (i <= 1 || i >= argc)
        return;
    for (size_t c = 0; commands[c].name; c++) {
        if (strcmp(commands[c].name, argv[i]) == 0) {
            char *verb = argv[i];

            memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof(*argv));
            argv[1] = verb;
            return;
        }
    }
}

int main(int argc, char **argv)
{
    int ret;

    hoist_verb(argc, argv);
    if (argc < 2) {
        cmd_usage(stderr, NULL);
        return KC_EXIT_ERROR;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        /* "kmsctl help VERB": that verb's usage. */
        for (size_t i = 0; argc > 2 && commands[i].name; i++)
            if (strcmp(commands[i].name, argv[2]) == 0) {
                cmd_usage(stdout, argv[2]);
                return KC_EXIT_OK;
            }
        cmd_usage(stdout, NULL);
        return KC_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; commands[i].name; i++) {
        if (strcmp(commands[i].name, argv[1]) != 0)
            continue;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "error: cannot initialise libcurl\n");
            return KC_EXIT_ERROR;
        }
        ret = commands[i].fn(argc - 1, argv + 1);
        curl_global_cleanup();
        return ret;
    }
    fprintf(stderr, "error: unknown verb '%s' (see kmsctl --help)\n", argv[1]);
    return KC_EXIT_ERROR;
}
