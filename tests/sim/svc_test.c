/* tests/sim/svc_test.c: the "test" service of kmsctl-sim, to exercise the
 * HTTP runtime and the framework itself.
 *
 *   *      /test/echo              {"method","path","base_url","headers":{},
 *                                   "body","body_len","sha256","q"}
 *   GET    /test/delay/{ms}        answers after MS ms
 *   *      /test/status/{code}     answers CODE; ?retry_after=V sends V as
 *                                  Retry-After; ?retry_after_date=S sends an
 *                                  HTTP-date S seconds ahead
 *   *      /test/drop              closes the connection, no answer
 *   GET    /test/slow              ?bytes=N&chunk=K&interval_ms=I
 *   *      /test/count/{key}       counts hits per key: the first
 *                                  ?fail_first=K answer ?status=S (503),
 *                                  with ?retry_after=V; then 200
 *                                  {"key","hits"}
 *   PUT|POST /test/upload          {"len","sha256"} of the body
 *   GET    /test/download          ?bytes=N&seed=S: N seeded bytes, header
 *                                  X-Content-Sha256
 *   POST   /test/objects           {"name","labels"} → inventory test/thing
 *   GET|PATCH|DELETE /test/objects/{name}
 *   POST   /test/ops               {"name"}: an operation PENDING → RUNNING →
 *                                  DONE after seeded delays (50-150 ms each)
 *   GET    /test/ops/{name}        {"name","status"}
 *   POST   /test/listen            {"cert_pem","key_pem"}: one more HTTPS
 *                                  listener serving only this service
 *                                  (as the KMS emulator does) → {"id","port"}
 *   DELETE /test/listen/{id}       stops it
 */
#include "tests/sim/sim.h"

#include <time.h>

#include <openssl/evp.h>

struct test_state {
    struct json_object *counts; /* key → hits */
};

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";

    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static long query_long(struct sim_req *req, const char *key, long def, long lo,
                       long hi)
{
    const char *s = sim_req_query(req, key);
    char *end = NULL;
    long v;

    if (!s || !*s)
        return def;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return def;
    return v;
}

static int test_init(struct sim *sim, void **state)
{
    struct test_state *st = kc_xcalloc(1, sizeof(*st));

    (void)sim;
    st->counts = json_object_new_object();
    *state = st;
    return 0;
}

static void test_fini(struct sim *sim, void *state)
{
    struct test_state *st = state;

    (void)sim;
    if (!st)
        return;
    json_object_put(st->counts);
    free(st);
}

static void h_echo(struct sim *sim, struct sim_req *req)
{
    struct json_object *o = json_object_new_object(),
                       *h = json_object_new_object();
    size_t len = 0;
    const char *body = sim_req_body(req, &len);
    char hex[65];
    static const char *const names[] = { "Authorization", "Content-Type",
                                         "User-Agent",    "X-Test",
                                         "Host",          "Cookie" };

    (void)sim;
    for (size_t i = 0; i < KC_ARRAY_SIZE(names); i++) {
        const char *v = sim_req_header(req, names[i]);

        if (v)
            json_object_object_add(h, names[i], json_object_new_string(v));
    }
    sha256_hex(body, len, hex);
    json_object_object_add(o, "method",
                           json_object_new_string(sim_req_method(req)));
    json_object_object_add(o, "path",
                           json_object_new_string(sim_req_path(req)));
    json_object_object_add(o, "base_url",
                           json_object_new_string(sim_req_base_url(req)));
    json_object_object_add(o, "headers", h);
    json_object_object_add(o, "body",
                           json_object_new_string_len(body, (int)len));
    json_object_object_add(o, "body_len", json_object_new_int64((int64_t)len));
    json_object_object_add(o, "sha256", json_object_new_string(hex));
    {
        const char *q = sim_req_query(req, "q");

        if (q)
            json_object_object_add(o, "q", json_object_new_string(q));
    }
    sim_resp_json(req, 200, o);
}

static void h_delay(struct sim *sim, struct sim_req *req)
{
    const char *ms = sim_req_param(req, "ms");
    char *end = NULL;
    long v = strtol(ms, &end, 10);
    struct json_object *o;

    (void)sim;
    if (*end || v < 0 || v > 600000) {
        sim_resp_error(req, 400, "bad delay '%s'", ms);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "delayed_ms", json_object_new_int64(v));
    sim_resp_json(req, 200, o);
    sim_resp_delay(req, (uint32_t)v);
}

static void set_retry_after(struct sim_req *req)
{
    const char *ra = sim_req_query(req, "retry_after");
    long date = query_long(req, "retry_after_date", -1, 0, 86400);

    if (ra) {
        sim_resp_header(req, "Retry-After", ra);
    } else if (date >= 0) {
        char buf[64];
        time_t t = time(NULL) + date;
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        sim_resp_header(req, "Retry-After", buf);
    }
}

