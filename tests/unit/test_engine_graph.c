/* tests/unit/test_engine_graph.c: the graph (order, cycles, missing
 * dependencies, references) and the field diff of reconcile/plan in
 * isolation: desired vs observed vs last applied, causes and actions. */
#include "reconcile/graph.h"

#include <criterion/criterion.h>

#include "reconcile/plan.h"
#include "reconcile/registry.h"
#include "tests/unit/helpers/engine_run.h"
#include "tests/unit/helpers/fake_provider.h"
#include "tests/unit/helpers/state_testutil.h"

static struct kc_resource *add(struct kc_graph *g, const char *kind,
                               const char *name)
{
    struct kc_resource *r;

    cr_assert_eq(kc_graph_add(g, kind, name, &r, NULL), 0);
    return r;
}

Test(graph, cycle_error_names_the_addresses_on_the_cycle_only)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_err err = { 0 };

    add(g, "chain", "kms");
    add(g, "gcp.instance", "kms");
    add(g, "aws.instance", "host");
    kc_graph_add_edge(g, "chain.kms", "gcp.instance.kms");
    kc_graph_add_edge(g, "gcp.instance.kms", "chain.kms");
    kc_graph_add_edge(g, "aws.instance.host", "chain.kms");
    cr_assert_eq(kc_graph_sort(g, &err), KC_ECYCLE);
    cr_assert_not_null(strstr(err.msg, "'chain.kms'"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "'gcp.instance.kms'"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "aws.instance.host"), "%s", err.msg);
    kc_graph_free(g);
}

Test(graph, a_self_reference_is_a_cycle)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_err err = { 0 };

    add(g, "fake.thing", "a");
    kc_graph_add_edge(g, "fake.thing.a", "fake.thing.a");
    cr_assert_eq(kc_graph_sort(g, &err), KC_ECYCLE);
    cr_assert_str_eq(err.msg,
                     "dependency cycle: 'fake.thing.a' -> 'fake.thing.a'");
    kc_graph_free(g);
}

Test(graph, a_missing_dependency_is_named)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_err err = { 0 };

    add(g, "fake.thing", "a");
    kc_graph_add_edge(g, "fake.thing.a", "fake.thing.ghost");
    cr_assert_eq(kc_graph_sort(g, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg, "'fake.thing.a' depends on 'fake.thing.ghost', "
                              "which is not in the graph");
    kc_graph_free(g);
}

Test(graph, order_puts_dependencies_first)
{
    struct kc_graph *g = kc_graph_new();
    size_t pos[4];
    const char *names[] = { "a", "b", "c", "d" };

    /* d -> c -> b -> a, declared in reverse. */
    for (int i = 3; i >= 0; i--)
        add(g, "fake.thing", names[i]);
    kc_graph_add_edge(g, "fake.thing.b", "fake.thing.a");
    kc_graph_add_edge(g, "fake.thing.c", "fake.thing.b");
    kc_graph_add_edge(g, "fake.thing.d", "fake.thing.c");
    kc_graph_add_edge(g, "fake.thing.d", "fake.thing.a");
    cr_assert_eq(kc_graph_sort(g, NULL), 0);
    for (size_t i = 0; i < 4; i++)
        pos[kc_graph_order(g, i)->name[0] - 'a'] = i;
    cr_assert_lt(pos[0], pos[1]);
    cr_assert_lt(pos[1], pos[2]);
    cr_assert_lt(pos[2], pos[3]);
    cr_assert(kc_graph_depends(g, kc_graph_find(g, "fake.thing.d")->index,
                               kc_graph_find(g, "fake.thing.a")->index));
    cr_assert_not(kc_graph_depends(g, kc_graph_find(g, "fake.thing.a")->index,
                                   kc_graph_find(g, "fake.thing.d")->index));
    kc_graph_free(g);
}

