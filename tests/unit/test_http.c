/* tests/unit/test_http.c: the HTTP runtime against kmsctl-sim's test service:
 * retries and their bounds, Retry-After, timeouts, concurrency, dropped
 * connections, TLS (CA file, in-memory CA, pins), host mapping, redaction,
 * streaming bodies, cancellation. */
#include "reconcile/http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "reconcile/json.h"
#include "reconcile/log.h"
#include "tests/unit/helpers/sim_proc.h"

static struct sim_proc *sp;
static uv_loop_t loop;
static struct kc_http *http;
static struct kc_log logger;
static FILE *logfile;

struct call {
    struct kc_http_req req;
    int status;
    bool done;
    double done_ms;
};

static double mono_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

static void on_done(struct kc_http_req *req, int status)
{
    struct call *c = kc_container_of(req, struct call, req);

    cr_assert(!c->done, "callback ran twice");
    c->status = status;
    c->done = true;
    c->done_ms = mono_ms();
}

static void client_open(void)
{
    struct kc_http_config cfg = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    logfile = tmpfile();
    cr_assert_not_null(logfile);
    kc_log_init(&logger, KC_LOG_DEBUG);
    logger.out = logfile;
    cfg.loop = &loop;
    cfg.log = &logger;
    cfg.seed = 42;
    cr_assert_eq(kc_http_new(&cfg, &http, &err), 0, "%s", err.msg);
}

static void client_close(void)
{
    kc_http_close(http);
    http = NULL;
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    kc_log_release(&logger);
    fclose(logfile);
}

static void setup(void)
{
    sp = sim_proc_start("test", 7);
    client_open();
}

static void teardown(void)
{
    client_close();
    sim_proc_stop(sp);
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

static char *url(const char *path)
{
    return kc_xasprintf("%s%s", sim_proc_url(sp), path);
}

static void start(struct call *c, enum kc_http_method m, const char *path,
                  const struct kc_http_opts *opts)
{
    struct kc_err err = { 0 };
    char *u = url(path);

    memset(c, 0, sizeof(*c));
    kc_http_req_init(&c->req, m, u);
    free(u);
    cr_assert_eq(kc_http_send(http, &c->req, opts, on_done, &err), 0, "%s",
                 err.msg);
    cr_assert(!c->done, "callback ran inside kc_http_send");
}

static void run(void)
{
    cr_assert_geq(uv_run(&loop, UV_RUN_DEFAULT), 0);
}

/* GETs PATH with OPTS through C until the request ended; its wall time in
 * ms. */
static double get_ms(struct call *c, const char *path,
                     const struct kc_http_opts *opts)
{
    double t0 = mono_ms();

    start(c, KC_HTTP_GET, path, opts);
    run();
    return c->done_ms - t0;
}

static struct kc_http_opts fast_retries(unsigned attempts)
{
    struct kc_http_opts o = { 0 };

    o.retry.max_attempts = attempts;
    o.retry.base_ms = 5;
    o.retry.max_backoff_ms = 20;
    return o;
}

static int64_t body_int(struct call *c, const char *path)
{
    struct json_object *j = NULL;
    struct kc_err err = { 0 };
    int64_t v = -1;

    cr_assert_eq(kc_http_resp_json(&c->req, &j, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_json_get_int(j, path, &v, &err), 0, "%s", err.msg);
    json_object_put(j);
    return v;
}

Test(http, retries_until_success)
{
    struct kc_http_opts o = fast_retries(5);
    struct call c;

    start(&c, KC_HTTP_GET, "/test/count/a?fail_first=2", &o);
    run();
    cr_assert_eq(c.status, 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.attempts, 3);
    cr_assert_eq(body_int(&c, "hits"), 3);
    cr_assert_eq(sim_proc_route_count(sp, "GET /test/count/{key}"), 3);
    kc_http_req_release(&c.req);
}

Test(http, sequential_requests_reuse_one_connection)
{
    struct kc_http_stats st;
    struct call c;

    for (int i = 0; i < 10; i++) {
        start(&c, i % 2 ? KC_HTTP_POST : KC_HTTP_GET, "/test/echo", NULL);
        run();
        cr_assert_eq(c.req.code, 200);
        kc_http_req_release(&c.req);
    }
    kc_http_get_stats(http, &st);
    cr_assert_eq(st.attempts, 10);
    cr_assert_eq(st.by_method[KC_HTTP_GET], 5);
    cr_assert_eq(st.by_method[KC_HTTP_POST], 5);
    cr_assert_eq(st.connects, 1, "%llu connections for 10 requests",
                 (unsigned long long)st.connects);
}

static int prepare_count(struct kc_http_req *req, void *arg, struct kc_err *err)
{
    int *n = arg;
    char v[16];

    (*n)++;
    cr_assert_eq(kc_snprintf(v, sizeof(v), "%d", *n), 0);
    return kc_http_req_set_header(req, "X-Test", v, err);
}

static int prepare_fail(struct kc_http_req *req, void *arg, struct kc_err *err)
{
    (void)req;
    (void)arg;
    return kc_err_set(err, KC_EPERM, "no credentials");
}

Test(http, prepare_hook_runs_before_every_attempt)
{
    struct kc_http_opts o = fast_retries(5);
    struct json_object *j = NULL;
    struct kc_err err = { 0 };
    struct call c;
    int n = 0;

    o.prepare = prepare_count;
    o.prepare_arg = &n;
    start(&c, KC_HTTP_GET, "/test/count/pp?fail_first=2", &o);
    run();
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(kc_http_req_header(&c.req, "X-Test"), "3");
    kc_http_req_release(&c.req);
    start(&c, KC_HTTP_GET, "/test/echo", &o);
    run();
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(
                         json_object_object_get(j, "headers"), "X-Test")),
                     "4");
    json_object_put(j);
    kc_http_req_release(&c.req);

    o.prepare = prepare_fail;
    start(&c, KC_HTTP_GET, "/test/echo", &o);
    run();
    cr_assert_eq(c.status, KC_EPERM);
    cr_assert_str_eq(c.req.err.msg, "no credentials");
    kc_http_req_release(&c.req);
}

