/* tests/unit/test_unmanaged.c: what plan --json and drift --json say about
 * objects nobody manages, so that an operator can act on each one: its
 * address, its kind and the provider's own id. Objects found by a kind's
 * list (the fake provider, through the real engine) and entries a resource
 * watches (on-chain allowlist entries, recorded by kc_op_found_entry): both
 * in the plan's "unmanaged" (valid against schemas/plan.schema.json) and in
 * drift's JSON, an entry counted once, with its resource. Also what a
 * crashed run leaves behind: a write-ahead intent whose object exists and
 * matches the manifest is resolved by the next apply. */
#include "reconcile/plan.h"

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "reconcile/graph.h"
#include "reconcile/schema.h"
#include "reconcile/state.h"
#include "tests/unit/helpers/engine_run.h"
#include "tests/unit/helpers/fake_provider.h"
#include "tests/unit/helpers/state_testutil.h"

static char *dir, *world_path, *state_path;
static struct kc_value *pcfg;

static void suite_init(void)
{
    dir = state_test_tmpdir();
    world_path = kc_xasprintf("%s/world.json", dir);
    state_path = kc_xasprintf("%s/s.json", dir);
    fake_world_init(world_path);
    pcfg = kc_value_new_map();
    kc_value_map_set(pcfg, "world", kc_value_new_str(world_path));
}

static void suite_fini(void)
{
    kc_value_free(pcfg);
    state_test_rmtree(dir);
    free(dir);
    free(world_path);
    free(state_path);
}

TestSuite(unmanaged, .init = suite_init, .fini = suite_fini, .timeout = 60);

/* One managed fake.thing, "keep". */
static struct kc_graph *one_thing(void)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *res = NULL;

    cr_assert_eq(kc_graph_add(g, "fake.thing", "keep", &res, NULL), 0);
    kc_resource_set_value(res, "value", kc_value_new_str("k"));
    kc_resource_set_value(res, "size", kc_value_new_int(1));
    return g;
}

/* Puts an object the engine did not make into the fake world. */
static void add_outside(const char *addr, const char *id)
{
    struct json_object *w = fake_world_load(world_path), *objs, *o;

    cr_assert(json_object_object_get_ex(w, "objects", &objs));
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "attrs", json_object_new_object());
    json_object_object_add(objs, addr, o);
    fake_world_save(world_path, w);
    json_object_put(w);
}

static const char *str_of(struct json_object *o, const char *key)
{
    struct json_object *v;

    cr_assert(json_object_object_get_ex(o, key, &v), "no '%s' in %s", key,
              json_object_to_json_string(o));
    return json_object_get_string(v);
}

/* The element of array ARR whose ADDRESS (and KEY=VALUE when KEY) match. */
static struct json_object *find(struct json_object *arr, const char *address,
                                const char *key, const char *value)
{
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);

        if (strcmp(str_of(o, "address"), address) == 0 &&
            (!key || strcmp(str_of(o, key), value) == 0))
            return o;
    }
    return NULL;
}

Test(unmanaged, listed_objects_carry_kind_and_provider_id)
{
    struct engine_run *r = engine_run_new(&kc_provider_fake, pcfg, state_path);
    struct json_object *pj, *dj, *arr, *u, *d;
    struct kc_err err = { 0 };

    cr_assert_eq(engine_run_plan(r, one_thing(), false), 0, "%s",
                 engine_run_error(r));
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    engine_run_free(r);
    add_outside("fake.thing.stray", "fake-id-42");

    r = engine_run_new(&kc_provider_fake, pcfg, state_path);
    engine_run_engine(r)->readonly = true; /* as drift runs it */
    cr_assert_eq(engine_run_plan(r, one_thing(), false), 0, "%s",
                 engine_run_error(r));
    pj = kc_plan_to_json(engine_run_plan_of(r));
    cr_assert_eq(kc_schema_check_json("plan", pj, &err), 0, "%s", err.msg);
    cr_assert(json_object_object_get_ex(pj, "unmanaged", &arr));
    cr_assert_eq(json_object_array_length(arr), 1, "%s",
                 json_object_to_json_string(arr));
    u = find(arr, "fake.thing.stray", NULL, NULL);
    cr_assert_not_null(u);
    cr_assert_str_eq(str_of(u, "kind"), "fake.thing");
    cr_assert_str_eq(str_of(u, "id"), "fake-id-42");
    cr_assert_not(json_object_get_boolean(json_object_object_get(u, "entry")));

    dj = kc_plan_drift_json(engine_run_plan_of(r));
    cr_assert(json_object_object_get_ex(dj, "differences", &arr));
    d = find(arr, "fake.thing.stray", NULL, NULL);
    cr_assert_not_null(d, "%s", json_object_to_json_string(dj));
    cr_assert_str_eq(str_of(d, "kind"), "fake.thing");
    cr_assert_str_eq(str_of(d, "id"), "fake-id-42");
    cr_assert_str_eq(str_of(d, "cause"), "external");
    cr_assert(json_object_object_get_ex(dj, "unmanaged", &arr));
    cr_assert_not_null(find(arr, "fake.thing.stray", "id", "fake-id-42"));
    cr_assert_eq(kc_plan_count_unmanaged(engine_run_plan_of(r)), 1);
    json_object_put(pj);
    json_object_put(dj);
    engine_run_free(r);
}

