/* tests/unit/test_envkms_observed.c: KC_FIELD_OBSERVED (reconcile/resource.h)
 * through the real engine, with a provider of this file whose one kind
 * reports a key that "another service" holds (as dstack.encrypted_env
 * reports the KMS's env key): the first apply records the key; the key
 * changed in the world is an external change of that field (expected the
 * last applied key, actual the new one) that needs no action; an apply
 * records the new key, and the next plan is in sync. */
#include "reconcile/exec.h"
#include "reconcile/plan.h"

#include <criterion/criterion.h>

#include "helpers/engine_run.h"
#include "helpers/state_testutil.h"

TestSuite(envkms_observed, .timeout = 30);

static const char *world_key; /* the key the other service holds now */
static bool world_made;       /* the object was created */

static void report(struct kc_op *op)
{
    struct kc_value *obs = kc_value_new_map();

    kc_value_map_set(obs, "key", kc_value_new_str(world_key));
    kc_op_set_observed(op, obs);
    kc_op_set_id(op, "obj");
    kc_op_set_output(op, "key", kc_value_new_str(world_key));
}

static int obs_observe(struct kc_op *op)
{
    if (world_made)
        report(op);
    kc_op_done(op, 0);
    return 0;
}

static int obs_apply(struct kc_op *op)
{
    world_made = true;
    report(op);
    kc_op_done(op, 0);
    return 0;
}

static int obs_delete(struct kc_op *op)
{
    world_made = false;
    kc_op_done(op, 0);
    return 0;
}

static const struct kc_field obs_fields[] = {
    { "name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "key", KC_VALUE_STRING, KC_FIELD_OBSERVED },
    { NULL, 0, 0 },
};

static const struct kc_resource_type obs_key = {
    .kind = "obs.key",
    .fields = obs_fields,
    .observe = obs_observe,
    .create = obs_apply,
    .update = obs_apply,
    .delete = obs_delete,
};

static const struct kc_resource_type *const obs_kinds[] = { &obs_key, NULL };

static const struct kc_provider_type obs_provider = {
    .name = "obs",
    .kinds = obs_kinds,
};

/* A plan of the one resource against the state at SPATH. */
static struct engine_run *plan(const char *spath)
{
    struct engine_run *r = engine_run_new(&obs_provider, NULL, spath);
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *res;

    cr_assert_eq(kc_graph_add(g, "obs.key", "a", &res, NULL), 0);
    kc_resource_set_value(res, "name", kc_value_new_str("a"));
    cr_assert_eq(engine_run_plan(r, g, false), 0, "%s", engine_run_error(r));
    return r;
}

static const char *recorded_key(struct engine_run *r)
{
    const struct kc_state_resource *rec =
        kc_state_get(engine_run_state(r), "obs.key.a");

    cr_assert_not_null(rec);
    return kc_value_str(kc_value_map_get(rec->attrs, "key"));
}

Test(envkms_observed, a_key_changed_in_the_world_is_external_drift)
{
    char *tmp = state_test_tmpdir();
    char *spath = kc_xasprintf("%s/s.json", tmp);
    struct engine_run *r;
    struct kc_plan_item *it;
    bool ext, man;

    world_made = false;
    world_key = "k1";
    r = plan(spath);
    cr_assert_eq(engine_run_item(r, "obs.key.a")->action, KC_ACTION_CREATE);
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    cr_assert_str_eq(recorded_key(r), "k1");
    engine_run_free(r);

    /* In sync: no change, no drift. */
    r = plan(spath);
    it = engine_run_item(r, "obs.key.a");
    cr_assert_eq(it->action, KC_ACTION_NOOP);
    cr_assert_eq(it->nchanges, 0);
    kc_plan_drift(engine_run_plan_of(r), &ext, &man);
    cr_assert(!ext && !man);
    engine_run_free(r);

    /* The other service changed its key: external, nothing to do here. */
    world_key = "k2";
    r = plan(spath);
    it = engine_run_item(r, "obs.key.a");
    cr_assert_eq(it->action, KC_ACTION_NOOP);
    cr_assert_eq(it->nchanges, 1);
    cr_assert_str_eq(it->changes[0].field, "key");
    cr_assert_eq(it->changes[0].cause, KC_CAUSE_EXTERNAL);
    cr_assert_str_eq(kc_value_str(it->changes[0].prior), "k1");
    cr_assert_str_eq(kc_value_str(it->changes[0].before), "k2");
    cr_assert(!it->changes[0].differs);
    kc_plan_drift(engine_run_plan_of(r), &ext, &man);
    cr_assert(ext && !man);
    /* Apply records the world's key; the next plan is in sync. */
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    cr_assert_str_eq(recorded_key(r), "k2");
    engine_run_free(r);
    r = plan(spath);
    it = engine_run_item(r, "obs.key.a");
    cr_assert_eq(it->nchanges, 0);
    kc_plan_drift(engine_run_plan_of(r), &ext, &man);
    cr_assert(!ext && !man);
    engine_run_free(r);

    state_test_rmtree(tmp);
    free(tmp);
    free(spath);
}