Test(graph, references_resolve_through_the_longest_alias_or_an_address)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *r;
    struct kc_err err = { 0 };
    char *out = NULL;

    add(g, "chain", "kms");
    add(g, "chain.app", "nitro-keys");
    add(g, "gcp.instance", "dstack-kms");
    kc_graph_alias(g, "contracts.kms", "chain.kms");
    kc_graph_alias(g, "contracts.apps.nitro-keys", "chain.app.nitro-keys");
    kc_graph_alias(g, "kms_vms.dstack-kms", "gcp.instance.dstack-kms");
    cr_assert_eq(
        kc_graph_resolve_ref(g, "contracts.kms.address", &r, &out, &err), 0);
    cr_assert_str_eq(r->address, "chain.kms");
    cr_assert_str_eq(out, "address");
    free(out);
    cr_assert_eq(kc_graph_resolve_ref(g, "contracts.apps.nitro-keys.app_id", &r,
                                      &out, &err),
                 0);
    cr_assert_str_eq(r->address, "chain.app.nitro-keys");
    cr_assert_str_eq(out, "app_id");
    free(out);
    cr_assert_eq(kc_graph_resolve_ref(g, "kms_vms.dstack-kms.external_ip", &r,
                                      &out, &err),
                 0);
    cr_assert_str_eq(r->address, "gcp.instance.dstack-kms");
    free(out);
    cr_assert_eq(kc_graph_resolve_ref(g, "gcp.instance.dstack-kms.self_link",
                                      &r, &out, &err),
                 0);
    cr_assert_str_eq(out, "self_link");
    free(out);
    cr_assert_eq(
        kc_graph_resolve_ref(g, "kms_vms.other.external_ip", &r, &out, &err),
        KC_ENOENT);
    cr_assert_str_eq(err.msg, "reference 'kms_vms.other.external_ip' names "
                              "no resource of this manifest");
    cr_assert_null(out);
    kc_graph_free(g);
}

Test(graph, adding_an_address_twice_is_refused)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_err err = { 0 };

    add(g, "fake.thing", "a");
    cr_assert_eq(kc_graph_add(g, "fake.thing", "a", NULL, &err), KC_EEXIST);
    cr_assert_str_eq(err.msg, "resource 'fake.thing.a' is defined twice");
    kc_graph_free(g);
}

/* --- diff --- */

static int no_op(struct kc_op *op)
{
    (void)op;
    return 0;
}