Test(unmanaged, entries_of_a_resource_are_listed_once_and_counted_with_it)
{
    static const char h1[] = "0x77777777777777777777777777777777777777777777"
                             "77777777777777777777";
    static const char h2[] = "0x88888888888888888888888888888888888888888888"
                             "88888888888888888888";
    struct kc_plan *plan = kc_plan_new(kc_graph_new());
    struct json_object *pj, *dj, *arr, *u;
    struct kc_buf out;
    struct kc_err err = { 0 };

    plan->deployment = kc_xstrdup("d");
    plan->lineage = kc_xstrdup("00000000-0000-4000-8000-000000000000");
    kc_plan_add_unmanaged(plan, "chain.kms_unmanaged.main", "os_image", h1,
                          true);
    kc_plan_add_unmanaged(plan, "chain.kms_unmanaged.main", "device", h2, true);
    /* The same entry again (a second observe): once. */
    kc_plan_add_unmanaged(plan, "chain.kms_unmanaged.main", "os_image", h1,
                          true);
    kc_plan_add_unmanaged(plan, "aws.instance.old", "aws.instance",
                          "i-0123456789abcdef0", false);
    kc_plan_add_unmanaged(plan, "aws.instance.old", "aws.instance",
                          "i-0123456789abcdef0", false);
    cr_assert_eq(plan->nunmanaged, 3);
    cr_assert_eq(kc_plan_count_unmanaged(plan), 1);

    pj = kc_plan_to_json(plan);
    cr_assert_eq(kc_schema_check_json("plan", pj, &err), 0, "%s", err.msg);
    cr_assert(json_object_object_get_ex(pj, "unmanaged", &arr));
    u = find(arr, "chain.kms_unmanaged.main", "id", h1);
    cr_assert_not_null(u, "%s", json_object_to_json_string(arr));
    cr_assert_str_eq(str_of(u, "kind"), "os_image");
    cr_assert(json_object_get_boolean(json_object_object_get(u, "entry")));
    u = find(arr, "chain.kms_unmanaged.main", "id", h2);
    cr_assert_str_eq(str_of(u, "kind"), "device");
    u = find(arr, "aws.instance.old", NULL, NULL);
    cr_assert_str_eq(str_of(u, "id"), "i-0123456789abcdef0");

    /* drift: the entries are listed, but their difference is the
     * resource's (not one per entry). */
    dj = kc_plan_drift_json(plan);
    cr_assert(json_object_object_get_ex(dj, "differences", &arr));
    cr_assert_null(find(arr, "chain.kms_unmanaged.main", NULL, NULL));
    cr_assert_not_null(find(arr, "aws.instance.old", "kind", "aws.instance"));
    cr_assert(json_object_object_get_ex(dj, "unmanaged", &arr));
    cr_assert_eq(json_object_array_length(arr), 3);
    cr_assert_not_null(find(arr, "chain.kms_unmanaged.main", "kind", "device"));

    /* The text plan names the labelled object, not the entries again. */
    kc_buf_init(&out, 0);
    kc_plan_render(plan, false, &out);
    cr_assert_not_null(strstr(kc_buf_str(&out), "! aws.instance.old "
                                                "(i-0123456789abcdef0)"));
    cr_assert_null(strstr(kc_buf_str(&out), h1), "%s", kc_buf_str(&out));
    kc_buf_release(&out);
    json_object_put(pj);
    json_object_put(dj);
    kc_plan_free(plan);
}

Test(unmanaged, a_crashed_runs_intent_is_resolved_once_its_object_exists)
{
    struct engine_run *r = engine_run_new(&kc_provider_fake, pcfg, state_path);
    struct kc_state *st = NULL;
    struct kc_value *data = kc_value_new_map();
    struct kc_err err = { 0 };

    cr_assert_eq(engine_run_plan(r, one_thing(), false), 0, "%s",
                 engine_run_error(r));
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    engine_run_free(r);
    /* As a run killed after its intent but before it learnt the result. */
    cr_assert_eq(kc_state_load(state_path, &st, &err), 0, "%s", err.msg);
    kc_value_map_set(data, "token", kc_value_new_str("t-1"));
    cr_assert_eq(
        kc_state_intent_put(st, "fake.thing.keep", "create", data, &err), 0,
        "%s", err.msg);
    cr_assert_eq(kc_state_write(st, &err), 0, "%s", err.msg);
    kc_state_free(st);
    kc_value_free(data);

    /* A plan (read-only, as drift) leaves it; an apply resolves it. */
    r = engine_run_new(&kc_provider_fake, pcfg, state_path);
    engine_run_engine(r)->readonly = true;
    cr_assert_eq(engine_run_plan(r, one_thing(), false), 0, "%s",
                 engine_run_error(r));
    cr_assert_not_null(
        kc_state_intent_get(engine_run_state(r), "fake.thing.keep"));
    engine_run_free(r);
    r = engine_run_new(&kc_provider_fake, pcfg, state_path);
    cr_assert_eq(engine_run_plan(r, one_thing(), false), 0, "%s",
                 engine_run_error(r));
    cr_assert_eq(engine_run_item(r, "fake.thing.keep")->action, KC_ACTION_NOOP);
    cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
    engine_run_free(r);
    cr_assert_eq(kc_state_load(state_path, &st, &err), 0, "%s", err.msg);
    cr_assert_null(kc_state_intent_get(st, "fake.thing.keep"));
    cr_assert_not_null(kc_state_get(st, "fake.thing.keep"));
    kc_state_free(st);
}