static void h_status(struct sim *sim, struct sim_req *req)
{
    const char *c = sim_req_param(req, "code");
    char *end = NULL;
    long v = strtol(c, &end, 10);

    (void)sim;
    if (*end || v < 200 || v > 599) {
        sim_resp_error(req, 400, "bad status '%s'", c);
        return;
    }
    sim_resp_error(req, (int)v, "status %ld as asked", v);
    set_retry_after(req);
}

static void h_drop(struct sim *sim, struct sim_req *req)
{
    (void)sim;
    sim_resp_drop(req);
}

static void fill_bytes(char *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;

    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            s += 0x9e3779b97f4a7c15ull;
        }
        p[i] = (char)((s * 0xbf58476d1ce4e5b9ull) >> (8 * (i % 8)));
    }
}

static void h_slow(struct sim *sim, struct sim_req *req)
{
    long bytes = query_long(req, "bytes", 1024, 1, 64L << 20);
    long chunk = query_long(req, "chunk", 128, 1, 1L << 20);
    long interval = query_long(req, "interval_ms", 50, 0, 60000);
    char *p = kc_xmalloc((size_t)bytes);

    (void)sim;
    fill_bytes(p, (size_t)bytes, 7);
    sim_resp_body(req, 200, "application/octet-stream", p, (size_t)bytes);
    sim_resp_slow(req, (size_t)chunk, (uint32_t)interval);
    free(p);
}

static void h_count(struct sim *sim, struct sim_req *req)
{
    struct test_state *st = sim_req_state(req);
    const char *key = sim_req_param(req, "key");
    struct json_object *v = NULL, *o;
    long fail_first = query_long(req, "fail_first", 0, 0, 1000000);
    long status = query_long(req, "status", 503, 200, 599);
    int64_t hits = 1;

    (void)sim;
    if (json_object_object_get_ex(st->counts, key, &v))
        hits = json_object_get_int64(v) + 1;
    json_object_object_add(st->counts, key, json_object_new_int64(hits));
    if (hits <= fail_first) {
        sim_resp_error(req, (int)status, "failing hit %lld of %ld",
                       (long long)hits, fail_first);
        set_retry_after(req);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "key", json_object_new_string(key));
    json_object_object_add(o, "hits", json_object_new_int64(hits));
    sim_resp_json(req, 200, o);
}

static void h_upload(struct sim *sim, struct sim_req *req)
{
    size_t len = 0;
    const char *body = sim_req_body(req, &len);
    struct json_object *o = json_object_new_object();
    char hex[65];

    (void)sim;
    sha256_hex(body, len, hex);
    json_object_object_add(o, "len", json_object_new_int64((int64_t)len));
    json_object_object_add(o, "sha256", json_object_new_string(hex));
    sim_resp_json(req, 200, o);
}

static void h_download(struct sim *sim, struct sim_req *req)
{
    long bytes = query_long(req, "bytes", 1024, 0, 256L << 20);
    long seed = query_long(req, "seed", 1, 0, 1L << 30);
    char *p = kc_xmalloc((size_t)bytes + 1);
    char hex[65];

    (void)sim;
    fill_bytes(p, (size_t)bytes, (uint64_t)seed);
    sha256_hex(p, (size_t)bytes, hex);
    sim_resp_body(req, 200, "application/octet-stream", p, (size_t)bytes);
    sim_resp_header(req, "X-Content-Sha256", hex);
    free(p);
}

/* Adds the test object of KIND named by the request's JSON body ({"name"}),
 * the body in *J when J is not NULL. NULL once the request was answered
 * (400: no name; 409: the name is taken). */
static struct sim_object *add_named(struct sim *sim, struct sim_req *req,
                                    const char *kind, struct json_object **j)
{
    struct json_object *body = sim_req_json(req), *name;
    struct sim_object *o;

    if (j)
        *j = body;
    if (!body)
        return NULL;
    if (!json_object_object_get_ex(body, "name", &name) ||
        !json_object_is_type(name, json_type_string)) {
        sim_resp_error(req, 400, "name: expected a string");
        return NULL;
    }
    o = sim_obj_add(sim, "test", kind, json_object_get_string(name), NULL);
    if (!o)
        sim_resp_error(req, 409, "%s '%s' already exists", kind,
                       json_object_get_string(name));
    return o;
}

static void h_obj_create(struct sim *sim, struct sim_req *req)
{
    struct json_object *j, *labels;
    struct sim_object *o = add_named(sim, req, "thing", &j);

    if (!o)
        return;
    if (json_object_object_get_ex(j, "labels", &labels) &&
        json_object_is_type(labels, json_type_object)) {
        json_object_put(o->labels);
        o->labels = json_object_get(labels);
    }
    sim_resp_json(req, 200, sim_obj_json(o));
}

