/* tests/unit/test_engine.c: the engine (graph, plan, exec) with the fake
 * provider: ordering, the parallelism bound, failure isolation, late
 * binding, cycles, the state after each resource (kill -9), cancellation,
 * plan JSON against its schema, drift causes, idempotence. */
#include "reconcile/exec.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/expand.h"
#include "reconcile/json.h"
#include "reconcile/schema.h"
#include "tests/unit/helpers/fake_provider.h"
#include "tests/unit/helpers/state_testutil.h"
#include "tests/unit/helpers/test_run.h"

static char *tmp, *world, *spath;

static void setup(void)
{
    tmp = state_test_tmpdir();
    world = kc_xasprintf("%s/world.json", tmp);
    spath = kc_xasprintf("%s/test.state.json", tmp);
    fake_world_init(world);
}

static void teardown(void)
{
    state_test_rmtree(tmp);
    free(tmp);
    free(world);
    free(spath);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 60);

static void run_init(struct test_run *r, int64_t delay_ms, int parallelism)
{
    struct kc_value *fake = kc_value_new_map();

    kc_value_map_set(fake, "world", kc_value_new_str(world));
    kc_value_map_set(fake, "delay_ms", kc_value_new_int(delay_ms));
    test_run_init(r, &kc_provider_fake, fake, spath, "test", false);
    r->eng.parallelism = parallelism;
}

static struct kc_resource *thing(struct kc_graph *g, const char *kind,
                                 const char *name, const char *value)
{
    struct kc_resource *r;

    cr_assert_eq(kc_graph_add(g, kind, name, &r, NULL), 0);
    if (value)
        kc_resource_set_value(r, "value", kc_value_new_str(value));
    return r;
}

/* A graph of one resource: KIND.NAME with value VALUE. */
static struct kc_graph *one_graph(const char *kind, const char *name,
                                  const char *value)
{
    struct kc_graph *g = kc_graph_new();

    thing(g, kind, name, value);
    return g;
}

/* Plans G (taken; DESTROY: everything goes) and applies it, no delay:
 * both must succeed. */
static void plan_and_apply(struct kc_graph *g, bool destroy)
{
    struct test_run r;

    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, destroy), 0, "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
}

/* A graph: a <- b <- c (c refers to b's ip, b to a's id) and d alone. */
static struct kc_graph *chain_graph(void)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *b, *c;

    thing(g, "fake.thing", "a", "A");
    b = thing(g, "fake.thing", "b", "B");
    kc_resource_set_ref(b, "ref", "fake.thing.a", "id");
    c = thing(g, "fake.thing", "c", "C");
    kc_resource_set_ref(c, "ref", "fake.thing.b", "ip");
    thing(g, "fake.thing", "d", "D");
    return g;
}

static int log_at(const char *line)
{
    int i = fake_world_log_index(world, line);

    cr_assert_geq(i, 0, "'%s' is not in the world's log", line);
    return i;
}

