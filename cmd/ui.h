/* cmd/ui.h: what the engine verbs (plan, apply, destroy, drift, graph)
 * share: a session that loads the manifest, checks it, expands it, loads
 * (and for mutating verbs locks) the state, runs the engine on the loop with
 * progress rendering and signal handling, and maps errors to exit codes. */
#ifndef KC_CMD_UI_H
#define KC_CMD_UI_H

#include "cmd/cmd.h"

#include <uv.h>

#include "reconcile/exec.h"
#include "reconcile/expand.h"
#include "reconcile/lock.h"
#include "reconcile/manifest.h"

struct ui_session {
    struct cmd_opts *opts;
    struct kc_doc *doc;
    char *name;
    char *state_path;
    char *manifest_digest;
    struct kc_state *st;
    struct kc_lock *lock;
    struct kc_value *providers;
    struct kc_registry *reg;
    struct kc_log log;
    uv_loop_t loop;
    bool loop_open;
    struct kc_http *http;
    struct kc_engine eng;
    struct kc_expand_eval_ctx evalctx;
    struct kc_plan *plan;
    /* progress */
    bool tty;
    uv_timer_t tick;
    bool tick_open;
    struct ui_live {
        char *address;
        char *what;
        uint64_t start_ms;
        char *note;
    } * live;
    size_t nlive, caplive;
    size_t drawn;
    /* signals */
    uv_signal_t sigint, sigterm;
    bool sig_open;
    int nsignals;
    bool done;
    int status;
    bool refreshing; /* observing: progress is quieter */
    uint64_t apply_start_ms;
    char **saved_targets; /* apply PLANFILE: the plan's --target */
    size_t nsaved_targets;
    /* the y/N prompt */
    uv_tty_t in;
    bool in_open, confirming;
    int answer; /* 0 none yet, 1 yes, -1 no */
    char rbuf[256];
    char line[16];
    size_t linelen;
};

/* Loads the manifest (opts->file), checks it, loads the state; LOCK takes
 * the state lock for COMMAND ("kmsctl apply"). READONLY: the engine can
 * write nothing (drift). */
int ui_open(struct ui_session *s, struct cmd_opts *opts, bool lock,
            bool readonly, const char *command, struct kc_err *err);
/* Expands, prepares and refreshes into s->plan (DESTROY: everything goes). */
int ui_plan(struct ui_session *s, bool destroy, struct kc_err *err);
/* Applies s->plan with live progress, then prints the summary. Returns 0,
 * KC_EREMOTE (some failed), KC_ECANCELED or another error. */
int ui_apply(struct ui_session *s, struct kc_err *err);
/* Releases everything (runs the loop until its handles closed). */
void ui_close(struct ui_session *s);

/* Prints the plan to stdout: text; with --json the plan JSON (plan) or one
 * line {"event": "plan", "plan": ...} among the events (apply, destroy). */
void ui_print_plan(struct ui_session *s);
/* Writes the plan JSON to PATH (0600, atomically). */
int ui_save_plan(struct ui_session *s, const char *path, struct kc_err *err);
/* Asks "QUESTION [y/N]" on a TTY; without a TTY refuses unless
 * --auto-approve. 0: go on; KC_EPERM (exit 1): the operator said no, or no
 * TTY. */
int ui_confirm(struct ui_session *s, const char *question, struct kc_err *err);
/* The exit code of an engine error. */
int ui_exit_code(int ret);
/* The end of apply and destroy: when RET < 0 prints ERR (unless RET is
 * KC_EREMOTE: the engine already reported what failed) and maps RET to an
 * exit code; then closes S and releases OPTS. Returns the exit code. */
int ui_finish(struct ui_session *s, struct cmd_opts *opts, int ret,
              const struct kc_err *err);

#endif
