/* tests/unit/test_http_interrupt.c: Ctrl-C during a retry backoff
 * (kc_http_interrupt, called by kc_engine_cancel). Against kmsctl-sim's
 * fault injection (503 with Retry-After): a read waiting out its backoff
 * ends at once with KC_ECANCELED instead of after the Retry-After; so does a
 * write none of whose attempts reached the server; a write that did reach it
 * keeps its retries and gets its known outcome; later requests get their
 * first attempt but no retry. */
#include "reconcile/http.h"

#include <criterion/criterion.h>

#include "tests/unit/helpers/sim_proc.h"

/* Retry-After of the faults: far longer than the test waits, so a request
 * that honoured it could not finish in the bounds below. */
#define LONG_WAIT_S "30"
#define BOUND_MS    15000.0 /* generous for a loaded machine; < 30 s */
#define MAX_POLLS   2000    /* 10 ms each */

struct pending {
    struct kc_http_req req;
    int status;
    bool done;
    uint64_t done_at;
};

static struct sim_proc *sim;
static uv_loop_t loop;
static struct kc_log logger;
static struct kc_http *http;
static uv_timer_t poll_timer;
static struct pending *watch[4];
static size_t nwatch;
static int polls;
static uint64_t interrupted_at;

static void fixture_up(void)
{
    struct kc_http_config cfg = { 0 };
    struct kc_err err = { 0 };

    sim = sim_proc_start("test", 5);
    cr_assert_eq(uv_loop_init(&loop), 0);
    kc_log_init(&logger, KC_LOG_WARN);
    cfg.loop = &loop;
    cfg.log = &logger;
    cfg.seed = 9;
    cr_assert_eq(kc_http_new(&cfg, &http, &err), 0, "%s", err.msg);
    nwatch = 0;
    polls = 0;
    interrupted_at = 0;
}

static void fixture_down(void)
{
    kc_http_close(http);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    kc_log_release(&logger);
    sim_proc_stop(sim);
}

TestSuite(http_interrupt, .init = fixture_up, .fini = fixture_down,
          .timeout = 90);

static void on_called_back(struct kc_http_req *req, int status)
{
    struct pending *p = kc_container_of(req, struct pending, req);

    cr_assert_not(p->done, "called back twice");
    p->done = true;
    p->status = status;
    p->done_at = uv_now(&loop);
}

/* Sends METHOD BASE+PATH (BODY: JSON or NULL); READ/SAFE as the request's
 * marks; BASE_MS the backoff base (a large one keeps a transport retry
 * waiting). */
static void send_req(struct pending *p, enum kc_http_method method,
                     const char *base, const char *path, const char *body,
                     bool read, uint32_t base_ms)
{
    struct kc_http_opts o = { 0 };
    struct kc_err err = { 0 };
    char *u = kc_xasprintf("%s%s", base, path);

    memset(p, 0, sizeof(*p));
    kc_http_req_init(&p->req, method, u);
    free(u);
    if (body)
        cr_assert_eq(kc_http_req_set_body(&p->req, body, strlen(body),
                                          "application/json", &err),
                     0, "%s", err.msg);
    kc_http_req_set_safe(&p->req, true);
    kc_http_req_set_read(&p->req, read);
    o.retry.max_attempts = 4;
    o.retry.base_ms = base_ms;
    o.retry.max_backoff_ms = base_ms;
    o.retry.max_elapsed_ms = 120000;
    cr_assert_eq(kc_http_send(http, &p->req, &o, on_called_back, &err), 0, "%s",
                 err.msg);
}

/* Interrupts once every watched request has had its first attempt end
 * (a status or a transport error) and waits for its retry. */
static void on_poll(uv_timer_t *t)
{
    bool ready = true;

    cr_assert_lt(++polls, MAX_POLLS, "first attempts did not end");
    for (size_t i = 0; i < nwatch; i++) {
        const struct kc_http_req *r = &watch[i]->req;

        if (watch[i]->done || r->attempts < 1 ||
            (r->code == 0 && r->curl_code == 0))
            ready = false;
    }
    if (!ready)
        return;
    cr_assert_eq(uv_timer_stop(t), 0);
    uv_close((uv_handle_t *)t, NULL);
    interrupted_at = uv_now(&loop);
    kc_http_interrupt(http);
}

static void interrupt_when_waiting(void)
{
    cr_assert_eq(uv_timer_init(&loop, &poll_timer), 0);
    cr_assert_eq(uv_timer_start(&poll_timer, on_poll, 10, 10), 0);
}

static void run_loop(void)
{
    cr_assert_geq(uv_run(&loop, UV_RUN_DEFAULT), 0);
}

/* Requests the simulator answered, faulted ones included (those are not
 * counted by route). */
static int64_t sim_total(void)
{
    struct json_object *r = sim_proc_requests(sim);
    int64_t n = json_object_get_int64(json_object_object_get(r, "total"));

    json_object_put(r);
    return n;
}