Test(engine, apply_creates_in_dependency_order_and_destroy_reverses_it)
{
    struct test_run r;

    run_init(&r, 5, 10);
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.c")->action,
                 KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(log_at("create fake.thing.a"), log_at("create fake.thing.b"));
    cr_assert_lt(log_at("create fake.thing.b"), log_at("create fake.thing.c"));
    test_run_fini(&r);

    run_init(&r, 5, 10);
    cr_assert_eq(test_run_plan(&r, chain_graph(), true), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(log_at("delete fake.thing.c"), log_at("delete fake.thing.b"));
    cr_assert_lt(log_at("delete fake.thing.b"), log_at("delete fake.thing.a"));
    cr_assert_eq(kc_state_count(r.st), 0);
    cr_assert_not(fake_world_has(world, "fake.thing.d"));
    test_run_fini(&r);
}

/* Applies 12 independent fake.things of DELAY_MS each from nothing (a new
 * world and state) at PARALLELISM; WAIT: the ops only wait. Returns the
 * apply's wall time in ms; R is left to the caller's checks and run_fini.
 * The timing tests compare two such runs on the same machine rather than
 * one run with an absolute bound, which a loaded CI box can exceed. */
static uint64_t apply_twelve(struct test_run *r, int64_t delay_ms,
                             int parallelism, bool wait)
{
    struct kc_graph *g = kc_graph_new();
    uint64_t t0;

    fake_world_init(world);
    (void)unlink(spath);
    for (int i = 0; i < 12; i++) {
        char name[16];

        kc_snprintf(name, sizeof(name), "n%d", i);
        thing(g, "fake.thing", name, "x");
    }
    run_init(r, delay_ms, parallelism);
    if (wait)
        kc_value_map_set(KC_UNCONST(kc_value_map_get(r->pcfg, "fake")), "wait",
                         kc_value_new_bool(true));
    cr_assert_eq(test_run_plan(r, g, false), 0, "%s", r->eng.err.msg);
    fake_world_reset_counters(world); /* count the apply only */
    t0 = uv_hrtime();
    cr_assert_eq(test_run_apply(r), 0, "%s", r->eng.err.msg);
    cr_assert_eq(fake_world_counter(world, "create"), 12);
    return (uv_hrtime() - t0) / 1000000;
}

Test(engine, parallelism_bounds_the_ops_in_flight)
{
    struct test_run r;
    uint64_t serial, par;

    serial = apply_twelve(&r, 100, 1, false);
    cr_assert_eq(fake_world_counter(world, "max_running"), 1);
    test_run_fini(&r);
    par = apply_twelve(&r, 100, 3, false);
    cr_assert_eq(fake_world_counter(world, "max_running"), 3);
    cr_assert_eq(r.eng.max_running, 3);
    /* 12 ops of 100 ms, 3 at once: 4 rounds, not 12 as at --parallelism 1;
     * at least half of those 8 rounds saved. */
    cr_assert_gt(serial, par + 4 * 100, "--parallelism 3: %llu ms, 1: %llu ms",
                 (unsigned long long)par, (unsigned long long)serial);
    test_run_fini(&r);
}

Test(engine, ops_that_only_wait_do_not_hold_a_parallelism_slot)
{
    struct test_run r;
    uint64_t held, waited;

    held = apply_twelve(&r, 200, 3, false);
    test_run_fini(&r);
    waited = apply_twelve(&r, 200, 3, true);
    cr_assert_eq(fake_world_counter(world, "max_running"), 12);
    cr_assert_eq(r.eng.max_waiting, 12);
    cr_assert_leq(r.eng.max_running, 3);
    /* 12 ops that only wait 200 ms: all at once, not 4 rounds of 3 as ops
     * that hold their slot; at least half of those 3 rounds saved. */
    cr_assert_gt(held, waited + 3 * 200 / 2,
                 "waiting: %llu ms, holding: %llu ms",
                 (unsigned long long)waited, (unsigned long long)held);
    test_run_fini(&r);
}

Test(engine, a_failure_skips_dependents_and_spares_independent_branches)
{
    struct test_run r;

    fake_world_fail(world, "fake.thing.b", "create");
    run_init(&r, 5, 10);
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), KC_EREMOTE);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.a")->st, KC_ITEM_DONE);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.b")->st, KC_ITEM_FAILED);
    cr_assert_not_null(
        strstr(kc_plan_find(r.plan, "fake.thing.b")->error, "injected"));
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.c")->st, KC_ITEM_SKIPPED);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.d")->st, KC_ITEM_DONE);
    cr_assert_not_null(kc_state_get(r.st, "fake.thing.a"));
    cr_assert_null(kc_state_get(r.st, "fake.thing.b"));
    cr_assert_null(kc_state_get(r.st, "fake.thing.c"));
    cr_assert_not_null(kc_state_get(r.st, "fake.thing.d"));
    cr_assert_eq(fake_world_log_index(world, "create fake.thing.c"), -1);
    test_run_fini(&r);
}

Test(engine, unknown_values_are_bound_when_their_dependency_finished)
{
    struct test_run r;
    struct kc_plan_item *c;
    struct kc_buf out;
    struct json_object *w, *ip_a, *ref_b;

    run_init(&r, 5, 10);
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    c = kc_plan_find(r.plan, "fake.thing.c");
    cr_assert(kc_value_has_unknown(kc_value_map_get(c->desired, "ref")));
    kc_buf_init(&out, 0);
    kc_plan_render(r.plan, false, &out);
    cr_assert_not_null(strstr(kc_buf_str(&out), "ref: (known after apply)"),
                       "%s", kc_buf_str(&out));
    cr_assert_not_null(strstr(kc_buf_str(&out), "Plan: 4 to create, 0 to "
                                                "update, 0 to replace, 0 to "
                                                "delete."));
    kc_buf_release(&out);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    w = fake_world_load(world);
    {
        struct json_object *objs, *b, *cc, *battrs, *cattrs;

        json_object_object_get_ex(w, "objects", &objs);
        json_object_object_get_ex(objs, "fake.thing.b", &b);
        json_object_object_get_ex(objs, "fake.thing.c", &cc);
        json_object_object_get_ex(b, "attrs", &battrs);
        json_object_object_get_ex(cc, "attrs", &cattrs);
        json_object_object_get_ex(battrs, "ip", &ip_a);
        json_object_object_get_ex(cattrs, "ref", &ref_b);
        cr_assert_str_eq(json_object_get_string(ref_b),
                         json_object_get_string(ip_a));
    }
    json_object_put(w);
    test_run_fini(&r);
}