static void h_obj(struct sim *sim, struct sim_req *req)
{
    const char *name = sim_req_param(req, "name");
    struct sim_object *o = sim_obj_find(sim, "test", "thing", name);
    const char *m = sim_req_method(req);

    if (strcmp(m, "GET") != 0)
        sim_req_mark_mutating(req);
    if (!o) {
        sim_resp_error(req, 404, "thing '%s' not found", name);
        return;
    }
    if (strcmp(m, "DELETE") == 0) {
        sim_obj_remove(sim, o);
        sim_resp_json(req, 200, json_object_new_object());
    } else if (strcmp(m, "PATCH") == 0) {
        struct json_object *j = sim_req_json(req), *labels;

        if (!j)
            return;
        if (json_object_object_get_ex(j, "labels", &labels) &&
            json_object_is_type(labels, json_type_object)) {
            json_object_object_foreach (labels, k, v)
                json_object_object_add(o->labels, k, json_object_get(v));
        }
        sim_resp_json(req, 200, sim_obj_json(o));
    } else {
        sim_resp_json(req, 200, sim_obj_json(o));
    }
}

struct op_step {
    char *name;
    const char *to;
};

static void op_step_free(void *arg)
{
    struct op_step *s = arg;

    free(s->name);
    free(s);
}

static void op_advance(struct sim *sim, void *arg)
{
    struct op_step *s = arg;
    struct sim_object *o = sim_obj_find(sim, "test", "op", s->name);

    if (!o)
        return;
    json_object_object_add(o->attrs, "status", json_object_new_string(s->to));
    if (strcmp(s->to, "RUNNING") == 0) {
        struct op_step *n = kc_xcalloc(1, sizeof(*n));

        n->name = kc_xstrdup(s->name);
        n->to = "DONE";
        sim_timer_add(sim, (uint32_t)sim_rand_range(sim, 50, 150), op_advance,
                      n, op_step_free);
    }
}

static void h_op_create(struct sim *sim, struct sim_req *req)
{
    struct sim_object *o = add_named(sim, req, "op", NULL);
    struct op_step *s;

    if (!o)
        return;
    json_object_object_add(o->attrs, "status",
                           json_object_new_string("PENDING"));
    s = kc_xcalloc(1, sizeof(*s));
    s->name = kc_xstrdup(o->name);
    s->to = "RUNNING";
    sim_timer_add(sim, (uint32_t)sim_rand_range(sim, 50, 150), op_advance, s,
                  op_step_free);
    sim_resp_json(req, 200, sim_obj_json(o));
}

static void h_op_get(struct sim *sim, struct sim_req *req)
{
    struct sim_object *o =
        sim_obj_find(sim, "test", "op", sim_req_param(req, "name"));
    struct json_object *r, *st = NULL;

    if (!o) {
        sim_resp_error(req, 404, "no such op");
        return;
    }
    r = json_object_new_object();
    json_object_object_add(r, "name", json_object_new_string(o->name));
    json_object_object_get_ex(o->attrs, "status", &st);
    json_object_object_add(r, "status", json_object_get(st));
    sim_resp_json(req, 200, r);
}

static void h_listen(struct sim *sim, struct sim_req *req)
{
    struct json_object *j = sim_req_json(req), *cert, *key, *o;
    struct sim_listen_opts lo = { .host = "127.0.0.1", .service = "test" };
    struct kc_err err = { 0 };
    uint16_t port = 0;
    int id;

    if (!j)
        return;
    if (!json_object_object_get_ex(j, "cert_pem", &cert) ||
        !json_object_object_get_ex(j, "key_pem", &key)) {
        sim_resp_error(req, 400, "cert_pem and key_pem are required");
        return;
    }
    lo.cert_pem = json_object_get_string(cert);
    lo.key_pem = json_object_get_string(key);
    id = sim_listen(sim, &lo, &port, &err);
    if (id < 0) {
        sim_resp_error(req, 500, "%s", err.msg);
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int(id));
    json_object_object_add(o, "port", json_object_new_int(port));
    sim_resp_json(req, 200, o);
}

static void h_unlisten(struct sim *sim, struct sim_req *req)
{
    const char *s = sim_req_param(req, "id");
    char *end = NULL;
    long id = strtol(s, &end, 10);

    if (*end || id <= 0 || id > 1000) {
        sim_resp_error(req, 400, "bad listener id '%s'", s);
        return;
    }
    sim_unlisten(sim, (int)id);
    sim_resp_json(req, 200, json_object_new_object());
}

static const struct sim_route test_routes[] = {
    { "*", "/test/echo", h_echo, false },
    { "GET", "/test/delay/{ms}", h_delay, false },
    { "*", "/test/status/{code}", h_status, false },
    { "*", "/test/drop", h_drop, false },
    { "GET", "/test/slow", h_slow, false },
    { "*", "/test/count/{key}", h_count, false },
    { "PUT", "/test/upload", h_upload, false },
    { "POST", "/test/upload", h_upload, false },
    { "GET", "/test/download", h_download, false },
    { "POST", "/test/objects", h_obj_create, true },
    { "*", "/test/objects/{name}", h_obj, false },
    { "POST", "/test/ops", h_op_create, true },
    { "GET", "/test/ops/{name}", h_op_get, false },
    { "POST", "/test/listen", h_listen, false },
    { "DELETE", "/test/listen/{id}", h_unlisten, false },
    { NULL, NULL, NULL, false },
};

const struct sim_service sim_svc_test = {
    .name = "test",
    .routes = test_routes,
    .init = test_init,
    .fini = test_fini,
};
