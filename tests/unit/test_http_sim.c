/* tests/unit/test_http_sim.c: kmsctl-sim's framework and admin API:
 * inventory, request counters, object changes behind a client's back,
 * reset, faults (and their determinism for a seed), timers, routing. */
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/json.h"
#include "tests/unit/helpers/sim_proc.h"

static struct sim_proc *sp;

static void setup(void)
{
    sp = sim_proc_start("test", 11);
}

static void teardown(void)
{
    sim_proc_stop(sp);
}

TestSuite(sim, .init = setup, .fini = teardown, .timeout = 60);

static struct json_object *parse(const char *text)
{
    struct json_object *j = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_parse(text, strlen(text), "response", &j, &err), 0,
                 "%s: %s", err.msg, text);
    return j;
}

static long call(const char *method, const char *path, const char *body)
{
    return sim_proc_call(sp, method, path, body, NULL);
}

static int64_t get_int(struct json_object *j, const char *path)
{
    int64_t v = -1;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_get_int(j, path, &v, &err), 0, "%s", err.msg);
    return v;
}

static const char *get_str(struct json_object *j, const char *path)
{
    const char *s = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_get_str(j, path, &s, &err), 0, "%s", err.msg);
    return s;
}

Test(sim, inventory_lists_objects_with_their_fields)
{
    struct json_object *inv;
    char *text = NULL;
    const char *id;

    cr_assert_eq(
        call("POST", "/test/objects",
             "{\"name\":\"a\",\"labels\":{\"kmsctl-deployment\":\"d1\"}}"),
        200);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"b\"}"), 200);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 409);
    cr_assert_eq(call("POST", "/test/objects", "{not json"), 400);
    inv = sim_proc_inventory(sp);
    cr_assert_eq(json_object_array_length(inv), 2);
    cr_assert_str_eq(get_str(inv, "[0].service"), "test");
    cr_assert_str_eq(get_str(inv, "[0].kind"), "thing");
    cr_assert_str_eq(get_str(inv, "[0].name"), "a");
    cr_assert_str_eq(get_str(inv, "[0].labels.kmsctl-deployment"), "d1");
    cr_assert_str_eq(get_str(inv, "[1].name"), "b");
    id = get_str(inv, "[0].id");
    cr_assert_eq(strlen(id), 19);
    cr_assert(json_object_is_type(
        json_object_object_get(json_object_array_get_idx(inv, 1), "attrs"),
        json_type_object));
    json_object_put(inv);
    cr_assert_eq(
        sim_proc_call(sp, "GET", "/_sim/inventory?kind=nothing", NULL, &text),
        200);
    cr_assert_str_eq(text, "[]");
    free(text);
}

Test(sim, request_counters_by_route_and_mutating)
{
    struct json_object *r, *by;

    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 200);
    cr_assert_eq(call("GET", "/test/objects/a", NULL), 200);
    cr_assert_eq(call("DELETE", "/test/objects/a", NULL), 200);
    cr_assert_eq(call("GET", "/nowhere", NULL), 404);
    cr_assert_eq(call("DELETE", "/test/upload", NULL), 405);
    /* Admin calls are not counted. */
    json_object_put(sim_proc_inventory(sp));
    r = sim_proc_requests(sp);
    cr_assert_eq(get_int(r, "total"), 7);
    cr_assert_eq(get_int(r, "mutating"), 2);
    cr_assert_eq(get_int(r, "faulted"), 0);
    by = json_object_object_get(r, "by_route");
    cr_assert_eq(json_object_object_length(by), 4, "%s",
                 json_object_to_json_string(by));
    cr_assert_eq(get_int(by, "GET /test/echo"), 2);
    cr_assert_eq(get_int(by, "POST /test/objects"), 1);
    cr_assert_eq(get_int(by, "GET /test/objects/{name}"), 1);
    cr_assert_eq(get_int(by, "DELETE /test/objects/{name}"), 1);
    json_object_put(r);
}