Test(engine, a_cycle_is_an_error_naming_its_addresses)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *a, *b;
    struct test_run r;

    a = thing(g, "fake.thing", "a", "A");
    b = thing(g, "fake.thing", "b", "B");
    thing(g, "fake.thing", "c", "C");
    kc_resource_set_ref(a, "ref", "fake.thing.b", "id");
    kc_resource_set_ref(b, "ref", "fake.thing.a", "id");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), KC_ECYCLE);
    cr_assert_not_null(strstr(r.eng.err.msg, "'fake.thing.a'"), "%s",
                       r.eng.err.msg);
    cr_assert_not_null(strstr(r.eng.err.msg, "'fake.thing.b'"));
    cr_assert_null(strstr(r.eng.err.msg, "'fake.thing.c'"));
    test_run_fini(&r);
}

Test(engine, a_second_apply_makes_no_mutating_call)
{
    struct test_run r;
    int64_t serial;

    plan_and_apply(chain_graph(), false);
    fake_world_reset_counters(world);

    run_init(&r, 0, 10);
    serial = kc_state_serial(r.st);
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_not(kc_plan_has_changes(r.plan));
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_eq(fake_world_counter(world, "mutating"), 0);
    cr_assert_eq(fake_world_counter(world, "observe"), 4);
    /* Nothing changed, so the state was not even rewritten. */
    cr_assert_eq(kc_state_serial(r.st), serial);
    test_run_fini(&r);
}

static struct kc_graph *seq_graph(int n)
{
    struct kc_graph *g = kc_graph_new();

    for (int i = 0; i < n; i++) {
        char name[16], dep[32];
        struct kc_resource *res;

        kc_snprintf(name, sizeof(name), "s%d", i);
        res = thing(g, "fake.thing", name, "v");
        if (i > 0) {
            kc_snprintf(dep, sizeof(dep), "fake.thing.s%d", i - 1);
            kc_resource_set_ref(res, "ref", dep, "id");
        }
    }
    return g;
}

static void pipe_event(void *data, const struct kc_event *ev)
{
    int fd = *(int *)data;
    char line[256];

    if (ev->type != KC_EVENT_FINISHED)
        return;
    kc_snprintf(line, sizeof(line), "%s\n", ev->address);
    if (write(fd, line, strlen(line)) < 0)
        _exit(4);
}

/* kill -9 in the middle of an apply: the state holds exactly the resources
 * that were reported finished, and the next apply converges without
 * duplicates. */
Test(engine, the_state_holds_exactly_what_finished_when_killed)
{
    int fds[2];
    pid_t pid;
    char buf[4096];
    size_t len = 0;
    int lines = 0;
    struct test_run r;

    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        run_init(&r, 400, 10); /* wide margin for a loaded machine */
        if (test_run_plan(&r, seq_graph(8), false) < 0)
            _exit(2);
        r.eng.on_event = pipe_event;
        r.eng.event_data = &fds[1];
        test_run_apply(&r);
        _exit(3); /* never reached: killed first */
    }
    close(fds[1]);
    while (lines < 3 && len < sizeof(buf) - 1) {
        ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);

        cr_assert_gt(n, 0, "the child ended early");
        for (ssize_t i = 0; i < n; i++)
            lines += buf[len + (size_t)i] == '\n';
        len += (size_t)n;
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(WIFSIGNALED(state_test_wait(pid)));
    /* What it reported before it died (on a slow box, more than the 3 we
     * waited for may have finished meanwhile): the rest of the pipe. */
    for (;;) {
        ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);

        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[len + (size_t)i] == '\n';
        len += (size_t)n;
    }
    close(fds[0]);
    buf[len] = '\0';
    cr_assert_lt(lines, 8, "the child was not killed in the middle");
    {
        char want[512] = "";

        for (int i = 0; i < lines; i++)
            kc_snprintf(want + strlen(want), sizeof(want) - strlen(want),
                        "fake.thing.s%d\n", i);
        cr_assert_str_eq(buf, want);
    }

    run_init(&r, 0, 10);
    cr_assert_eq(kc_state_count(r.st), (size_t)lines);
    for (int i = 0; i < lines; i++) {
        char addr[32];

        kc_snprintf(addr, sizeof(addr), "fake.thing.s%d", i);
        cr_assert_not_null(kc_state_get(r.st, addr), "%s", addr);
    }
    cr_assert_eq(test_run_plan(&r, seq_graph(8), false), 0, "%s",
                 r.eng.err.msg);
    {
        char last[32], next[32];

        kc_snprintf(last, sizeof(last), "fake.thing.s%d", lines - 1);
        kc_snprintf(next, sizeof(next), "fake.thing.s%d", lines);
        cr_assert_eq(kc_plan_find(r.plan, last)->action, KC_ACTION_NOOP);
        cr_assert_eq(kc_plan_find(r.plan, next)->action, KC_ACTION_CREATE);
    }
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_state_count(r.st), 8);
    cr_assert_eq(fake_world_counter(world, "create"), 8);
    test_run_fini(&r);
}

static struct test_run *sig_run;

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    kc_engine_cancel(&sig_run->eng);
    uv_close((uv_handle_t *)h, NULL);
}