Test(http_interrupt, reads_and_unsent_writes_stop_sent_writes_finish)
{
    struct pending get, read_post, write_post, refused;
    char *closed;

    /* Reads always 503 with a long Retry-After; the write's first attempt
     * 503s with a short one, then succeeds. */
    sim_proc_set_faults(sim, "[{\"match\":\"^GET /test/echo$\",\"status\":503,"
                             "\"retry_after\":" LONG_WAIT_S "},"
                             "{\"match\":\"^POST /test/upload$\",\"status\":"
                             "503,\"retry_after\":" LONG_WAIT_S "},"
                             "{\"match\":\"^POST /test/objects$\",\"status\":"
                             "503,\"retry_after\":1,\"count\":1}]");
    send_req(&get, KC_HTTP_GET, sim_proc_url(sim), "/test/echo", NULL, false,
             50);
    /* A POST marked read, as EC2 Describe* calls are. */
    send_req(&read_post, KC_HTTP_POST, sim_proc_url(sim), "/test/upload", "{}",
             true, 50);
    send_req(&write_post, KC_HTTP_POST, sim_proc_url(sim), "/test/objects",
             "{\"name\":\"kept\"}", false, 50);
    /* A write to a closed port: never reached a server; its backoff is
     * long, so it is waiting when the interrupt comes. */
    closed = kc_xasprintf("http://127.0.0.1:%u", 1u);
    send_req(&refused, KC_HTTP_POST, closed, "/x", "{}", false, 30000);
    free(closed);
    watch[0] = &get;
    watch[1] = &read_post;
    watch[2] = &write_post;
    watch[3] = &refused;
    nwatch = 4;
    interrupt_when_waiting();
    run_loop();

    cr_assert_neq(interrupted_at, 0);
    cr_assert_eq(get.status, KC_ECANCELED, "%s", get.req.err.msg);
    cr_assert_eq(get.req.attempts, 1);
    cr_assert_not_null(strstr(get.req.err.msg, "interrupted instead of "
                                               "retrying after HTTP 503"),
                       "%s", get.req.err.msg);
    cr_assert_lt((double)(get.done_at - interrupted_at), BOUND_MS);
    cr_assert_eq(read_post.status, KC_ECANCELED, "%s", read_post.req.err.msg);
    cr_assert_eq(read_post.req.attempts, 1);
    cr_assert_lt((double)(read_post.done_at - interrupted_at), BOUND_MS);
    cr_assert_eq(refused.status, KC_ECANCELED, "%s", refused.req.err.msg);
    cr_assert_eq(refused.req.attempts, 1);
    cr_assert_lt((double)(refused.done_at - interrupted_at), BOUND_MS);
    /* The write reached the server: it retried and got its outcome. */
    cr_assert_eq(write_post.status, 0, "%s", write_post.req.err.msg);
    cr_assert_eq(write_post.req.code, 200);
    cr_assert_eq(write_post.req.attempts, 2);
    /* One attempt each for the two reads, two for the write, none for the
     * closed port. */
    cr_assert_eq(sim_total(), 4);
    kc_http_req_release(&get.req);
    kc_http_req_release(&read_post.req);
    kc_http_req_release(&write_post.req);
    kc_http_req_release(&refused.req);
}

Test(http_interrupt, later_requests_get_one_attempt_and_no_retry)
{
    struct pending before, after;

    sim_proc_set_faults(sim, "[{\"match\":\"^GET /test/echo$\",\"status\":503,"
                             "\"retry_after\":" LONG_WAIT_S "}]");
    send_req(&before, KC_HTTP_GET, sim_proc_url(sim), "/test/echo", NULL, false,
             50);
    watch[0] = &before;
    nwatch = 1;
    interrupt_when_waiting();
    run_loop();
    cr_assert_eq(before.status, KC_ECANCELED, "%s", before.req.err.msg);

    /* Sent after the interrupt: its first attempt goes out (an op reaching
     * a safe point may need it), its retry does not. */
    send_req(&after, KC_HTTP_GET, sim_proc_url(sim), "/test/echo", NULL, false,
             50);
    run_loop();
    cr_assert_eq(after.status, KC_ECANCELED, "%s", after.req.err.msg);
    cr_assert_eq(after.req.attempts, 1);
    cr_assert_eq(sim_total(), 2);
    /* Without a fault a later read simply succeeds. */
    sim_proc_clear_faults(sim);
    kc_http_req_release(&after.req);
    send_req(&after, KC_HTTP_GET, sim_proc_url(sim), "/test/echo", NULL, false,
             50);
    run_loop();
    cr_assert_eq(after.status, 0, "%s", after.req.err.msg);
    cr_assert_eq(after.req.code, 200);
    kc_http_req_release(&before.req);
    kc_http_req_release(&after.req);
}