Test(http, retries_stop_at_max_attempts)
{
    struct kc_http_opts o = fast_retries(4);
    struct kc_http_stats st;
    struct call c;

    start(&c, KC_HTTP_GET, "/test/count/b?fail_first=100&status=502", &o);
    run();
    cr_assert_eq(c.status, 0);
    cr_assert_eq(c.req.code, 502);
    cr_assert_eq(c.req.attempts, 4);
    cr_assert(c.req.gave_up);
    cr_assert_eq(sim_proc_route_count(sp, "GET /test/count/{key}"), 4);
    kc_http_get_stats(http, &st);
    cr_assert_eq(st.attempts, 4);
    cr_assert_eq(st.retries, 3);
    cr_assert_eq(st.by_method[KC_HTTP_GET], 4);
    cr_assert_eq(st.sends, 1);
    kc_http_req_release(&c.req);
}

Test(http, retries_stop_at_max_elapsed)
{
    struct kc_http_opts o = { 0 };
    struct call c;
    double ms;

    o.retry.max_attempts = 1000;
    o.retry.base_ms = 100;
    o.retry.max_backoff_ms = 100;
    o.retry.max_elapsed_ms = 400;
    ms = get_ms(&c, "/test/count/c?fail_first=100000", &o);
    cr_assert_eq(c.req.code, 503);
    cr_assert(c.req.gave_up);
    cr_assert_lt(c.req.attempts, 1000);
    cr_assert_gt(c.req.attempts, 1);
    cr_assert_lt(ms, 1500, "took %.0f ms", ms);
    kc_http_req_release(&c.req);
}

Test(http, every_default_retryable_status_is_retried)
{
    static const int codes[] = { 408, 429, 500, 502, 503, 504 };

    for (size_t i = 0; i < KC_ARRAY_SIZE(codes); i++) {
        struct kc_http_opts o = fast_retries(2);
        struct call c;
        char path[64];

        cr_assert_eq(
            kc_snprintf(path, sizeof(path), "/test/status/%d", codes[i]), 0);
        start(&c, KC_HTTP_GET, path, &o);
        run();
        cr_assert_eq(c.req.code, codes[i]);
        cr_assert_eq(c.req.attempts, 2, "status %d not retried", codes[i]);
        kc_http_req_release(&c.req);
    }
}

Test(http, client_errors_are_not_retried)
{
    static const int codes[] = { 400, 403, 404, 409 };

    for (size_t i = 0; i < KC_ARRAY_SIZE(codes); i++) {
        struct kc_http_opts o = fast_retries(5);
        struct call c;
        char path[64];

        cr_assert_eq(
            kc_snprintf(path, sizeof(path), "/test/status/%d", codes[i]), 0);
        start(&c, KC_HTTP_GET, path, &o);
        run();
        cr_assert_eq(c.status, 0);
        cr_assert_eq(c.req.code, codes[i]);
        cr_assert_eq(c.req.attempts, 1, "status %d was retried", codes[i]);
        cr_assert(!c.req.gave_up);
        kc_http_req_release(&c.req);
    }
    cr_assert_eq(sim_proc_route_count(sp, "GET /test/status/{code}"), 4);
}

Test(http, extra_codes_and_classifier_add_retries)
{
    static const long extra[] = { 409 };
    struct kc_http_opts o = fast_retries(3);
    struct call c;

    o.retry.extra_codes = extra;
    o.retry.nextra_codes = 1;
    start(&c, KC_HTTP_GET, "/test/status/409", &o);
    run();
    cr_assert_eq(c.req.attempts, 3);
    kc_http_req_release(&c.req);
}

static enum kc_http_verdict throttled(const struct kc_http_req *req, void *arg)
{
    (void)arg;
    /* As EC2: a 400 whose body names a throttling code is retryable. */
    if (req->code == 400 && strstr(kc_buf_str(&req->body), "status 400"))
        return KC_HTTP_RETRY;
    return KC_HTTP_DEFAULT;
}

static enum kc_http_verdict never(const struct kc_http_req *req, void *arg)
{
    (void)req;
    (void)arg;
    return KC_HTTP_FAIL;
}

Test(http, classifier_decides_on_body)
{
    struct kc_http_opts o = fast_retries(3);
    struct call c;

    o.retry.classify = throttled;
    start(&c, KC_HTTP_GET, "/test/status/400", &o);
    run();
    cr_assert_eq(c.req.code, 400);
    cr_assert_eq(c.req.attempts, 3);
    kc_http_req_release(&c.req);

    o.retry.classify = never;
    start(&c, KC_HTTP_GET, "/test/status/503", &o);
    run();
    cr_assert_eq(c.req.code, 503);
    cr_assert_eq(c.req.attempts, 1);
    kc_http_req_release(&c.req);
}

/* GETs PATH, whose first answer is a 503 with a Retry-After: the second
 * attempt succeeds, after a wait of MIN_MS to MAX_MS. */
