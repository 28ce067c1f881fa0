/* resources/chain/rpc.c: batched JSON-RPC client. */
#include "resources/chain/rpc.h"

#include "reconcile/json.h"
#include "resources/chain/hex.h"

/* One HTTP request carrying up to max_batch calls. */
struct chain_rpc_batch {
    struct kc_http_req req;
    struct chain_rpc *rpc;
    struct chain_rpc_call **calls;
    size_t n;
    struct chain_rpc_batch *next; /* in rpc->live */
};

struct chain_rpc {
    uv_loop_t *loop;
    struct kc_http *http;
    struct kc_log *log;
    char *url;
    size_t max_batch;
    long timeout_ms;
    uv_timer_t flush;
    struct chain_rpc_call *queue, **queue_tail;
    size_t nqueued;
    struct chain_rpc_batch *live;
    /* Calls that already have a result, called back from the timer so no
     * callback runs inside chain_rpc_call(). */
    struct chain_rpc_call *done, **done_tail;
    uint64_t next_id;
    struct chain_rpc_stats stats;
    bool closing;
};

static void on_flush_closed(uv_handle_t *h)
{
    struct chain_rpc *rpc = h->data;

    free(rpc->url);
    free(rpc);
}

int chain_rpc_new(const struct chain_rpc_config *cfg, struct chain_rpc **out,
                  struct kc_err *err)
{
    struct chain_rpc *rpc;
    int ret;

    *out = NULL;
    if (!cfg->loop || !cfg->http || !cfg->url)
        return kc_err_set(err, KC_EINVAL, "rpc: loop, http and url required");
    rpc = kc_xcalloc(1, sizeof(*rpc));
    rpc->loop = cfg->loop;
    rpc->http = cfg->http;
    rpc->log = cfg->log;
    rpc->url = kc_xstrdup(cfg->url);
    rpc->max_batch = cfg->max_batch ? cfg->max_batch : CHAIN_RPC_MAX_BATCH;
    rpc->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : CHAIN_RPC_TIMEOUT_MS;
    rpc->queue_tail = &rpc->queue;
    rpc->done_tail = &rpc->done;
    rpc->next_id = 1;
    ret = uv_timer_init(cfg->loop, &rpc->flush);
    if (ret < 0) {
        free(rpc->url);
        free(rpc);
        return kc_err_from_uv(err, ret, "rpc timer");
    }
    rpc->flush.data = rpc;
    *out = rpc;
    return 0;
}

void chain_rpc_get_stats(const struct chain_rpc *rpc,
                         struct chain_rpc_stats *out)
{
    *out = rpc->stats;
}

long chain_rpc_timeout_ms(const struct chain_rpc *rpc)
{
    return rpc->timeout_ms;
}

void chain_rpc_call_release(struct chain_rpc_call *call)
{
    void *data = call->data;

    json_object_put(call->result);
    json_object_put(call->params);
    free(call->revert);
    memset(call, 0, sizeof(*call));
    call->data = data;
}

/* Queues CALL's completion with STATUS for the timer. */
static void call_finish(struct chain_rpc *rpc, struct chain_rpc_call *call,
                        int status)
{
    call->status = status;
    call->next = NULL;
    *rpc->done_tail = call;
    rpc->done_tail = &call->next;
}

static void run_done(struct chain_rpc *rpc)
{
    while (rpc->done) {
        struct chain_rpc_call *c = rpc->done;
        rpc->done = c->next;
        if (!rpc->done)
            rpc->done_tail = &rpc->done;
        c->next = NULL;
        c->cb(c, c->status);
    }
}

static void batch_free(struct chain_rpc_batch *b)
{
    kc_http_req_release(&b->req);
    free(b->calls);
    free(b);
}

static void unlink_batch(struct chain_rpc *rpc, struct chain_rpc_batch *b)
{
    for (struct chain_rpc_batch **p = &rpc->live; *p; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            return;
        }
    }
}

/* The hex "data" of a JSON-RPC error: a string, or nested {"data": ...}
 * as some nodes send it. */
static void take_revert(struct chain_rpc_call *c, struct json_object *error)
{
    struct json_object *d = NULL;

    if (!json_object_object_get_ex(error, "data", &d))
        return;
    if (json_object_is_type(d, json_type_object)) {
        struct json_object *inner = NULL;
        if (!json_object_object_get_ex(d, "data", &inner))
            return;
        d = inner;
    }
    if (!json_object_is_type(d, json_type_string) ||
        strncmp(json_object_get_string(d), "0x", 2) != 0)
        return;
    if (chain_hex_decode_alloc(json_object_get_string(d), CHAIN_RPC_MAX_REVERT,
                               &c->revert, &c->revert_len, "error data",
                               NULL) < 0) {
        c->revert = NULL;
        c->revert_len = 0;
    }
}