static const struct kc_field diff_fields[] = {
    { "v", KC_VALUE_STRING, 0 },
    { "size", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "label", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "secret", KC_VALUE_STRING, KC_FIELD_SENSITIVE },
    { "link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

static const struct kc_resource_type diff_type = {
    .kind = "fake.thing",
    .fields = diff_fields,
    .observe = no_op,
    .create = no_op,
    .update = no_op,
    .delete = no_op,
};

struct diff_case {
    const char *d, *o, *l; /* field v: desired, observed, last applied */
    enum kc_action action;
    enum kc_cause cause;
    bool differs;
};

static struct kc_value *map1(const char *field, const char *v)
{
    struct kc_value *m = kc_value_new_map();

    if (v)
        kc_value_map_set(m, field, kc_value_new_str(v));
    return m;
}

/* A plan of one resource, fake.thing.x of TYPE, that exists; the test
 * fills its desired and observed fields. */
static struct kc_plan *plan1(const struct kc_resource_type *type)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_plan *plan;

    add(g, "fake", "thing.x");
    cr_assert_eq(kc_graph_sort(g, NULL), 0);
    plan = kc_plan_new(g);
    plan->items[0].type = type;
    plan->items[0].exists = true;
    return plan;
}

/* One resource, field FIELD: desired D, observed O (NULL: not reported),
 * last applied L. */
static struct kc_plan *diff1(const char *field, const char *d, const char *o,
                             const char *l, struct kc_value **prior)
{
    struct kc_plan *plan;
    struct kc_plan_item *it;

    plan = plan1(&diff_type);
    it = &plan->items[0];
    it->desired = map1(field, d);
    it->observed = map1(field, o);
    it->in_state = true;
    *prior = map1(field, l);
    kc_plan_diff(it, *prior, "salt", false);
    return plan;
}

Test(plan, desired_observed_and_last_applied_give_action_and_cause)
{
    static const struct diff_case cases[] = {
        /* in sync */
        { "a", "a", "a", KC_ACTION_NOOP, KC_CAUSE_NONE, false },
        /* a commit not applied yet */
        { "b", "a", "a", KC_ACTION_UPDATE, KC_CAUSE_MANIFEST, true },
        /* changed outside kmsctl */
        { "a", "z", "a", KC_ACTION_UPDATE, KC_CAUSE_EXTERNAL, true },
        /* both: the external change is what drift must report */
        { "b", "z", "a", KC_ACTION_UPDATE, KC_CAUSE_EXTERNAL, true },
        /* changed outside to exactly the new manifest value: nothing to do,
         * yet the world did change outside kmsctl */
        { "b", "b", "a", KC_ACTION_NOOP, KC_CAUSE_EXTERNAL, false },
        /* not observable (write-only): the last applied value stands in */
        { "a", NULL, "a", KC_ACTION_NOOP, KC_CAUSE_NONE, false },
        { "b", NULL, "a", KC_ACTION_UPDATE, KC_CAUSE_MANIFEST, true },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        const struct diff_case *c = &cases[i];
        struct kc_value *prior;
        struct kc_plan *plan = diff1("v", c->d, c->o, c->l, &prior);
        const struct kc_plan_item *it = &plan->items[0];

        cr_assert_eq(it->action, c->action, "case %zu: action %s", i,
                     kc_action_name(it->action));
        if (c->cause == KC_CAUSE_NONE) {
            cr_assert_eq(it->nchanges, 0, "case %zu", i);
        } else {
            cr_assert_eq(it->nchanges, 1, "case %zu", i);
            cr_assert_eq(it->changes[0].cause, c->cause, "case %zu", i);
            cr_assert_eq(it->changes[0].differs, c->differs, "case %zu", i);
        }
        kc_value_free(prior);
        kc_plan_free(plan);
    }
}

Test(plan, a_force_new_field_replaces)
{
    struct kc_value *prior;
    struct kc_plan *plan;
    struct kc_plan_item *it;

    plan = plan1(&diff_type);
    it = &plan->items[0];
    it->desired = kc_value_new_map();
    kc_value_map_set(it->desired, "size", kc_value_new_int(2));
    kc_value_map_set(it->desired, "v", kc_value_new_str("b"));
    it->observed = kc_value_new_map();
    kc_value_map_set(it->observed, "size", kc_value_new_int(1));
    kc_value_map_set(it->observed, "v", kc_value_new_str("a"));
    prior = kc_value_dup(it->observed);
    kc_plan_diff(it, prior, "salt", false);
    cr_assert_eq(it->action, KC_ACTION_REPLACE);
    cr_assert_str_eq(it->forced_by, "size");
    kc_value_free(prior);
    kc_plan_free(plan);
}

Test(plan, ignore_drift_only_counts_manifest_changes)
{
    struct kc_value *prior;
    struct kc_plan *plan = diff1("label", "a", "z", "a", &prior);

    cr_assert_eq(plan->items[0].action, KC_ACTION_NOOP);
    cr_assert_eq(plan->items[0].nchanges, 0);
    kc_value_free(prior);
    kc_plan_free(plan);
    plan = diff1("label", "b", "z", "a", &prior);
    cr_assert_eq(plan->items[0].action, KC_ACTION_UPDATE);
    cr_assert_eq(plan->items[0].changes[0].cause, KC_CAUSE_MANIFEST);
    kc_value_free(prior);
    kc_plan_free(plan);
}

Test(plan, a_secret_is_compared_through_its_salted_digest)
{
    struct kc_plan *plan;
    struct kc_plan_item *it;
    struct kc_value *secret = kc_value_new_secret("pa55word", 8);
    struct kc_value *prior = kc_value_new_map();
    struct kc_buf out;

    plan = plan1(&diff_type);
    it = &plan->items[0];
    it->desired = kc_value_new_map();
    kc_value_map_set(it->desired, "secret", kc_value_dup(secret));
    it->observed = kc_value_new_map(); /* write-only: not reported */
    kc_value_map_set(prior, "secret", kc_plan_stored_form(secret, "salt"));
    kc_plan_diff(it, prior, "salt", false);
    cr_assert_eq(it->action, KC_ACTION_NOOP);
    /* Another salt gives another digest: a change, shown as (sensitive). */
    kc_plan_diff(it, prior, "other-salt", false);
    cr_assert_eq(it->action, KC_ACTION_UPDATE);
    kc_buf_init(&out, 0);
    kc_plan_render(plan, false, &out);
    cr_assert_not_null(
        strstr(kc_buf_str(&out), "    secret: (sensitive) → (sensitive)"), "%s",
        kc_buf_str(&out));
    cr_assert_null(strstr(kc_buf_str(&out), "pa55word"));
    kc_buf_release(&out);
    kc_value_free(secret);
    kc_value_free(prior);
    kc_plan_free(plan);
}

Test(plan, an_unknown_value_is_a_change_known_after_apply)
{
    struct kc_plan *plan;
    struct kc_plan_item *it;
    struct kc_value *prior;
    struct kc_buf out;

    plan = plan1(&diff_type);
    it = &plan->items[0];
    it->desired = kc_value_new_map();
    kc_value_map_set(it->desired, "v",
                     kc_value_new_unknown("kms_vms.x.external_ip"));
    it->observed = map1("v", "1.2.3.4");
    prior = map1("v", "1.2.3.4");
    kc_plan_diff(it, prior, "salt", false);
    cr_assert_eq(it->action, KC_ACTION_UPDATE);
    cr_assert(it->changes[0].unknown);
    kc_buf_init(&out, 0);
    kc_plan_render(plan, false, &out);
    cr_assert_not_null(
        strstr(kc_buf_str(&out), "v: \"1.2.3.4\" → (known after apply)"), "%s",
        kc_buf_str(&out));
    kc_buf_release(&out);
    kc_value_free(prior);
    kc_plan_free(plan);
}

/* --- registry --- */

static const struct kc_resource_type *const reg_kinds[] = { &diff_type, NULL };
static const struct kc_provider_type reg_fake = {
    .name = "fake",
    .kinds = reg_kinds,
};

Test(registry, a_provider_that_is_not_linked_is_not_built)
{
    struct kc_registry *reg = kc_registry_new();
    const struct kc_resource_type *t;
    struct kc_err err = { 0 };
    bool checked = false;

    /* A provider this executable never refers to is not pulled from the
     * archive: its weak symbol is NULL here, as for a provider whose folder
     * is not built (kmsctl itself links the whole archive). */
    for (size_t i = 0; kc_registry_builtins[i].name; i++) {
        char kind[64];

        if (kc_registry_builtins[i].type)
            continue;
        kc_snprintf(kind, sizeof(kind), "%s.thing",
                    kc_registry_builtins[i].name);
        cr_assert_eq(kc_registry_kind(reg, kind, &t, NULL, &err), KC_ENOENT);
        cr_assert_not_null(strstr(err.msg, "is not built"), "%s", err.msg);
        checked = true;
    }
    cr_assert(checked);
    cr_assert_eq(kc_registry_kind(reg, "zzz.thing", &t, NULL, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg, "unknown provider 'zzz'");
    cr_assert_eq(kc_registry_kind(reg, "nodot", &t, NULL, &err), KC_EINVAL);
    kc_registry_free(reg);
}

Test(registry, kinds_are_found_through_their_provider)
{
    struct kc_registry *reg = kc_registry_new_empty();
    const struct kc_resource_type *t;
    const struct kc_provider_type *p;
    struct kc_err err = { 0 };

    kc_registry_add(reg, &reg_fake);
    cr_assert_eq(kc_registry_kind(reg, "fake.thing", &t, &p, &err), 0);
    cr_assert_eq(t, &diff_type);
    cr_assert_eq(p, &reg_fake);
    cr_assert_eq(kc_registry_kind(reg, "fake.nope", &t, &p, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg, "provider 'fake' has no kind 'fake.nope'");
    kc_registry_free(reg);
}

/* --- the helper for provider tests (tests/unit/helpers/engine_run.h) --- */

Test(engine_run, drives_a_provider_through_plan_and_apply)
{
    char *tmp = state_test_tmpdir();
    char *world = kc_xasprintf("%s/world.json", tmp);
    char *spath = kc_xasprintf("%s/s.json", tmp);
    struct kc_value *cfg = kc_value_new_map();
    struct engine_run *r;
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *res;

    fake_world_init(world);
    kc_value_map_set(cfg, "world", kc_value_new_str(world));
    r = engine_run_new(&kc_provider_fake, cfg, spath);
    cr_assert_eq(kc_graph_add(g, "fake.thing", "a", &res, NULL), 0);
    kc_resource_set_value(res, "value", kc_value_new_str("A"));
    cr_assert_eq(engine_run_plan(r, g, false), 0, "%s", engine_run_error(r));
    cr_assert_eq(engine_run_item(r, "fake.thing.a")->action, KC_ACTION_CREATE);
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    cr_assert(fake_world_has(world, "fake.thing.a"));
    cr_assert_not_null(kc_state_get(engine_run_state(r), "fake.thing.a"));
    engine_run_free(r);

    /* A failure names the resource and the provider's message. */
    fake_world_fail(world, "fake.thing.b", "create");
    r = engine_run_new(&kc_provider_fake, cfg, spath);
    g = kc_graph_new();
    kc_graph_add(g, "fake.thing", "a", &res, NULL);
    kc_resource_set_value(res, "value", kc_value_new_str("A"));
    kc_graph_add(g, "fake.thing", "b", &res, NULL);
    cr_assert_eq(engine_run_plan(r, g, false), 0, "%s", engine_run_error(r));
    cr_assert_eq(engine_run_apply(r), KC_EREMOTE);
    cr_assert_str_eq(engine_run_error(r),
                     "fake.thing.b: create: fake: injected failure of create");
    engine_run_free(r);
    kc_value_free(cfg);
    state_test_rmtree(tmp);
    free(tmp);
    free(world);
    free(spath);
}

static const struct kc_field map_fields[] = {
    { "tags", KC_VALUE_MAP, 0 },
    { NULL, 0, 0 },
};

static const struct kc_resource_type map_type = {
    .kind = "fake.thing",
    .fields = map_fields,
    .observe = no_op,
    .create = no_op,
    .update = no_op,
    .delete = no_op,
};

Test(plan, a_changed_map_shows_the_keys_that_changed)
{
    struct kc_plan *plan;
    struct kc_plan_item *it;
    struct kc_value *before = kc_value_new_map(), *prior;
    struct kc_value *after = kc_value_new_map();
    struct kc_buf out;

    kc_value_map_set(before, "env", kc_value_new_str("dev"));
    kc_value_map_set(before, "team", kc_value_new_str("kms"));
    kc_value_map_set(before, "old", kc_value_new_str("x"));
    kc_value_map_set(after, "env", kc_value_new_str("prod"));
    kc_value_map_set(after, "team", kc_value_new_str("kms"));
    kc_value_map_set(after, "new", kc_value_new_str("y"));
    plan = plan1(&map_type);
    it = &plan->items[0];
    it->desired = kc_value_new_map();
    kc_value_map_set(it->desired, "tags", after);
    it->observed = kc_value_new_map();
    kc_value_map_set(it->observed, "tags", kc_value_dup(before));
    prior = kc_value_new_map();
    kc_value_map_set(prior, "tags", before);
    kc_plan_diff(it, prior, "salt", false);
    cr_assert_eq(it->action, KC_ACTION_UPDATE);
    kc_buf_init(&out, 0);
    kc_plan_render(plan, false, &out);
    cr_assert_str_eq(kc_buf_str(&out),
                     "~ fake.thing.x update\n"
                     "    tags.env: \"dev\" → \"prod\"\n"
                     "    tags.new: (none) → \"y\"\n"
                     "    tags.old: \"x\" → (none)\n"
                     "Plan: 0 to create, 1 to update, 0 to replace, 0 to "
                     "delete.\n");
    kc_buf_release(&out);
    kc_value_free(prior);
    kc_plan_free(plan);
}