static void retry_after_waits(const char *path, double min_ms, double max_ms)
{
    struct kc_http_opts o = fast_retries(3);
    struct call c;
    double ms = get_ms(&c, path, &o);

    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.attempts, 2);
    cr_assert_geq(ms, min_ms, "waited only %.0f ms", ms);
    cr_assert_lt(ms, max_ms, "waited %.0f ms", ms);
    kc_http_req_release(&c.req);
}

Test(http, retry_after_seconds_is_honoured)
{
    /* The jittered backoff is at most 20 ms: only Retry-After explains a
     * wait of a second. */
    retry_after_waits("/test/count/ra?fail_first=1&retry_after=1", 1000, 3000);
}

Test(http, retry_after_http_date_is_honoured)
{
    /* An HTTP-date 2 s ahead (1 s resolution: the wait is 1 to 2 s). */
    retry_after_waits("/test/count/rd?fail_first=1&retry_after_date=2", 900,
                      3500);
}

Test(http, retry_after_beyond_the_deadline_ends_retries)
{
    struct kc_http_opts o = fast_retries(3);
    struct call c;
    double ms;

    o.retry.max_elapsed_ms = 500;
    ms = get_ms(&c, "/test/count/rx?fail_first=1&retry_after=30", &o);
    cr_assert_eq(c.req.code, 503);
    cr_assert_eq(c.req.attempts, 1);
    cr_assert(c.req.gave_up);
    cr_assert_lt(ms, 1000);
    kc_http_req_release(&c.req);
}

Test(http, retry_after_parser)
{
    int64_t now = 1700000000;

    cr_assert_eq(kc_http_parse_retry_after("120", now), 120000);
    cr_assert_eq(kc_http_parse_retry_after(" 0 ", now), 0);
    /* 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT. */
    cr_assert_eq(
        kc_http_parse_retry_after("Tue, 14 Nov 2023 22:13:25 GMT", now), 5000);
    cr_assert_eq(
        kc_http_parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
    cr_assert_eq(kc_http_parse_retry_after("soon", now), -1);
    cr_assert_eq(kc_http_parse_retry_after("12abc", now), -1);
    cr_assert_eq(kc_http_parse_retry_after("-5", now), -1);
    cr_assert_eq(kc_http_parse_retry_after(NULL, now), -1);
}

Test(http, per_attempt_timeout_fires)
{
    struct kc_http_opts o = fast_retries(1);
    struct call c;
    double ms;

    o.timeout_ms = 200;
    ms = get_ms(&c, "/test/delay/3000", &o);
    cr_assert_eq(c.status, KC_ETIMEDOUT, "status %d: %s", c.status,
                 c.req.err.msg);
    cr_assert_eq(c.req.attempts, 1);
    cr_assert_lt(ms, 1500);
    cr_assert_not_null(strstr(c.req.err.msg, "/test/delay/3000"));
    kc_http_req_release(&c.req);
}

Test(http, no_attempt_outlives_the_retry_deadline)
{
    struct kc_http_opts o = { 0 };
    struct call c;
    double ms;

    o.retry.max_elapsed_ms = 300; /* per-attempt timeout left at 60 s */
    ms = get_ms(&c, "/test/delay/3000", &o);
    cr_assert_eq(c.status, KC_ETIMEDOUT, "%s", c.req.err.msg);
    cr_assert_lt(ms, 1500);
    kc_http_req_release(&c.req);
}

Test(http, timeouts_are_retried_for_idempotent_requests)
{
    struct kc_http_opts o = fast_retries(2);
    struct call c;

    o.timeout_ms = 150;
    start(&c, KC_HTTP_GET, "/test/delay/2000", &o);
    run();
    cr_assert_eq(c.status, KC_ETIMEDOUT);
    cr_assert_eq(c.req.attempts, 2);
    cr_assert(c.req.gave_up);
    kc_http_req_release(&c.req);
}

Test(http, hundred_concurrent_requests_overlap)
{
    enum {
        N = 100,
        DELAY = 200
    };
    struct call *calls = kc_xcalloc(N, sizeof(*calls));
    double t0 = mono_ms(), elapsed;
    struct kc_http_stats st;

    for (int i = 0; i < N; i++)
        start(&calls[i], KC_HTTP_GET, "/test/delay/200", NULL);
    run();
    elapsed = mono_ms() - t0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(calls[i].status, 0, "%d: %s", i, calls[i].req.err.msg);
        cr_assert_eq(calls[i].req.code, 200);
        kc_http_req_release(&calls[i].req);
    }
    cr_assert_geq(elapsed, DELAY);
    /* Sequential would be N * DELAY = 20 s; a ratio, not a tight bound. */
    cr_assert_lt(elapsed, 0.25 * N * DELAY, "100 requests took %.0f ms",
                 elapsed);
    kc_http_get_stats(http, &st);
    cr_assert_eq(st.attempts, N);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(sim_proc_route_count(sp, "GET /test/delay/{ms}"), N);
    free(calls);
}