/* Fills C from one response object; returns the status. */
static int call_from_response(struct chain_rpc_call *c, struct json_object *r)
{
    struct json_object *error = NULL, *result = NULL;

    if (json_object_object_get_ex(r, "error", &error) &&
        !json_object_is_type(error, json_type_null)) {
        const char *msg = kc_json_opt_str(error, "message");
        int64_t code = 0;
        kc_json_get_int(error, "code", &code, NULL);
        c->rpc_code = code;
        take_revert(c, error);
        return kc_err_set(&c->err, KC_EREMOTE, "rpc %s: %.300s (code %lld)",
                          c->method, msg ? msg : "error without a message",
                          (long long)code);
    }
    if (!json_object_object_get_ex(r, "result", &result))
        return kc_err_set(&c->err, KC_EPARSE,
                          "rpc %s: response has neither result nor error",
                          c->method);
    c->result = json_object_get(result);
    return 0;
}

static void on_batch_done(struct kc_http_req *req, int status)
{
    struct chain_rpc_batch *b =
        kc_container_of(req, struct chain_rpc_batch, req);
    struct chain_rpc *rpc = b->rpc;
    struct json_object *root = NULL;
    struct kc_err err = { 0 };
    int ret = status;

    unlink_batch(rpc, b);
    if (ret < 0) {
        kc_err_set(&err, ret, "%s", req->err.msg);
    } else if (req->code < 200 || req->code > 299) {
        ret = kc_err_set(&err, KC_EREMOTE, "HTTP %ld: %.200s", req->code,
                         kc_buf_str(&req->body));
    } else {
        ret = kc_json_parse(req->body.data ? req->body.data : "", req->body.len,
                            "rpc response", &root, &err);
    }
    for (size_t i = 0; i < b->n; i++) {
        struct chain_rpc_call *c = b->calls[i];
        struct json_object *match = NULL;
        int st;
        if (ret < 0) {
            st = kc_err_set(&c->err, ret, "rpc %s: %s", c->method, err.msg);
            call_finish(rpc, c, st);
            continue;
        }
        if (json_object_is_type(root, json_type_array)) {
            for (size_t k = 0; k < json_object_array_length(root); k++) {
                struct json_object *r = json_object_array_get_idx(root, k);
                int64_t id = -1;
                if (kc_json_get_int(r, "id", &id, NULL) == 0 &&
                    (uint64_t)id == c->id) {
                    match = r;
                    break;
                }
            }
        } else if (json_object_is_type(root, json_type_object)) {
            /* A single object: the answer to a lone call, or an error for
             * the whole batch (some nodes refuse batches that way). */
            match = root;
        }
        if (!match)
            st = kc_err_set(&c->err, KC_EPARSE,
                            "rpc %s: no response for this call in the batch",
                            c->method);
        else
            st = call_from_response(c, match);
        call_finish(rpc, c, st);
    }
    json_object_put(root);
    batch_free(b);
    run_done(rpc);
    if (rpc->closing && !rpc->live)
        uv_close((uv_handle_t *)&rpc->flush, on_flush_closed);
}

static int send_batch(struct chain_rpc *rpc, struct chain_rpc_call **calls,
                      size_t n, struct kc_err *err)
{
    struct chain_rpc_batch *b = kc_xcalloc(1, sizeof(*b));
    struct json_object *body = n > 1 ? json_object_new_array() : NULL;
    struct kc_http_opts opts = { 0 };
    int ret;

    b->rpc = rpc;
    b->calls = calls;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(o, "id",
                               json_object_new_int64((int64_t)calls[i]->id));
        json_object_object_add(o, "method",
                               json_object_new_string(calls[i]->method));
        json_object_object_add(o, "params",
                               json_object_get(calls[i]->params)); /* kept */
        if (body)
            json_object_array_add(body, o); /* steals */
        else
            body = o;
    }
    kc_http_req_init(&b->req, KC_HTTP_POST, rpc->url);
    kc_http_req_set_safe(&b->req, true);
    /* A batch without a transaction only reads: Ctrl-C may stop its
     * retries. */
    {
        bool read = true;

        for (size_t i = 0; i < n; i++)
            if (strcmp(calls[i]->method, "eth_sendRawTransaction") == 0)
                read = false;
        kc_http_req_set_read(&b->req, read);
    }
    ret = kc_http_req_take_json(&b->req, body, err);
    opts.timeout_ms = rpc->timeout_ms;
    if (ret == 0)
        ret = kc_http_send(rpc->http, &b->req, &opts, on_batch_done, err);
    if (ret < 0) {
        kc_http_req_release(&b->req);
        b->calls = NULL;
        free(b);
        return ret;
    }
    b->next = rpc->live;
    rpc->live = b;
    rpc->stats.requests++;
    return 0;
}

static void flush_queue(struct chain_rpc *rpc)
{
    while (rpc->queue) {
        size_t n =
            rpc->nqueued < rpc->max_batch ? rpc->nqueued : rpc->max_batch;
        struct chain_rpc_call **calls = kc_xcalloc(n, sizeof(*calls));
        struct kc_err err = { 0 };
        for (size_t i = 0; i < n; i++) {
            calls[i] = rpc->queue;
            rpc->queue = rpc->queue->next;
            calls[i]->next = NULL;
        }
        rpc->nqueued -= n;
        if (!rpc->queue)
            rpc->queue_tail = &rpc->queue;
        if (send_batch(rpc, calls, n, &err) < 0) {
            for (size_t i = 0; i < n; i++)
                call_finish(rpc, calls[i],
                            kc_err_set(&calls[i]->err, err.code, "rpc %s: %s",
                                       calls[i]->method, err.msg));
            free(calls);
        }
    }
}

