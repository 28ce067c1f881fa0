/* cmd/cmd.h: the verbs of kmsctl and what they share (options, exit codes).
 * Only cmd/ prints to stdout, runs the loop or picks an exit code. */
#ifndef KC_CMD_CMD_H
#define KC_CMD_CMD_H

#include "reconcile/kc.h"

enum kc_exit {
    KC_EXIT_OK = 0,
    KC_EXIT_ERROR = 1,
    KC_EXIT_DRIFT = 2, /* plan --detailed-exitcode: changes; drift: external */
    KC_EXIT_LOCKED = 3,
    KC_EXIT_PENDING = 4, /* drift: only manifest changes not applied yet */
    KC_EXIT_INTERRUPTED = 130,
};

struct cmd_opts {
    const char *verb;
    const char *file;       /* -f/--file, default ./kmsctl.yaml */
    const char *state_path; /* --state */
    const char *out;        /* --out */
    const char *prom;       /* --prom */
    bool json;
    bool color; /* on a TTY, not --no-color, NO_COLOR unset */
    int verbose;
    bool debug;
    bool help;
    bool allow_literal_secrets;
    bool auto_approve;
    bool detailed_exitcode;
    bool follow;
    int parallelism;     /* --parallelism, default 10 */
    double lock_timeout; /* --lock-timeout, seconds */
    char **targets;      /* --target, repeatable */
    size_t ntargets;
    char **sets; /* --set KEY=VALUE, repeatable */
    size_t nsets;
    char **identity_loss; /* --allow-identity-loss ADDRESS, repeatable */
    size_t nidentity_loss;
    char **args; /* positional arguments after the verb */
    size_t nargs;
};

/* Parses ARGV (ARGV[0] is the verb). Prints usage and errors itself. Returns
 * 0, or KC_EXIT_ERROR (bad usage), or -1 when --help was printed (exit 0). */
int cmd_parse_opts(struct cmd_opts *opts, int argc, char **argv);
/* cmd_parse_opts() as a verb starts: true when the verb goes on (*EXIT_CODE
 * is 0); false when it stops there, OPTS released and *EXIT_CODE what the
 * verb returns (KC_EXIT_OK after --help, KC_EXIT_ERROR after bad usage). */
bool cmd_parse_opts_or_exit(struct cmd_opts *opts, int argc, char **argv,
                            int *exit_code);
void cmd_opts_release(struct cmd_opts *opts);
void cmd_print_err(const struct cmd_opts *opts, const struct kc_err *err);
/* Prints the usage of VERB (or of kmsctl when NULL) to OUT. */
void cmd_usage(FILE *out, const char *verb);
/* Parses "30s", "2m", "1h", "500ms", "10" (seconds). -1 when invalid. */
double cmd_parse_duration(const char *s);

int cmd_validate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_drift(int argc, char **argv);
int cmd_output(int argc, char **argv);
int cmd_graph(int argc, char **argv);
int cmd_state(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_version(int argc, char **argv);
/* For verbs that are not built yet: says so, exits 1. */
int cmd_not_available(const char *verb);

#endif