Test(http, dropped_connection_retried_only_when_idempotent)
{
    struct kc_http_opts o = fast_retries(3);
    struct call c;

    start(&c, KC_HTTP_GET, "/test/drop", &o);
    run();
    cr_assert_eq(c.status, KC_EHTTP, "%d %s", c.status, c.req.err.msg);
    cr_assert_eq(c.req.attempts, 3);
    kc_http_req_release(&c.req);
    cr_assert_eq(sim_proc_route_count(sp, "GET /test/drop"), 3);

    start(&c, KC_HTTP_POST, "/test/drop", &o);
    run();
    cr_assert_eq(c.status, KC_EHTTP);
    cr_assert_eq(c.req.attempts, 1, "a POST was retried");
    kc_http_req_release(&c.req);
    cr_assert_eq(sim_proc_route_count(sp, "POST /test/drop"), 1);

    /* A POST with an idempotency token may be retried. */
    memset(&c, 0, sizeof(c));
    {
        char *u = url("/test/drop");
        struct kc_err err = { 0 };

        kc_http_req_init(&c.req, KC_HTTP_POST, u);
        free(u);
        kc_http_req_set_safe(&c.req, true);
        cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), 0);
    }
    run();
    cr_assert_eq(c.req.attempts, 3);
    kc_http_req_release(&c.req);
    cr_assert_eq(sim_proc_route_count(sp, "POST /test/drop"), 4);
}

Test(http, non_idempotent_post_not_retried_on_503)
{
    struct kc_http_opts o = fast_retries(4);
    struct call c;

    start(&c, KC_HTTP_POST, "/test/count/p?fail_first=10", &o);
    run();
    cr_assert_eq(c.req.code, 503);
    cr_assert_eq(c.req.attempts, 1);
    kc_http_req_release(&c.req);
    start(&c, KC_HTTP_PATCH, "/test/count/p?fail_first=10", &o);
    run();
    cr_assert_eq(c.req.attempts, 1);
    kc_http_req_release(&c.req);
    start(&c, KC_HTTP_PUT, "/test/count/p?fail_first=10", &o);
    run();
    cr_assert_eq(c.req.attempts, 4);
    kc_http_req_release(&c.req);
}

Test(http, injected_drop_then_success)
{
    struct kc_http_opts o = fast_retries(3);
    struct call c;

    sim_proc_set_faults(sp, "[{\"match\":\"^GET /test/echo$\",\"drop\":true,"
                            "\"count\":1}]");
    start(&c, KC_HTTP_GET, "/test/echo", &o);
    run();
    cr_assert_eq(c.status, 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.attempts, 2);
    kc_http_req_release(&c.req);
}

Test(http, connection_refused_is_an_error)
{
    struct kc_http_opts o = fast_retries(2);
    struct kc_err err = { 0 };
    struct call c = { 0 };
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    int len = sizeof(sa);
    char *u;

    /* A port that was free a moment ago: bind, read it, close. */
    cr_assert_eq(uv_tcp_init(&loop, &tcp), 0);
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    cr_assert_eq(uv_tcp_bind(&tcp, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_tcp_getsockname(&tcp, (struct sockaddr *)&sa, &len), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    run();
    u = kc_xasprintf("http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    kc_http_req_init(&c.req, KC_HTTP_POST, u);
    free(u);
    cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), 0);
    run();
    cr_assert_eq(c.status, KC_EHTTP);
    /* Nothing was sent: retried even for a POST. */
    cr_assert_eq(c.req.attempts, 2);
    cr_assert_eq(c.req.curl_code, 7 /* CURLE_COULDNT_CONNECT */);
    kc_http_req_release(&c.req);
}

Test(http, json_and_form_bodies_and_headers)
{
    struct kc_err err = { 0 };
    struct call c = { 0 };
    struct json_object *j = NULL, *body = json_object_new_object();
    const char *s;
    char *u = url("/test/echo");

    kc_http_req_init(&c.req, KC_HTTP_POST, u);
    free(u);
    json_object_object_add(body, "name", json_object_new_string("x y/z"));
    cr_assert_eq(kc_http_req_take_json(&c.req, body, &err), 0);
    cr_assert_eq(kc_http_req_add_header(&c.req, "X-Test", "1", &err), 0);
    cr_assert_eq(kc_http_req_set_header(&c.req, "X-Test", "2", &err), 0);
    cr_assert_eq(kc_http_req_add_header(&c.req, "Bad\r\nHeader", "v", &err),
                 KC_EINVAL);
    cr_assert_eq(kc_http_req_add_header(&c.req, "X-Ok", "a\r\nb: c", &err),
                 KC_EINVAL);
    cr_assert_eq(kc_http_req_add_query(&c.req, "q", "a b&c=d", &err), 0);
    cr_assert_eq(kc_http_send(http, &c.req, NULL, on_done, &err), 0);
    run();
    cr_assert_eq(c.req.code, 200);
    cr_assert_not_null(kc_http_resp_header(&c.req, "x-request-id"));
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_json_get_str(j, "body", &s, &err), 0);
    cr_assert_str_eq(s, "{\"name\":\"x y\\/z\"}");
    cr_assert_eq(kc_json_get_str(j, "headers.X-Test", &s, &err), 0);
    cr_assert_str_eq(s, "2");
    cr_assert_eq(kc_json_get_str(j, "headers.Content-Type", &s, &err), 0);
    cr_assert_str_eq(s, "application/json");
    cr_assert_eq(kc_json_get_str(j, "q", &s, &err), 0);
    cr_assert_str_eq(s, "a b&c=d");
    json_object_put(j);
    kc_http_req_release(&c.req);

    u = url("/test/echo");
    kc_http_req_init(&c.req, KC_HTTP_POST, u);
    free(u);
    c.done = false;
    cr_assert_eq(kc_http_req_add_form(&c.req, "Action", "RunInstances", &err),
                 0);
    cr_assert_eq(kc_http_req_add_form(&c.req, "Tag.1.Value", "a b=c&d~", &err),
                 0);
    cr_assert_eq(kc_http_send(http, &c.req, NULL, on_done, &err), 0);
    run();
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_json_get_str(j, "body", &s, &err), 0);
    cr_assert_str_eq(s, "Action=RunInstances&Tag.1.Value=a%20b%3Dc%26d~");
    cr_assert_eq(kc_json_get_str(j, "headers.Content-Type", &s, &err), 0);
    cr_assert_str_eq(s, "application/x-www-form-urlencoded");
    json_object_put(j);
    kc_http_req_release(&c.req);
}