static void raise_on_start(void *data, const struct kc_event *ev)
{
    struct test_run *r = data;

    /* The first create is in flight: the operator presses Ctrl-C. */
    if (ev->type == KC_EVENT_STARTED && r->nfinished == 0) {
        r->nfinished = 1;
        raise(SIGINT);
    }
}

Test(engine, sigint_lets_running_ops_finish_and_starts_nothing_new)
{
    uv_signal_t sig;
    struct kc_graph *g = kc_graph_new();
    struct test_run r;

    thing(g, "fake.thing", "a", "A");
    thing(g, "fake.thing", "b", "B");
    thing(g, "fake.thing", "c", "C");
    run_init(&r, 100, 1);
    sig_run = &r;
    cr_assert_eq(uv_signal_init(&r.loop, &sig), 0);
    cr_assert_eq(uv_signal_start(&sig, on_sigint, SIGINT), 0);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    r.nfinished = 0; /* count the apply's events only */
    r.eng.on_event = raise_on_start;
    cr_assert_eq(test_run_apply(&r), KC_ECANCELED);
    /* The op in flight finished and is in the state; the others never
     * started. */
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.a")->st, KC_ITEM_DONE);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.b")->st, KC_ITEM_SKIPPED);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.c")->st, KC_ITEM_SKIPPED);
    cr_assert_eq(fake_world_counter(world, "create"), 1);
    cr_assert_eq(kc_state_count(r.st), 1);
    {
        struct kc_state *st2 = NULL;

        cr_assert_eq(kc_state_load(spath, &st2, NULL), 0);
        cr_assert_not_null(kc_state_get(st2, "fake.thing.a"));
        kc_state_free(st2);
    }
    test_run_fini(&r);
}

Test(engine, plan_json_is_valid_against_its_schema_and_hides_secrets)
{
    struct kc_graph *g = chain_graph();
    struct kc_resource *s;
    struct json_object *j;
    struct kc_err err = { 0 };
    const char *text;
    struct test_run r;

    s = thing(g, "fake.thing", "s", "S");
    kc_resource_set_value(s, "secret",
                          kc_value_new_secret("hunter2-secret", 14));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    j = kc_plan_to_json(r.plan);
    cr_assert_eq(kc_schema_check_json("plan", j, &err), 0, "%s", err.msg);
    text = json_object_to_json_string(j);
    cr_assert_null(strstr(text, "hunter2"));
    json_object_put(j);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    {
        char *st = state_test_slurp(spath);
        char *w = state_test_slurp(world);

        cr_assert_null(strstr(st, "hunter2"));
        cr_assert_null(strstr(w, "hunter2"));
        free(st);
        free(w);
    }

    /* A changed secret is noticed through its digest: an update. */
    g = chain_graph();
    s = thing(g, "fake.thing", "s", "S");
    kc_resource_set_value(s, "secret",
                          kc_value_new_secret("hunter3-secret", 14));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.s")->action,
                 KC_ACTION_UPDATE);
    j = kc_plan_to_json(r.plan);
    cr_assert_eq(kc_schema_check_json("plan", j, &err), 0, "%s", err.msg);
    cr_assert_null(strstr(json_object_to_json_string(j), "hunter3"));
    json_object_put(j);
    test_run_fini(&r);
}

Test(engine, drift_tells_external_changes_from_manifest_changes)
{
    struct test_run r;
    struct kc_graph *g;
    struct kc_plan_item *it;
    bool ext, man;
    struct json_object *rep, *diffs, *d0;

    plan_and_apply(chain_graph(), false);
    /* In sync. */
    run_init(&r, 0, 10);
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert_not(ext);
    cr_assert_not(man);
    test_run_fini(&r);

    /* The manifest is ahead: only a manifest change. */
    g = chain_graph();
    kc_resource_set_value(kc_graph_find(g, "fake.thing.d"), "value",
                          kc_value_new_str("D2"));
    run_init(&r, 0, 10);
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert_not(ext);
    cr_assert(man);
    test_run_fini(&r);

    /* Someone changed the world: external, whatever else is pending. */
    fake_world_set_attr(world, "fake.thing.a", "value", "hacked");
    g = chain_graph();
    kc_resource_set_value(kc_graph_find(g, "fake.thing.d"), "value",
                          kc_value_new_str("D2"));
    run_init(&r, 0, 10);
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert(ext);
    cr_assert(man);
    it = kc_plan_find(r.plan, "fake.thing.a");
    cr_assert_eq(it->action, KC_ACTION_UPDATE);
    rep = kc_plan_drift_json(r.plan);
    cr_assert(json_object_object_get_ex(rep, "differences", &diffs));
    cr_assert_eq(json_object_array_length(diffs), 2);
    d0 = json_object_array_get_idx(diffs, 0);
    cr_assert_str_eq(kc_json_opt_str(d0, "address"), "fake.thing.a");
    cr_assert_str_eq(kc_json_opt_str(d0, "field"), "value");
    cr_assert_str_eq(kc_json_opt_str(d0, "expected"), "A");
    cr_assert_str_eq(kc_json_opt_str(d0, "actual"), "hacked");
    cr_assert_str_eq(kc_json_opt_str(d0, "cause"), "external");
    json_object_put(rep);
    test_run_fini(&r);
    /* Drift never wrote anything. */
    cr_assert_eq(fake_world_counter(world, "mutating"), 4);

    /* Deleted outside kmsctl: external, and apply recreates it. */
    fake_world_remove(world, "fake.thing.d");
    run_init(&r, 0, 10);
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert(ext);
    it = kc_plan_find(r.plan, "fake.thing.d");
    cr_assert_eq(it->action, KC_ACTION_CREATE);
    cr_assert_str_eq(it->reason, "deleted outside kmsctl");
    test_run_fini(&r);
}

