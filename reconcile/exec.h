/* reconcile/exec.h: the engine on the libuv loop. It prepares a graph
 * (kinds from the registry, records only in the state added as orphans,
 * providers initialised), refreshes it into a plan (every resource observed
 * at once with its dependencies' last known outputs, and the kinds' list of
 * labelled objects; then, in dependency order, desired values evaluated
 * with references bound to what the dependencies' plans say, field diffs,
 * review hooks), and applies a plan (dependency order for
 * create/update/replace, reverse order for delete, late binding,
 * --parallelism and per-provider/per-kind limits, the state written after
 * every finished resource (a finished resource releases its dependents
 * while its record is written), failures isolated to dependents, SIGINT
 * handled by the caller through kc_engine_cancel).
 *
 * Async contract (kc_engine_refresh, kc_engine_apply): < 0 nothing started,
 * ERR says why, CB never called; 0: CB runs exactly once, later, from the
 * loop, with 0 or a negative KC_E* (eng->err says why).
 */
#ifndef KC_RECONCILE_EXEC_H
#define KC_RECONCILE_EXEC_H

#include "reconcile/graph.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/plan.h"
#include "reconcile/registry.h"
#include "reconcile/state.h"

#include <uv.h>

enum kc_event_type {
    KC_EVENT_STARTED = 0,
    KC_EVENT_FINISHED,
    KC_EVENT_FAILED,
    KC_EVENT_SKIPPED,
    KC_EVENT_PROGRESS,
};

struct kc_event {
    enum kc_event_type type;
    const char *address;
    const char *what;    /* "observe", "create", "delete"... */
    double elapsed;      /* seconds since started */
    const char *message; /* failure, skip reason or progress; or NULL */
};

struct kc_engine;
typedef void (*kc_engine_event_cb)(void *data, const struct kc_event *ev);
typedef void (*kc_engine_cb)(struct kc_engine *eng, int status);

/* Resolves reference REF: 0 and *OUT a new value (UNKNOWN when not known
 * yet), or < 0. */
typedef int (*kc_resolve_fn)(void *ctx, const char *ref, struct kc_value **out,
                             struct kc_err *err);
/* Evaluates manifest node NODE with references resolved by RESOLVE. Set by
 * the caller (reconcile/expand.h: kc_expand_eval, DATA a struct
 * kc_expand_eval_ctx); NULL: node attributes are refused. */
typedef int (*kc_eval_node_fn)(void *data, const struct kc_node *node,
                               kc_resolve_fn resolve, void *ctx,
                               struct kc_value **out, struct kc_err *err);

struct kc_engine {
    /* public: set before kc_engine_prepare, borrowed */
    uv_loop_t *loop;
    struct kc_log *log;
    struct kc_http *http;
    const struct kc_registry *reg;
    struct kc_state *state;
    const struct kc_value *providers; /* map: provider name -> config */
    const char *deployment;
    const char *manifest_dir; /* given to providers; may be NULL */
    int parallelism;          /* 0: 10 */
    char *const *consent;     /* --allow-identity-loss addresses */
    size_t nconsent;
    char *const *targets; /* --target addresses */
    size_t ntargets;
    kc_eval_node_fn eval_node;
    void *eval_data;
    kc_engine_event_cb on_event;
    void *event_data;
    /* read-only */
    struct kc_err err;
    bool canceled;
    size_t max_running; /* highest number of busy ops at once seen */
    size_t max_waiting; /* highest number of only-waiting ops at once seen */
    /* private */
    struct kc_plan *plan;
    struct kc_provider **provs;
    size_t nprovs;
    size_t running;
    size_t nwaiting; /* running ops that said kc_op_waiting(op, true) */
    size_t nlisting; /* list ops in flight */
    int phase;       /* 1 refresh, 2 apply */
    bool destroy, readonly;
    int status;
    kc_engine_cb cb;
    uv_timer_t kick;
    bool kick_open, kick_armed;
    struct kc_op **deferred;
    size_t ndeferred, capdeferred;
    bool finishing;
    struct kc_state_write_req final_write;
};

/* Makes *PLAN from G (taken, also on failure): kinds resolved (KC_ENOENT
 * "provider 'gcp' is not built"), orphans from the state added (records
 * whose address is not in G; they will be deleted), the graph sorted
 * (KC_ECYCLE), --target applied, the providers used initialised. DESTROY:
 * everything in the state or the graph is to be deleted. */
int kc_engine_prepare(struct kc_engine *eng, struct kc_graph *g, bool destroy,
                      struct kc_plan **plan, struct kc_err *err);
/* Observes every selected resource and diffs it (the plan's actions). With
 * eng->readonly (drift) no op may write the state, review hooks are not
 * run and kc_engine_apply is refused. A refresh itself never writes. */
int kc_engine_refresh(struct kc_engine *eng, struct kc_plan *plan,
                      kc_engine_cb cb, struct kc_err *err);
/* Applies PLAN (refreshed). Refused with KC_EPERM before anything starts when
 * an item needs consent that was not given. The callback's status is 0 when
 * every item succeeded, KC_EREMOTE when some failed (see the items),
 * KC_ECANCELED after kc_engine_cancel. */
int kc_engine_apply(struct kc_engine *eng, struct kc_plan *plan,
                    kc_engine_cb cb, struct kc_err *err);
/* Starts nothing new; running ops see kc_op_is_canceled. */
void kc_engine_cancel(struct kc_engine *eng);
/* Cleans the providers up and closes the engine's handles (run the loop
 * afterwards until it ends). Not while a refresh or apply runs. */
void kc_engine_release(struct kc_engine *eng);

#endif