static void on_flush(uv_timer_t *t)
{
    struct chain_rpc *rpc = t->data;

    flush_queue(rpc);
    run_done(rpc);
}

static void rpc_schedule(struct chain_rpc *rpc, uint64_t ms)
{
    /* Only (re)armed when idle, so the first call's deadline holds. */
    if (uv_is_active((uv_handle_t *)&rpc->flush))
        return;
    if (uv_timer_start(&rpc->flush, on_flush, ms, 0) < 0)
        KC_BUG("uv_timer_start on an initialised timer");
}

int chain_rpc_call(struct chain_rpc *rpc, struct chain_rpc_call *call,
                   const char *method, struct json_object *params,
                   chain_rpc_cb cb, struct kc_err *err)
{
    void *data = call->data;

    if (rpc->closing) {
        json_object_put(params);
        return kc_err_set(err, KC_ECANCELED, "rpc %s: client closing", method);
    }
    memset(call, 0, sizeof(*call));
    call->data = data;
    call->method = method;
    call->params = params ? params : json_object_new_array();
    call->cb = cb;
    call->rpc = rpc;
    call->id = rpc->next_id++;
    *rpc->queue_tail = call;
    rpc->queue_tail = &call->next;
    rpc->nqueued++;
    rpc->stats.calls++;
    if (strcmp(method, "eth_sendRawTransaction") == 0)
        rpc->stats.sends++;
    if (rpc->nqueued >= rpc->max_batch)
        rpc_schedule(rpc, 0);
    else
        rpc_schedule(rpc, CHAIN_RPC_COALESCE_MS);
    return 0;
}

void chain_rpc_free(struct chain_rpc *rpc)
{
    if (!rpc || rpc->closing)
        return;
    rpc->closing = true;
    while (rpc->queue) {
        struct chain_rpc_call *c = rpc->queue;
        rpc->queue = c->next;
        call_finish(
            rpc, c,
            kc_err_set(&c->err, KC_ECANCELED, "rpc %s: canceled", c->method));
    }
    rpc->queue_tail = &rpc->queue;
    rpc->nqueued = 0;
    uv_timer_stop(&rpc->flush);
    run_done(rpc);
    /* Live batches end through their HTTP callbacks (KC_ECANCELED); the
     * last one closes the timer, which frees the client. */
    for (struct chain_rpc_batch *b = rpc->live; b; b = b->next)
        kc_http_cancel(rpc->http, &b->req);
    if (!rpc->live)
        uv_close((uv_handle_t *)&rpc->flush, on_flush_closed);
}

/* ---- helpers -------------------------------------------------------- */

int chain_rpc_result_u64(const struct chain_rpc_call *call, uint64_t *out,
                         struct kc_err *err)
{
    const char *s = json_object_is_type(call->result, json_type_string)
                        ? json_object_get_string(call->result)
                        : NULL;

    if (!s)
        return kc_err_set(err, KC_EPARSE, "rpc %s: expected a quantity",
                          call->method);
    return chain_quantity_parse(s, out, call->method, err);
}

int chain_rpc_result_bytes(const struct chain_rpc_call *call, size_t max,
                           uint8_t **out, size_t *len, struct kc_err *err)
{
    const char *s = json_object_is_type(call->result, json_type_string)
                        ? json_object_get_string(call->result)
                        : NULL;

    if (!s || strncmp(s, "0x", 2) != 0)
        return kc_err_set(err, KC_EPARSE, "rpc %s: expected hex data",
                          call->method);
    return chain_hex_decode_alloc(s, max, out, len, call->method, err);
}

struct json_object *chain_rpc_hex(const void *data, size_t len)
{
    struct kc_buf b = { 0 };
    struct json_object *o;

    if (chain_hex_add(&b, data, len) < 0)
        KC_BUG("hex of %zu bytes", len);
    o = json_object_new_string_len(b.data, (int)b.len);
    kc_buf_release(&b);
    return o;
}

struct json_object *chain_rpc_quantity(uint64_t v)
{
    char q[19];

    chain_quantity_format(v, q);
    return json_object_new_string(q);
}

struct json_object *chain_rpc_address(const uint8_t addr[20])
{
    char a[43];

    chain_hex_encode(addr, 20, true, a, sizeof(a));
    return json_object_new_string(a);
}

struct json_object *chain_rpc_call_params(const uint8_t *from,
                                          const uint8_t to[20],
                                          const void *data, size_t len,
                                          const char *block)
{
    struct json_object *p = json_object_new_array();
    struct json_object *o = json_object_new_object();

    if (from)
        json_object_object_add(o, "from", chain_rpc_address(from));
    json_object_object_add(o, "to", chain_rpc_address(to));
    json_object_object_add(o, "data", chain_rpc_hex(data, len));
    json_object_array_add(p, o);
    json_object_array_add(p, json_object_new_string(block ? block : "latest"));
    return p;
}