Test(engine, ignore_drift_fields_are_not_reported)
{
    struct kc_graph *g = kc_graph_new();
    struct test_run r;
    bool ext, man;

    kc_resource_set_value(thing(g, "fake.thing", "l", "L"), "label",
                          kc_value_new_str("mine"));
    plan_and_apply(g, false);
    fake_world_set_attr(world, "fake.thing.l", "label", "theirs");
    g = kc_graph_new();
    kc_resource_set_value(thing(g, "fake.thing", "l", "L"), "label",
                          kc_value_new_str("mine"));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert_not(ext);
    cr_assert_not(man);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.l")->action, KC_ACTION_NOOP);
    test_run_fini(&r);
}

Test(engine, a_force_new_field_replaces_and_names_the_field)
{
    struct kc_graph *g;
    struct test_run r;
    struct kc_buf out;

    g = kc_graph_new();
    kc_resource_set_value(thing(g, "fake.thing", "x", "X"), "size",
                          kc_value_new_int(1));
    plan_and_apply(g, false);

    g = kc_graph_new();
    kc_resource_set_value(thing(g, "fake.thing", "x", "Y"), "size",
                          kc_value_new_int(2));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.x")->action,
                 KC_ACTION_REPLACE);
    kc_buf_init(&out, 0);
    kc_plan_render(r.plan, false, &out);
    cr_assert_not_null(
        strstr(kc_buf_str(&out), "-/+ fake.thing.x replace (forced by 'size')"),
        "%s", kc_buf_str(&out));
    cr_assert_not_null(strstr(kc_buf_str(&out), "    value: \"X\" → \"Y\""),
                       "%s", kc_buf_str(&out));
    cr_assert_not_null(strstr(kc_buf_str(&out), "Plan: 0 to create, 0 to "
                                                "update, 1 to replace, 0 to "
                                                "delete."));
    kc_buf_release(&out);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(
        log_at("delete fake.thing.x"),
        fake_world_log_index(world, "create fake.thing.x") == 0 ? 1000 : 1000);
    cr_assert_eq(fake_world_counter(world, "create"), 2);
    cr_assert_eq(fake_world_counter(world, "delete"), 1);
    test_run_fini(&r);
}

Test(engine, replacing_an_identity_needs_consent)
{
    struct kc_graph *g;
    struct test_run r;
    char *consent[] = { "fake.identity.kms" };

    plan_and_apply(one_graph("fake.identity", "kms", "v1"), false);

    /* Destroy without consent: refused before anything starts. */
    g = kc_graph_new();
    thing(g, "fake.identity", "kms", "v1");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, true), 0, "%s", r.eng.err.msg);
    cr_assert_not_null(kc_plan_find(r.plan, "fake.identity.kms")->consent);
    cr_assert_eq(test_run_apply(&r), KC_EPERM);
    cr_assert_not_null(strstr(r.eng.err.msg, "--allow-identity-loss"));
    cr_assert_eq(fake_world_counter(world, "delete"), 0);
    test_run_fini(&r);

    g = kc_graph_new();
    thing(g, "fake.identity", "kms", "v1");
    run_init(&r, 0, 10);
    r.eng.consent = consent;
    r.eng.nconsent = 1;
    cr_assert_eq(test_run_plan(&r, g, true), 0, "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_eq(fake_world_counter(world, "delete"), 1);
    test_run_fini(&r);
}

Test(engine, resources_gone_from_the_manifest_are_deleted_dependents_first)
{
    struct kc_graph *g;
    struct test_run r;

    plan_and_apply(chain_graph(), false);
    g = kc_graph_new();
    thing(g, "fake.thing", "d", "D");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.thing.a")->action,
                 KC_ACTION_DELETE);
    cr_assert_str_eq(kc_plan_find(r.plan, "fake.thing.a")->reason,
                     "not in the manifest");
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(log_at("delete fake.thing.c"), log_at("delete fake.thing.b"));
    cr_assert_lt(log_at("delete fake.thing.b"), log_at("delete fake.thing.a"));
    cr_assert_eq(kc_state_count(r.st), 1);
    test_run_fini(&r);
}