Test(sim, objects_change_behind_the_clients_back)
{
    struct json_object *j;
    char *text = NULL;

    cr_assert_eq(call("POST", "/test/objects",
                      "{\"name\":\"x\",\"labels\":{\"a\":\"1\",\"b\":\"2\"}}"),
                 200);
    cr_assert_eq(sim_proc_patch_object(sp, "test", "thing", "x",
                                       "{\"labels\":{\"a\":null,\"c\":\"3\"},"
                                       "\"attrs\":{\"size\":5}}"),
                 200);
    cr_assert_eq(sim_proc_call(sp, "GET", "/test/objects/x", NULL, &text), 200);
    j = parse(text);
    free(text);
    cr_assert_null(
        json_object_object_get(json_object_object_get(j, "labels"), "a"));
    cr_assert_str_eq(get_str(j, "labels.b"), "2");
    cr_assert_str_eq(get_str(j, "labels.c"), "3");
    cr_assert_eq(get_int(j, "attrs.size"), 5);
    json_object_put(j);
    cr_assert_eq(sim_proc_patch_object(sp, "test", "thing", "nope", "{}"), 404);
    cr_assert_eq(sim_proc_patch_object(sp, "test", "thing", "x", "[1]"), 400);
    cr_assert_eq(sim_proc_delete_object(sp, "test", "thing", "x"), 200);
    cr_assert_eq(call("GET", "/test/objects/x", NULL), 404);
    j = sim_proc_inventory(sp);
    cr_assert_eq(json_object_array_length(j), 0);
    json_object_put(j);
}

Test(sim, reset_empties_inventory_counters_and_faults)
{
    struct json_object *j;

    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 200);
    sim_proc_set_faults(sp,
                        "[{\"match\":\"^GET /test/echo$\",\"status\":500}]");
    cr_assert_eq(call("GET", "/test/echo", NULL), 500);
    sim_proc_reset(sp);
    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    j = sim_proc_inventory(sp);
    cr_assert_eq(json_object_array_length(j), 0);
    json_object_put(j);
    j = sim_proc_requests(sp);
    cr_assert_eq(get_int(j, "total"), 1);
    cr_assert_eq(get_int(j, "mutating"), 0);
    json_object_put(j);
}

/* 40 sequential requests under a 50% fault rule: a string of '.' and 'x'. */
static void fault_pattern(char out[41])
{
    for (int i = 0; i < 40; i++) {
        long code = call("GET", "/test/echo", NULL);

        cr_assert(code == 200 || code == 503, "%ld", code);
        out[i] = code == 200 ? '.' : 'x';
    }
    out[40] = '\0';
}

Test(sim, faults_are_deterministic_for_a_seed)
{
    static const char rules[] = "[{\"match\":\"^GET /test/echo$\","
                                "\"status\":503,\"probability\":0.5}]";
    char a[41], b[41], c[41];
    struct json_object *r;
    int64_t fails = 0;

    sim_proc_set_faults(sp, rules);
    fault_pattern(a);
    for (int i = 0; i < 40; i++)
        fails += a[i] == 'x';
    cr_assert(fails > 5 && fails < 35, "%s", a);
    r = sim_proc_requests(sp);
    cr_assert_eq(get_int(r, "faulted"), fails);
    cr_assert_eq(get_int(r, "total"), 40);
    json_object_put(r);

    sim_proc_reset(sp);
    sim_proc_set_faults(sp, rules);
    fault_pattern(b);
    cr_assert_str_eq(a, b);

    cr_assert_eq(
        sim_proc_call(sp, "POST", "/_sim/reset", "{\"seed\":99}", NULL), 200);
    sim_proc_set_faults(sp, rules);
    fault_pattern(c);
    cr_assert_str_neq(a, c, "seed 99 gave the same 40 decisions as seed 11");
}