Test(http, check_formats_remote_errors)
{
    struct kc_err err = { 0 };
    struct call c;

    start(&c, KC_HTTP_GET, "/test/status/404?token=abc", NULL);
    run();
    cr_assert_eq(kc_http_req_check(&c.req, c.status, &err), KC_EREMOTE);
    cr_assert_not_null(strstr(err.msg, "GET "), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "/test/status/404: 404"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "token=abc"), "%s", err.msg);
    kc_http_req_release(&c.req);
}

static char *slurp_log(void)
{
    struct kc_buf b = { 0 };
    char buf[4096];
    size_t n;

    fflush(logfile);
    rewind(logfile);
    while ((n = fread(buf, 1, sizeof(buf), logfile)) > 0)
        kc_buf_add(&b, buf, n);
    return kc_buf_detach(&b, NULL);
}

Test(http, debug_trace_redacts_secrets)
{
    struct kc_err err = { 0 };
    struct call c = { 0 };
    struct kc_secret *tok = kc_secret_new("ya29.s3cr3t-access-token", 24);
    struct json_object *body = json_object_new_object();
    char *u = url("/test/echo?X-Amz-Signature=deadbeefcafe1234&plain=visible"),
         *text;

    kc_log_add_secret(&logger, "hunter2-known-secret", 20);
    kc_http_req_init(&c.req, KC_HTTP_POST, u);
    free(u);
    cr_assert_eq(kc_http_req_set_header_secret(&c.req, "Authorization",
                                               "Bearer ", tok, &err),
                 0);
    cr_assert_eq(kc_http_req_add_header(&c.req, "Cookie",
                                        "session=cookie-value-1234", &err),
                 0);
    cr_assert_eq(kc_http_req_add_header(&c.req, "X-Amz-Security-Token",
                                        "FwoGZXIvYXdzEsessiontoken", &err),
                 0);
    json_object_object_add(body, "private_key",
                           json_object_new_string("0xprivkey-abcdef0123"));
    json_object_object_add(body, "note",
                           json_object_new_string("pw hunter2-known-secret"));
    json_object_object_add(body, "name",
                           json_object_new_string("visible-name"));
    cr_assert_eq(kc_http_req_take_json(&c.req, body, &err), 0);
    cr_assert_eq(kc_http_send(http, &c.req, NULL, on_done, &err), 0);
    run();
    cr_assert_eq(c.req.code, 200);
    /* The server did get the real values (echoed back). */
    cr_assert_not_null(strstr(kc_buf_str(&c.req.body), "s3cr3t-access-token"));
    text = slurp_log();
    cr_assert_not_null(strstr(text, "> POST "), "%s", text);
    cr_assert_not_null(strstr(text, "-> 200 in "), "%s", text);
    cr_assert_not_null(strstr(text, "visible-name"), "%s", text);
    cr_assert_not_null(strstr(text, "plain=visible"), "%s", text);
    cr_assert_not_null(strstr(text, "[redacted]"), "%s", text);
    cr_assert_null(strstr(text, "s3cr3t-access-token"), "%s", text);
    cr_assert_null(strstr(text, "cookie-value-1234"), "%s", text);
    cr_assert_null(strstr(text, "FwoGZXIvYXdzEsessiontoken"), "%s", text);
    cr_assert_null(strstr(text, "deadbeefcafe1234"), "%s", text);
    cr_assert_null(strstr(text, "0xprivkey-abcdef0123"), "%s", text);
    cr_assert_null(strstr(text, "hunter2-known-secret"), "%s", text);
    free(text);
    kc_secret_free(tok);
    kc_http_req_release(&c.req);
}

static void sha256_fd(int fd, uint64_t off, uint64_t len, char out[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32], buf[65536];
    unsigned n = 0;

    cr_assert_eq(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    while (len > 0) {
        size_t want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        ssize_t r = pread(fd, buf, want, (off_t)off);

        cr_assert_gt(r, 0);
        cr_assert_eq(EVP_DigestUpdate(ctx, buf, (size_t)r), 1);
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    cr_assert_eq(EVP_DigestFinal_ex(ctx, md, &n), 1);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int temp_fd(void)
{
    char path[] = "/tmp/kc-http-XXXXXX";
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    unlink(path);
    return fd;
}

Test(http, streaming_upload_from_fd)
{
    enum {
        SIZE = 3 << 20
    };
    int fd = temp_fd();
    char *data = kc_xmalloc(SIZE), want[65], chunk_want[65];
    const char *got;
    struct json_object *j = NULL;
    struct kc_err err = { 0 };
    struct kc_http_opts o = fast_retries(3);
    struct call c = { 0 };
    char *u;

    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    cr_assert_eq(write(fd, data, SIZE), SIZE);
    free(data);
    sha256_fd(fd, 0, SIZE, want);
    sha256_fd(fd, 512 << 10, 1 << 20, chunk_want);
    /* The first upload is dropped by the simulator: the retry re-reads the
     * file from the same offset. */
    sim_proc_set_faults(sp, "[{\"match\":\"^PUT /test/upload$\",\"drop\":true,"
                            "\"count\":1}]");
    u = url("/test/upload");
    kc_http_req_init(&c.req, KC_HTTP_PUT, u);
    cr_assert_eq(kc_http_req_upload_fd(&c.req, fd, 0, SIZE, &err), 0);
    cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), 0);
    run();
    cr_assert_eq(c.status, 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.attempts, 2);
    cr_assert_eq(c.req.uploaded, SIZE);
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0);
    cr_assert_eq(kc_json_get_str(j, "sha256", &got, &err), 0);
    cr_assert_str_eq(got, want);
    json_object_put(j);
    kc_http_req_release(&c.req);

    /* One chunk, as a resumable upload sends it. */
    memset(&c, 0, sizeof(c));
    kc_http_req_init(&c.req, KC_HTTP_POST, u);
    cr_assert_eq(kc_http_req_upload_fd(&c.req, fd, 512 << 10, 1 << 20, &err),
                 0);
    cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), 0);
    run();
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0);
    cr_assert_eq(kc_json_get_str(j, "sha256", &got, &err), 0);
    cr_assert_str_eq(got, chunk_want);
    json_object_put(j);
    kc_http_req_release(&c.req);
    free(u);
    close(fd);
}