Test(engine, a_target_selects_it_and_its_dependencies)
{
    struct test_run r;
    char *targets[] = { "fake.thing.b" };

    run_init(&r, 0, 10);
    r.eng.targets = targets;
    r.eng.ntargets = 1;
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert(fake_world_has(world, "fake.thing.a"));
    cr_assert(fake_world_has(world, "fake.thing.b"));
    cr_assert_not(fake_world_has(world, "fake.thing.c"));
    cr_assert_not(fake_world_has(world, "fake.thing.d"));
    test_run_fini(&r);
}

Test(engine, a_contract_is_left_in_place_on_destroy)
{
    struct kc_graph *g;
    struct test_run r;

    plan_and_apply(one_graph("fake.contract", "kms", "v"), false);
    g = kc_graph_new();
    thing(g, "fake.contract", "kms", "v");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, true), 0, "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert(fake_world_has(world, "fake.contract.kms"));
    cr_assert_eq(kc_state_count(r.st), 0);
    test_run_fini(&r);
}

Test(engine, a_data_source_with_unknown_input_is_read_at_apply)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *d, *u;
    struct test_run r;

    thing(g, "fake.thing", "a", "A");
    cr_assert_eq(kc_graph_add(g, "fake.data", "q", &d, NULL), 0);
    kc_resource_set_ref(d, "key", "fake.thing.a", "id");
    u = thing(g, "fake.thing", "user", "U");
    kc_resource_set_ref(u, "ref", "fake.data.q", "result");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.data.q")->action, KC_ACTION_READ);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_str_eq(
        kc_value_str(kc_value_map_get(
            kc_plan_find(r.plan, "fake.thing.user")->desired, "ref")),
        "data-of-id-1");
    cr_assert_not_null(kc_state_get(r.st, "fake.data.q"));
    test_run_fini(&r);

    /* Gone from the manifest: the record of the data source is forgotten,
     * without any call. */
    g = kc_graph_new();
    thing(g, "fake.thing", "a", "A");
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.data.q")->action, KC_ACTION_DELETE);
    fake_world_reset_counters(world);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_null(kc_state_get(r.st, "fake.data.q"));
    cr_assert_null(kc_state_get(r.st, "fake.thing.user"));
    cr_assert_eq(fake_world_counter(world, "mutating"), 1);
    test_run_fini(&r);
}

Test(engine, a_kind_limit_bounds_its_ops_below_parallelism)
{
    struct kc_graph *g = kc_graph_new();
    struct test_run r;

    for (int i = 0; i < 6; i++) {
        char name[16];

        kc_snprintf(name, sizeof(name), "f%d", i);
        thing(g, "fake.frozen", name, "x");
    }
    thing(g, "fake.thing", "free", "x");
    run_init(&r, 50, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    fake_world_reset_counters(world);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    /* Two frozen ones and the free one at once, never more. */
    cr_assert_eq(fake_world_counter(world, "max_running"), 3);
    test_run_fini(&r);
}

Test(engine, create_before_destroy_replaces_then_deletes_the_old_object)
{
    struct kc_graph *g;
    struct test_run r;
    struct json_object *w, *objs;
    const char *old_id;
    char *old = NULL;

    g = kc_graph_new();
    kc_resource_set_value(thing(g, "fake.cbd", "x", "X"), "size",
                          kc_value_new_int(1));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    old_id = kc_state_get(r.st, "fake.cbd.x")->provider_id;
    old = kc_xstrdup(old_id);
    test_run_fini(&r);

    g = kc_graph_new();
    kc_resource_set_value(thing(g, "fake.cbd", "x", "X"), "size",
                          kc_value_new_int(2));
    run_init(&r, 0, 10);
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.cbd.x")->action, KC_ACTION_REPLACE);
    fake_world_reset_counters(world);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(log_at("create fake.cbd.x"), log_at("delete fake.cbd.x"));
    cr_assert_str_neq(kc_state_get(r.st, "fake.cbd.x")->provider_id, old);
    w = fake_world_load(world);
    json_object_object_get_ex(w, "objects", &objs);
    cr_assert_eq(json_object_object_length(objs), 1);
    json_object_put(w);
    free(old);
    test_run_fini(&r);
}

static bool state_has_intent(void)
{
    char *text = state_test_slurp(spath);
    bool has = text && strstr(text, "\"deploy\"") != NULL;

    free(text);
    return has;
}

Test(engine, an_intent_and_a_generated_value_are_on_disk_before_the_call)
{
    struct kc_graph *g;
    pid_t pid;
    struct test_run r;
    const struct kc_value *seed;
    int64_t seed1;
    bool has_intent;

    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        g = kc_graph_new();
        thing(g, "fake.deploy", "k", "K");
        run_init(&r, 5000, 10);
        if (test_run_plan(&r, g, false) < 0)
            _exit(2);
        test_run_apply(&r);
        _exit(3);
    }
    /* 60 s at most (a loaded box); the child is killed either way, so a
     * failure leaves no process behind. */
    for (int i = 0; i < 3000 && !state_has_intent(); i++)
        state_test_msleep(20);
    has_intent = state_has_intent();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    state_test_wait(pid);
    cr_assert(has_intent, "no intent was written");
    cr_assert_not(fake_world_has(world, "fake.deploy.k"));

    run_init(&r, 0, 10);
    cr_assert_not_null(kc_state_intent_get(r.st, "fake.deploy.k"));
    seed = kc_state_generated_get(r.st, "fake.deploy.k.seed");
    cr_assert_not_null(seed);
    seed1 = kc_value_int(seed, -1);
    cr_assert_eq(
        kc_value_int(
            kc_value_map_get(kc_state_intent_get(r.st, "fake.deploy.k")->data,
                             "seed"),
            -2),
        seed1);
    g = kc_graph_new();
    thing(g, "fake.deploy", "k", "K");
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert(fake_world_has(world, "fake.deploy.k"));
    cr_assert_null(kc_state_intent_get(r.st, "fake.deploy.k"));
    /* The generated value stayed what it was. */
    cr_assert_eq(
        kc_value_int(kc_state_generated_get(r.st, "fake.deploy.k.seed"), -1),
        seed1);
    test_run_fini(&r);
}

