/* reconcile/plan.h: what apply would do, resource by resource and field by
 * field (DESIGN.md §3), its JSON form (schemas/plan.schema.json) and its
 * rendering for people.
 *
 * A plan is made by the engine (reconcile/exec.h: kc_engine_refresh) from a
 * graph, the state and what observe found. Three values meet per field:
 *   desired  the manifest's value (interpolated; may be UNKNOWN)
 *   observed what observe read from the world (a field it cannot read is
 *            absent, and the last-applied value stands in for it)
 *   prior    what kmsctl last applied (the state)
 * A field changes when desired differs from the world. Its cause is
 * EXTERNAL when the world differs from the last applied value (someone
 * changed it outside kmsctl) and MANIFEST when the manifest differs from
 * the last applied value (a commit not applied yet).
 */
#ifndef KC_RECONCILE_PLAN_H
#define KC_RECONCILE_PLAN_H

#include "reconcile/buf.h"
#include "reconcile/graph.h"
#include "reconcile/kc.h"
#include "reconcile/resource.h"

#include <json-c/json.h>

#define KC_PLAN_FORMAT 1

enum kc_cause {
    KC_CAUSE_NONE = 0,
    KC_CAUSE_EXTERNAL,
    KC_CAUSE_MANIFEST,
};

struct kc_plan_change {
    char *field;
    struct kc_value *before; /* the world (observed, else prior); or NULL */
    struct kc_value *after;  /* desired; NULL: not set */
    struct kc_value *prior;  /* last applied; NULL: none */
    bool sensitive;
    bool force_new;
    bool unknown; /* after holds an unknown value */
    bool differs; /* desired differs from the world: causes the action */
    enum kc_cause cause;
};

enum kc_item_state {
    KC_ITEM_PENDING = 0,
    KC_ITEM_RUNNING,
    KC_ITEM_OBSERVED, /* refresh: observed, waiting for its dependencies */
    KC_ITEM_DONE,
    KC_ITEM_FAILED,
    KC_ITEM_SKIPPED,
};

struct kc_op; /* private to exec.c */

struct kc_plan_item {
    /* read-only */
    struct kc_resource *res; /* borrowed from the plan's graph */
    const struct kc_resource_type *type;
    const struct kc_provider_type *ptype;
    struct kc_provider *prov;
    enum kc_action action;
    bool excluded;   /* not selected by --target */
    char *reason;    /* "deleted outside kmsctl", "not in the manifest"... */
    char *forced_by; /* replace: the field that forces it */
    struct kc_value *desired;  /* map, evaluated */
    struct kc_value *observed; /* map, or NULL when absent */
    struct kc_value *outputs;  /* map: known outputs */
    char *id;
    bool exists;         /* observe found it */
    bool in_state;       /* the state has a record */
    enum kc_cause cause; /* of a create/delete; per field otherwise */
    struct kc_plan_change *changes;
    size_t nchanges, capchanges;
    char **warnings;
    size_t nwarnings, capwarnings;
    char *consent; /* the reason consent is needed, or NULL */
    bool consented;
    /* execution (exec.c) */
    enum kc_item_state st;
    bool released;  /* apply: done, its record being written: dependents
                       may start */
    bool forgotten; /* apply: removed from the state without a call */
    char *error;    /* failure message */
    double elapsed; /* seconds */
    struct kc_op *op;
};

struct kc_plan {
    /* read-only */
    struct kc_graph *graph;     /* owned */
    struct kc_plan_item *items; /* by graph index; never moves */
    size_t n;
    bool destroy;
    char *lineage;
    int64_t serial; /* of the state the plan was made from */
    char *deployment;
    char **targets; /* --target addresses the plan was limited to */
    size_t ntargets;
    char *manifest;        /* path, or NULL */
    char *manifest_digest; /* "sha256:<hex>" of the file, or NULL */
    /* Objects carrying the deployment's label that are in neither the
     * manifest nor the state (found by the kinds' list). */
    struct kc_plan_unmanaged {
        char *address;
        char *id;
    } * unmanaged;
    size_t nunmanaged, capunmanaged;
};

/* A plan over G (taken), every item noop. */
struct kc_plan *kc_plan_new(struct kc_graph *g);
void kc_plan_free(struct kc_plan *plan);
struct kc_plan_item *kc_plan_find(const struct kc_plan *plan, const char *addr);

/* Computes ITEM's action and changes from desired/observed/prior (sets
 * action, changes, cause, forced_by, reason). SALT digests sensitive values
 * the way the state does. PRIOR is the last-applied attrs map or NULL. */
void kc_plan_diff(struct kc_plan_item *item, const struct kc_value *prior,
                  const char *salt, bool destroy);

struct kc_plan_counts {
    size_t create, update, replace, delete, read, noop;
};
void kc_plan_count(const struct kc_plan *plan, struct kc_plan_counts *c);
/* Records an unmanaged object (once per address; ID may be NULL). */
void kc_plan_add_unmanaged(struct kc_plan *plan, const char *addr,
                           const char *id);
/* True if any selected item has an action other than noop/read. */
bool kc_plan_has_changes(const struct kc_plan *plan);
/* KC_EPERM, ERR naming the first, if a selected item with an action other
 * than noop needs consent it was not given (--allow-identity-loss); else 0.
 * Apply checks it before it asks for confirmation, the engine again. */
int kc_plan_check_consent(const struct kc_plan *plan, struct kc_err *err);

/* Drift: whether the world changed outside kmsctl (EXTERNAL) and whether
 * the manifest is ahead of the state (MANIFEST). */
void kc_plan_drift(const struct kc_plan *plan, bool *external, bool *manifest);

/* The plan as JSON per schemas/plan.schema.json (caller puts). */
struct json_object *kc_plan_to_json(const struct kc_plan *plan);
/* The drift report: {"in_sync", "external", "manifest", "differences":
 * [{address, field, expected, actual, cause}]} (caller puts). */
struct json_object *kc_plan_drift_json(const struct kc_plan *plan);

/* The plan for people into OUT: "+ create", "~ update", "-/+ replace
 * (forced by 'x')", "- delete", one line per changed field "old → new",
 * and the summary line. COLOR adds ANSI colours. */
void kc_plan_render(const struct kc_plan *plan, bool color, struct kc_buf *out);
/* "Plan: N to create, N to update, N to replace, N to delete." */
void kc_plan_render_summary(const struct kc_plan *plan, struct kc_buf *out);

/* Values as the state stores them: sensitive ones become their salted
 * digest strings (NULL-safe; caller frees). */
struct kc_value *kc_plan_stored_form(const struct kc_value *v,
                                     const char *salt);

#endif