Test(http, streaming_download_to_fd)
{
    enum {
        SIZE = 5 << 20
    };
    int fd = temp_fd();
    struct kc_err err = { 0 };
    struct call c = { 0 };
    char got[65], *u;
    const char *want;

    u = url("/test/download?bytes=5242880&seed=9");
    kc_http_req_init(&c.req, KC_HTTP_GET, u);
    free(u);
    cr_assert_eq(kc_http_req_download_fd(&c.req, fd, 100, &err), 0);
    cr_assert_eq(kc_http_send(http, &c.req, NULL, on_done, &err), 0);
    run();
    cr_assert_eq(c.status, 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.downloaded, SIZE);
    cr_assert_eq(c.req.body.len, 0);
    want = kc_http_resp_header(&c.req, "X-Content-Sha256");
    cr_assert_not_null(want);
    sha256_fd(fd, 100, SIZE, got);
    cr_assert_str_eq(got, want);
    kc_http_req_release(&c.req);

    /* An error status keeps its body in memory, the fd is untouched. */
    memset(&c, 0, sizeof(c));
    u = url("/test/status/404");
    kc_http_req_init(&c.req, KC_HTTP_GET, u);
    free(u);
    cr_assert_eq(kc_http_req_download_fd(&c.req, fd, 0, &err), 0);
    cr_assert_eq(kc_http_send(http, &c.req, NULL, on_done, &err), 0);
    run();
    cr_assert_eq(c.req.code, 404);
    cr_assert_eq(c.req.downloaded, 0);
    cr_assert_not_null(strstr(kc_buf_str(&c.req.body), "status 404"));
    kc_http_req_release(&c.req);
    close(fd);
}

Test(http, slow_body_arrives_whole)
{
    struct call c;

    start(&c, KC_HTTP_GET, "/test/slow?bytes=2000&chunk=500&interval_ms=30",
          NULL);
    run();
    cr_assert_eq(c.req.code, 200);
    cr_assert_eq(c.req.body.len, 2000);
    kc_http_req_release(&c.req);
}

Test(http, body_over_the_cap_fails)
{
    struct kc_http_opts o = { 0 };
    struct call c;

    o.max_body = 1000;
    start(&c, KC_HTTP_GET, "/test/download?bytes=5000", &o);
    run();
    cr_assert_eq(c.status, KC_ERANGE, "%d %s", c.status, c.req.err.msg);
    kc_http_req_release(&c.req);
}

static void on_cancel_timer(uv_timer_t *t)
{
    kc_http_cancel(http, t->data);
    uv_close((uv_handle_t *)t, NULL);
}

Test(http, cancel_ends_a_request_in_flight)
{
    struct call c, w;
    uv_timer_t t;
    double t0 = mono_ms();
    struct kc_http_opts o = fast_retries(5);

    start(&c, KC_HTTP_GET, "/test/delay/5000", NULL);
    /* And one waiting for its retry. */
    o.retry.base_ms = 10000;
    o.retry.max_backoff_ms = 10000;
    o.retry.ignore_retry_after = true;
    start(&w, KC_HTTP_GET, "/test/status/503", &o);
    cr_assert_eq(uv_timer_init(&loop, &t), 0);
    t.data = &c.req;
    cr_assert_eq(uv_timer_start(&t, on_cancel_timer, 100, 0), 0);
    while (!c.done)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(c.status, KC_ECANCELED);
    cr_assert_lt(c.done_ms - t0, 2000);
    /* Let the second one reach its backoff wait, then cancel everything. */
    while (w.req.attempts < 1 || w.req.code == 0) {
        if (w.done)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    kc_http_cancel_all(http);
    run();
    cr_assert(w.done);
    if (!w.req.gave_up)
        cr_assert_eq(w.status, KC_ECANCELED);
    cr_assert_lt(mono_ms() - t0, 5000);
    kc_http_req_release(&c.req);
    kc_http_req_release(&w.req);
}

Test(http, close_cancels_live_requests)
{
    struct call c;

    start(&c, KC_HTTP_GET, "/test/delay/5000", NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    /* teardown closes the client: the callback must still run, once. */
    kc_http_close(http);
    http = NULL;
    run();
    cr_assert(c.done);
    cr_assert_eq(c.status, KC_ECANCELED);
    kc_http_req_release(&c.req);
    {
        /* A new client for teardown. */
        struct kc_http_config cfg = { .loop = &loop, .log = &logger };
        struct kc_err err = { 0 };

        cr_assert_eq(kc_http_new(&cfg, &http, &err), 0);
    }
}

Test(http, resolve_maps_a_host_for_one_request)
{
    struct kc_http_opts o = { 0 };
    struct kc_err err = { 0 };
    struct call c = { 0 };
    struct json_object *j = NULL;
    char *u, entry[128];
    const char *host;

    cr_assert_eq(kc_snprintf(entry, sizeof(entry),
                             "api.sim.invalid:%u:127.0.0.1", sim_proc_port(sp)),
                 0);
    const char *resolve[] = { entry };

    o.resolve = resolve;
    o.nresolve = 1;
    u = kc_xasprintf("http://api.sim.invalid:%u/test/echo", sim_proc_port(sp));
    kc_http_req_init(&c.req, KC_HTTP_GET, u);
    cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), 0);
    run();
    cr_assert_eq(c.status, 0, "%s", c.req.err.msg);
    cr_assert_eq(kc_http_resp_json(&c.req, &j, &err), 0);
    cr_assert_eq(kc_json_get_str(j, "headers.Host", &host, &err), 0);
    cr_assert_eq(strncmp(host, "api.sim.invalid:", 16), 0, "%s", host);
    cr_assert_eq(kc_json_get_str(j, "base_url", &host, &err), 0);
    cr_assert_eq(strncmp(host, "http://api.sim.invalid:", 23), 0, "%s", host);
    json_object_put(j);
    kc_http_req_release(&c.req);

    /* Malformed entries are refused before anything starts. */
    resolve[0] = "no-port";
    kc_http_req_init(&c.req, KC_HTTP_GET, u);
    cr_assert_eq(kc_http_send(http, &c.req, &o, on_done, &err), KC_EINVAL);
    kc_http_req_release(&c.req);
    free(u);
}