Test(engine, a_manifest_reference_is_an_edge_and_is_bound_late)
{
    static const char text[] =
        "version: 1\n"
        "name: t\n"
        "fake:\n"
        "  b: {kind: thing, value: \"ip=${kms_vms.x.external_ip}\"}\n"
        "  a: {kind: thing, value: A, alias: kms_vms.x}\n"
        "  c: {kind: thing, value: C, after: [fake.thing.b]}\n";
    struct kc_expand_eval_ctx ec = { NULL, NULL };
    struct kc_doc *doc = NULL;
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };
    struct kc_plan_item *b;
    struct json_object *w, *objs, *ob, *attrs;
    struct test_run r;

    cr_assert_eq(
        kc_manifest_parse("t.yaml", NULL, text, sizeof(text) - 1, &doc, &err),
        0, "%s", err.msg);
    cr_assert_eq(kc_expand_doc(doc, &g, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_graph_find(g, "fake.thing.b")->ndeps, 1);
    cr_assert_str_eq(kc_graph_find(g, "fake.thing.b")->deps[0], "fake.thing.a");
    run_init(&r, 0, 10);
    r.eng.eval_node = kc_expand_eval;
    r.eng.eval_data = &ec;
    cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
    b = kc_plan_find(r.plan, "fake.thing.b");
    cr_assert(kc_value_has_unknown(kc_value_map_get(b->desired, "value")));
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    cr_assert_lt(log_at("create fake.thing.a"), log_at("create fake.thing.b"));
    cr_assert_lt(log_at("create fake.thing.b"), log_at("create fake.thing.c"));
    w = fake_world_load(world);
    json_object_object_get_ex(w, "objects", &objs);
    json_object_object_get_ex(objs, "fake.thing.b", &ob);
    json_object_object_get_ex(ob, "attrs", &attrs);
    cr_assert_str_eq(
        json_object_get_string(json_object_object_get(attrs, "value")),
        "ip=10.0.0.1");
    json_object_put(w);
    test_run_fini(&r);
    kc_doc_free(doc);
}