Test(sim, fault_count_bounds_and_hits)
{
    struct json_object *f;
    char *text = NULL;

    sim_proc_set_faults(sp, "[{\"match\":\"^POST /test/objects\","
                            "\"status\":429,\"retry_after\":2,\"count\":2}]");
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 429);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 429);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 200);
    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    cr_assert_eq(sim_proc_call(sp, "GET", "/_sim/faults", NULL, &text), 200);
    f = parse(text);
    free(text);
    cr_assert_eq(get_int(f, "[0].hits"), 2);
    cr_assert_eq(get_int(f, "[0].count"), 0);
    cr_assert_str_eq(get_str(f, "[0].retry_after"), "2");
    json_object_put(f);
    /* A faulted request never reached the handler: one mutating request. */
    f = sim_proc_requests(sp);
    cr_assert_eq(get_int(f, "mutating"), 1);
    cr_assert_eq(get_int(f, "faulted"), 2);
    json_object_put(f);
    sim_proc_clear_faults(sp);
    cr_assert_eq(sim_proc_call(sp, "GET", "/_sim/faults", NULL, &text), 200);
    cr_assert_str_eq(text, "[]");
    free(text);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

Test(sim, latency_fault_delays_the_answer)
{
    double t0;

    sim_proc_set_faults(sp, "[{\"match\":\"^GET /test/echo$\","
                            "\"latency_ms\":[150,150]}]");
    t0 = now_ms();
    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    cr_assert_geq(now_ms() - t0, 150);
}

Test(sim, invalid_fault_rules_are_refused)
{
    cr_assert_eq(call("POST", "/_sim/faults", "{\"match\":\"x\"}"), 400);
    cr_assert_eq(call("POST", "/_sim/faults", "[{\"match\":\"(\"}]"), 400);
    cr_assert_eq(call("POST", "/_sim/faults", "[{\"status\":503}]"), 400);
    cr_assert_eq(
        call("POST", "/_sim/faults", "[{\"match\":\"x\",\"status\":42}]"), 400);
    cr_assert_eq(call("GET", "/_sim/nothing", NULL), 404);
}

Test(sim, ids_follow_the_seed)
{
    struct json_object *inv;
    char *first;

    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 200);
    inv = sim_proc_inventory(sp);
    first = kc_xstrdup(get_str(inv, "[0].id"));
    json_object_put(inv);
    sim_proc_stop(sp);
    sp = sim_proc_start("test", 11);
    cr_assert_eq(call("POST", "/test/objects", "{\"name\":\"a\"}"), 200);
    inv = sim_proc_inventory(sp);
    cr_assert_str_eq(get_str(inv, "[0].id"), first);
    json_object_put(inv);
    free(first);
}

Test(sim, timers_move_operations_along)
{
    char *text = NULL;
    struct json_object *j;
    const char *status = NULL;
    double t0 = now_ms();

    cr_assert_eq(
        sim_proc_call(sp, "POST", "/test/ops", "{\"name\":\"op1\"}", &text),
        200);
    j = parse(text);
    free(text);
    cr_assert_str_eq(get_str(j, "attrs.status"), "PENDING");
    json_object_put(j);
    /* Two seeded steps of 50-150 ms; the timer thread fires them even
     * without requests: wait, then look once. */
    while (now_ms() - t0 < 400) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };

        nanosleep(&ts, NULL);
    }
    j = sim_proc_inventory(sp);
    status = get_str(j, "[0].attrs.status");
    cr_assert_str_eq(status, "DONE");
    json_object_put(j);
}

Test(sim, every_request_is_logged_on_one_line)
{
    char path[1024], *log = NULL;
    const char *dir = getenv("KC_BUILD_DIR");
    FILE *f;
    long n;

    cr_assert_eq(call("GET", "/test/echo", NULL), 200);
    cr_assert_eq(call("GET", "/test/status/404", NULL), 404);
    sim_proc_stop(sp);
    sp = NULL;
    cr_assert_eq(kc_snprintf(path, sizeof(path), "%s/sim-%d.log",
                             dir && *dir ? dir : "/tmp", (int)getpid()),
                 0);
    f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    log = kc_xcalloc(1, (size_t)n + 1);
    cr_assert_eq(fread(log, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    cr_assert_not_null(strstr(log, "GET /test/echo -> 200 route=\"GET "
                                   "/test/echo\""),
                       "%s", log);
    cr_assert_not_null(strstr(log, "GET /test/status/404 -> 404 route=\"GET "
                                   "/test/status/{code}\""),
                       "%s", log);
    free(log);
}