/* ---- TLS: a self-signed certificate made here ---- */

struct tls_material {
    char dir[64];
    char cert_path[128], key_path[128];
    char *cert_pem;
    char pin[128];
};

static void make_cert(struct tls_material *m)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    X509_EXTENSION *ext;
    X509V3_CTX ctx;
    unsigned char *der = NULL, md[32];
    int derlen;
    unsigned mdlen = 0;
    FILE *f;
    BIO *bio;
    char *p;
    long n;

    cr_assert_not_null(key);
    cr_assert_not_null(x);
    cr_assert_eq(X509_set_version(x, 2), 1);
    cr_assert_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    cr_assert_eq(X509_set_pubkey(x, key), 1);
    name = X509_get_subject_name(x);
    cr_assert_eq(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                            (const unsigned char *)"localhost",
                                            -1, -1, 0),
                 1);
    cr_assert_eq(X509_set_issuer_name(x, name), 1);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
                              "DNS:localhost,DNS:kms.sim.invalid,IP:127.0.0.1");
    cr_assert_not_null(ext);
    cr_assert_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                              "critical,CA:TRUE");
    cr_assert_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    cr_assert_gt(X509_sign(x, key, EVP_sha256()), 0);

    cr_assert_eq(kc_snprintf(m->dir, sizeof(m->dir), "/tmp/kc-tls-XXXXXX"), 0);
    cr_assert_not_null(mkdtemp(m->dir));
    cr_assert_eq(
        kc_snprintf(m->cert_path, sizeof(m->cert_path), "%s/cert.pem", m->dir),
        0);
    cr_assert_eq(
        kc_snprintf(m->key_path, sizeof(m->key_path), "%s/key.pem", m->dir), 0);
    f = fopen(m->cert_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(m->key_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    bio = BIO_new(BIO_s_mem());
    cr_assert_eq(PEM_write_bio_X509(bio, x), 1);
    n = BIO_get_mem_data(bio, &p);
    m->cert_pem = kc_xstrndup(p, (size_t)n);
    BIO_free(bio);
    /* The pin: sha256 of the DER SubjectPublicKeyInfo, base64. */
    derlen = i2d_PUBKEY(key, &der);
    cr_assert_gt(derlen, 0);
    cr_assert_eq(
        EVP_Digest(der, (size_t)derlen, md, &mdlen, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    memcpy(m->pin, "sha256//", 8);
    cr_assert_eq(EVP_EncodeBlock((unsigned char *)m->pin + 8, md, 32), 44);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void drop_cert(struct tls_material *m)
{
    unlink(m->cert_path);
    unlink(m->key_path);
    rmdir(m->dir);
    free(m->cert_pem);
}

static int tls_call(const char *host, const struct kc_http_opts *opts,
                    struct call *c)
{
    struct kc_err err = { 0 };
    char *u = kc_xasprintf("https://%s:%u/test/echo", host, sim_proc_port(sp));

    memset(c, 0, sizeof(*c));
    kc_http_req_init(&c->req, KC_HTTP_GET, u);
    free(u);
    cr_assert_eq(kc_http_send(http, &c->req, opts, on_done, &err), 0);
    run();
    return c->status;
}

Test(http_tls, ca_file_pin_and_resolve, .timeout = 60)
{
    struct tls_material m = { 0 };
    struct kc_http_opts o = fast_retries(3);
    struct call c;
    char entry[128];
    const char *resolve[1];
    const char *args[5];

    make_cert(&m);
    args[0] = "--tls-cert";
    args[1] = m.cert_path;
    args[2] = "--tls-key";
    args[3] = m.key_path;
    args[4] = NULL;
    sp = sim_proc_start_args("test", 7, args);
    cr_assert_eq(strncmp(sim_proc_url(sp), "https://", 8), 0);
    client_open();

    /* The system store does not know our CA: verification fails, and a
     * TLS failure is not retried. */
    cr_assert_eq(tls_call("localhost", &o, &c), KC_ECRYPTO, "%s",
                 c.req.err.msg);
    cr_assert_eq(c.req.attempts, 1);
    kc_http_req_release(&c.req);

    o.ca_file = m.cert_path;
    cr_assert_eq(tls_call("localhost", &o, &c), 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    kc_http_req_release(&c.req);

    o.ca_file = NULL;
    o.ca_pem = m.cert_pem;
    cr_assert_eq(tls_call("127.0.0.1", &o, &c), 0, "%s", c.req.err.msg);
    kc_http_req_release(&c.req);

    o.pinned_pubkey = m.pin;
    cr_assert_eq(tls_call("localhost", &o, &c), 0, "%s", c.req.err.msg);
    kc_http_req_release(&c.req);

    o.pinned_pubkey = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    cr_assert_eq(tls_call("localhost", &o, &c), KC_ECRYPTO, "%s",
                 c.req.err.msg);
    cr_assert_eq(c.req.attempts, 1);
    kc_http_req_release(&c.req);

    /* A name with no DNS record, mapped for this request; the certificate
     * is checked against that name. */
    o.pinned_pubkey = m.pin;
    cr_assert_eq(kc_snprintf(entry, sizeof(entry),
                             "kms.sim.invalid:%u:127.0.0.1", sim_proc_port(sp)),
                 0);
    resolve[0] = entry;
    o.resolve = resolve;
    o.nresolve = 1;
    cr_assert_eq(tls_call("kms.sim.invalid", &o, &c), 0, "%s", c.req.err.msg);
    kc_http_req_release(&c.req);

    /* Mapped to a name the certificate does not carry: refused. */
    cr_assert_eq(kc_snprintf(entry, sizeof(entry),
                             "other.sim.invalid:%u:127.0.0.1",
                             sim_proc_port(sp)),
                 0);
    cr_assert_eq(tls_call("other.sim.invalid", &o, &c), KC_ECRYPTO, "%s",
                 c.req.err.msg);
    kc_http_req_release(&c.req);

    client_close();
    sim_proc_stop(sp);
    drop_cert(&m);
}

static char *read_text(const char *path)
{
    struct kc_buf b = { 0 };
    char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    cr_assert_not_null(f, "%s", path);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        kc_buf_add(&b, buf, n);
    fclose(f);
    return kc_buf_detach(&b, NULL);
}

static int https_get(int64_t port, const char *path,
                     const struct kc_http_opts *o, struct call *c)
{
    struct kc_err err = { 0 };
    char *u = kc_xasprintf("https://localhost:%lld%s", (long long)port, path);

    memset(c, 0, sizeof(*c));
    kc_http_req_init(&c->req, KC_HTTP_GET, u);
    free(u);
    cr_assert_eq(kc_http_send(http, &c->req, o, on_done, &err), 0);
    run();
    return c->status;
}

Test(http_tls, service_listener_over_tls)
{
    struct tls_material m = { 0 };
    struct kc_http_opts o = fast_retries(1);
    struct json_object *body = json_object_new_object(), *j = NULL;
    struct kc_err err = { 0 };
    struct call c;
    int64_t id = 0, port = 0;
    char *text = NULL, *key, *req_text, path[64];
    int status = 0;

    make_cert(&m);
    sp = sim_proc_start("test", 7);
    client_open();
    key = read_text(m.key_path);
    json_object_object_add(body, "cert_pem",
                           json_object_new_string(m.cert_pem));
    json_object_object_add(body, "key_pem", json_object_new_string(key));
    free(key);
    req_text = kc_xstrdup(json_object_to_json_string(body));
    json_object_put(body);
    cr_assert_eq(sim_proc_call(sp, "POST", "/test/listen", "{}", NULL), 400);
    cr_assert_eq(sim_proc_call(sp, "POST", "/test/listen", req_text, &text),
                 200);
    free(req_text);
    cr_assert_eq(kc_json_parse(text, strlen(text), "listen", &j, &err), 0);
    free(text);
    cr_assert_eq(kc_json_get_int(j, "id", &id, &err), 0);
    cr_assert_eq(kc_json_get_int(j, "port", &port, &err), 0);
    json_object_put(j);

    o.ca_file = m.cert_path;
    cr_assert_eq(https_get(port, "/test/echo", &o, &c), 0, "%s", c.req.err.msg);
    cr_assert_eq(c.req.code, 200);
    kc_http_req_release(&c.req);
    /* Only the service's routes there: no admin API. */
    cr_assert_eq(https_get(port, "/_sim/requests", &o, &c), 0);
    cr_assert_eq(c.req.code, 404);
    kc_http_req_release(&c.req);

    cr_assert_eq(
        kc_snprintf(path, sizeof(path), "/test/listen/%lld", (long long)id), 0);
    cr_assert_eq(sim_proc_call(sp, "DELETE", path, NULL, NULL), 200);
    /* The listener goes away (its daemon is stopped off the lock). */
    for (int i = 0; i < 50 && status != KC_EHTTP; i++) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };

        status = https_get(port, "/test/echo", &o, &c);
        kc_http_req_release(&c.req);
        if (status != KC_EHTTP)
            nanosleep(&ts, NULL);
    }
    cr_assert_eq(status, KC_EHTTP);
    /* The simulator still answers on its main listener. */
    cr_assert_eq(sim_proc_call(sp, "GET", "/test/echo", NULL, NULL), 200);
    client_close();
    sim_proc_stop(sp);
    drop_cert(&m);
}