Test(engine, an_unknown_manifest_reference_names_its_position)
{
    static const char text[] =
        "version: 1\n"
        "name: t\n"
        "fake:\n"
        "  b: {kind: thing, value: \"${kms_vms.y.external_ip}\"}\n";
    struct kc_doc *doc = NULL;
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(
        kc_manifest_parse("t.yaml", NULL, text, sizeof(text) - 1, &doc, &err),
        0, "%s", err.msg);
    cr_assert_eq(kc_expand_doc(doc, &g, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg,
                     "t.yaml:4:27: reference 'kms_vms.y.external_ip' names no "
                     "resource of this manifest");
    cr_assert_null(g);
    kc_doc_free(doc);
}

/* The wall time of a no-op plan of the chain of 6 at PARALLELISM, each
 * observe taking 150 ms. */
static uint64_t plan_six(struct test_run *r, int parallelism)
{
    uint64_t t0;

    run_init(r, 0, parallelism);
    kc_value_map_set(KC_UNCONST(kc_value_map_get(r->pcfg, "fake")),
                     "observe_delay_ms", kc_value_new_int(150));
    t0 = uv_hrtime();
    cr_assert_eq(test_run_plan(r, seq_graph(6), false), 0, "%s",
                 r->eng.err.msg);
    cr_assert_not(kc_plan_has_changes(r->plan));
    return (uv_hrtime() - t0) / 1000000;
}

Test(engine, observes_run_at_once_whatever_the_dependencies)
{
    struct test_run r;
    uint64_t one, ms;

    plan_and_apply(seq_graph(6), false);

    one = plan_six(&r, 1); /* one observe at a time: 900 ms at least */
    cr_assert_eq(r.eng.max_running, 1);
    test_run_fini(&r);
    ms = plan_six(&r, 10);
    cr_assert_eq(r.eng.max_running, 6);
    /* A chain of 6 observed one after the other takes 6 rounds; at once,
     * one: at least half of the 5 rounds saved. */
    cr_assert_gt(one, ms + 5 * 150 / 2,
                 "a no-op plan took %llu ms (%llu ms "
                 "one at a time)",
                 (unsigned long long)ms, (unsigned long long)one);
    test_run_fini(&r);
}

Test(engine, an_object_with_the_label_but_not_managed_is_reported)
{
    struct test_run r;
    struct json_object *w, *objs, *obj;
    struct kc_buf out;
    bool ext, man;

    plan_and_apply(chain_graph(), false);
    /* Someone made an object of this deployment outside kmsctl. */
    w = fake_world_load(world);
    json_object_object_get_ex(w, "objects", &objs);
    obj = json_object_new_object();
    json_object_object_add(obj, "id", json_object_new_string("id-99"));
    json_object_object_add(obj, "attrs", json_object_new_object());
    json_object_object_add(objs, "fake.thing.zz", obj);
    fake_world_save(world, w);
    json_object_put(w);

    run_init(&r, 0, 10);
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, chain_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(r.plan->nunmanaged, 1);
    cr_assert_str_eq(r.plan->unmanaged[0].address, "fake.thing.zz");
    cr_assert_str_eq(r.plan->unmanaged[0].id, "id-99");
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert(ext);
    cr_assert_not(man);
    cr_assert_not(kc_plan_has_changes(r.plan)); /* never deleted by itself */
    kc_buf_init(&out, 0);
    kc_plan_render(r.plan, false, &out);
    cr_assert_not_null(strstr(kc_buf_str(&out), "! fake.thing.zz (id-99): "
                                                "carries this deployment's "
                                                "label"),
                       "%s", kc_buf_str(&out));
    kc_buf_release(&out);
    test_run_fini(&r);
}

/* An entry is observed before its parent is planned: it must see the
 * parent's last known outputs, or it would look deleted outside. */
static struct kc_graph *entry_graph(void)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *e;

    thing(g, "fake.thing", "parent", "P");
    e = thing(g, "fake.entry", "child", "C");
    kc_resource_set_ref(e, "ref", "fake.thing.parent", "id");
    return g;
}

Test(engine, an_observe_sees_the_last_known_outputs_of_its_dependencies)
{
    struct test_run r;
    bool ext, man;

    plan_and_apply(entry_graph(), false);

    run_init(&r, 0, 10);
    kc_value_map_set(KC_UNCONST(kc_value_map_get(r.pcfg, "fake")),
                     "observe_delay_ms", kc_value_new_int(50));
    r.eng.readonly = true;
    cr_assert_eq(test_run_plan(&r, entry_graph(), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(kc_plan_find(r.plan, "fake.entry.child")->action,
                 KC_ACTION_NOOP, "%s",
                 kc_plan_find(r.plan, "fake.entry.child")->reason);
    kc_plan_drift(r.plan, &ext, &man);
    cr_assert_not(ext);
    cr_assert_not(man);
    test_run_fini(&r);
}

Test(engine, a_section_resolves_another_sections_reference_by_alias)
{
    static const char text[] =
        "version: 1\n"
        "name: t\n"
        "fake:\n"
        "  kms: {kind: thing, value: A, alias: contracts.kms}\n"
        "  vm: {kind: thing, value: B, ref_path: contracts.kms.id}\n"
        "  bad: {kind: thing, value: C, ref_path: contracts.nope.id}\n";
    struct kc_doc *doc = NULL;
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };
    const struct kc_resource *r;

    cr_assert_eq(
        kc_manifest_parse("t.yaml", NULL, text, sizeof(text) - 1, &doc, &err),
        0, "%s", err.msg);
    cr_assert_eq(kc_expand_doc(doc, &g, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg, "t.yaml:6:42: ref_path: nothing supplies "
                              "'contracts.nope.id' (yet)");
    kc_doc_free(doc);
    cr_assert_eq(kc_manifest_parse("t.yaml", NULL, text,
                                   sizeof(text) - 1 -
                                       strlen("  bad: {kind: thing, value: C, "
                                              "ref_path: contracts.nope.id}\n"),
                                   &doc, &err),
                 0, "%s", err.msg);
    cr_assert_eq(kc_expand_doc(doc, &g, &err), 0, "%s", err.msg);
    r = kc_graph_find(g, "fake.thing.vm");
    cr_assert_eq(r->ndeps, 1);
    cr_assert_str_eq(r->deps[0], "fake.thing.kms");
    cr_assert_str_eq(r->attrs[1].ref_output, "id");
    kc_graph_free(g);
    kc_doc_free(doc);
}
