/* tests/sim/sim.c: the kmsctl-sim framework: listeners, routing, admin API,
 * inventory, faults, timers. See sim.h for the threading model. */
#include "tests/sim/sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"

#define SIM_MAX_LISTENERS 64
#define SIM_MAX_PARAMS    16
#define SIM_MAX_BODY      (256u << 20)

struct sim_slot {
    const struct sim_service *svc;
    void *state;
};

struct sim_fault {
    char *match;
    regex_t re;
    uint32_t lat_min, lat_max;
    int status;
    char *retry_after;
    double probability;
    bool drop, drop_after;
    int64_t count; /* < 0: unlimited */
    uint64_t hits;
};

struct sim_count {
    char *key;
    uint64_t n;
};

struct sim_timer {
    uint64_t due, seq;
    sim_timer_fn fn;
    void *arg;
    void (*free_arg)(void *);
    struct sim_timer *next;
};

struct sim_listener {
    struct sim *sim;
    struct MHD_Daemon *daemon;
    char *service; /* NULL: everything */
    char *cert, *key;
    uint16_t port;
    bool used, stopping;
};

struct sim {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t timer_thread;
    bool timer_started, stop;
    uint64_t seed, rng_svc, rng_fault;
    struct sim_slot *slots;
    size_t nslots;
    struct sim_object *obj_head, *obj_tail;
    uint64_t obj_seq;
    struct sim_fault *faults;
    size_t nfaults;
    uint64_t total, mutating, faulted, req_seq;
    struct sim_count *counts;
    size_t ncounts, capcounts;
    struct sim_timer *timers;
    uint64_t timer_seq;
    struct sim_listener listeners[SIM_MAX_LISTENERS];
    struct MHD_Daemon *to_stop[SIM_MAX_LISTENERS];
    size_t nto_stop;
    size_t max_body;
    char *host;
    uint16_t port;
    char *cert_pem, *key_pem;
};

struct sim_hdr {
    char *name, *value;
};

struct sim_req {
    struct sim *sim;
    struct sim_listener *l;
    struct MHD_Connection *conn;
    char *method, *path;
    struct kc_buf body;
    bool too_big, started;
    char *pnames[SIM_MAX_PARAMS], *pvals[SIM_MAX_PARAMS];
    size_t nparams;
    struct json_object *json;
    char **form_k, **form_v;
    size_t nform;
    bool form_parsed;
    char **arena;
    size_t narena, caparena;
    struct sim_slot *slot;
    char *route_key;
    bool mutating;
    char id[32];
    uint64_t start_ms;
    /* response */
    bool has_resp;
    int status;
    char *ctype;
    struct kc_buf resp;
    struct sim_hdr *hdrs;
    size_t nhdrs, caphdrs;
    uint32_t delay_ms;
    bool drop, drop_after;
    size_t slow_chunk;
    uint32_t slow_interval;
    char note[96];
};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sim_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void msleep(uint32_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

uint64_t sim_rand(struct sim *sim)
{
    return splitmix(&sim->rng_svc);
}

uint64_t sim_rand_range(struct sim *sim, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + sim_rand(sim) % (hi - lo + 1);
}

uint64_t sim_seed(const struct sim *sim)
{
    return sim->seed;
}

bool sim_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

/* ---- small helpers ---- */

static char *arena_keep(struct sim_req *req, char *s)
{
    kc_xgrow(&req->arena, &req->caparena, req->narena + 1, sizeof(*req->arena));
    req->arena[req->narena++] = s;
    return s;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes N bytes of S; PLUS turns '+' into ' '. */
static char *url_decode(const char *s, size_t n, bool plus)
{
    char *out = kc_xmalloc(n + 1);
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            out[j++] = (char)(hexval((unsigned char)s[i + 1]) * 16 +
                              hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (plus && s[i] == '+') {
            out[j++] = ' ';
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* MHD must leave the path and query as sent: routes see the raw path (an
 * encoded '/' inside a segment stays inside it) and we decode ourselves. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* ---- request access ---- */

const char *sim_req_method(const struct sim_req *req)
{
    return req->method;
}

const char *sim_req_path(const struct sim_req *req)
{
    return req->path;
}

const char *sim_req_param(const struct sim_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->pnames[i], name) == 0)
            return req->pvals[i];
    return NULL;
}

const char *sim_req_query(const struct sim_req *req, const char *key)
{
    const char *raw =
        MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);

    if (!raw)
        return NULL;
    return arena_keep((struct sim_req *)req,
                      url_decode(raw, strlen(raw), true));
}

const char *sim_req_header(const struct sim_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *sim_req_body(const struct sim_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return kc_buf_str(&req->body);
}

struct json_object *sim_req_json(struct sim_req *req)
{
    struct kc_err err = { 0 };

    if (req->json)
        return req->json;
    if (kc_json_parse(kc_buf_str(&req->body), req->body.len, "request body",
                      &req->json, &err) < 0) {
        req->json = NULL;
        sim_resp_error(req, 400, "%s", err.msg);
        return NULL;
    }
    return req->json;
}

const char *sim_req_form(struct sim_req *req, const char *key)
{
    if (!req->form_parsed) {
        const char *s = kc_buf_str(&req->body);
        size_t len = req->body.len, i = 0, cap = 0, capv = 0;

        req->form_parsed = true;
        while (i < len) {
            size_t end = i, eq;

            while (end < len && s[end] != '&')
                end++;
            eq = i;
            while (eq < end && s[eq] != '=')
                eq++;
            if (end > i) {
                kc_xgrow(&req->form_k, &cap, req->nform + 1, sizeof(char *));
                kc_xgrow(&req->form_v, &capv, req->nform + 1, sizeof(char *));
                req->form_k[req->nform] = url_decode(s + i, eq - i, true);
                req->form_v[req->nform] =
                    eq < end ? url_decode(s + eq + 1, end - eq - 1, true)
                             : kc_xstrdup("");
                req->nform++;
            }
            i = end + 1;
        }
    }
    for (size_t i = 0; i < req->nform; i++)
        if (strcmp(req->form_k[i], key) == 0)
            return req->form_v[i];
    return NULL;
}

const char *sim_req_base_url(const struct sim_req *req)
{
    const char *host = sim_req_header(req, "Host");
    char *u;

    if (host && *host && !strpbrk(host, "/?#@ \t"))
        u = kc_xasprintf("%s://%s", req->l->cert ? "https" : "http", host);
    else
        u = kc_xasprintf("%s://127.0.0.1:%u", req->l->cert ? "https" : "http",
                         (unsigned)req->l->port);
    return arena_keep((struct sim_req *)req, u);
}

const char *sim_req_id(const struct sim_req *req)
{
    return req->id;
}

const char *sim_req_service(const struct sim_req *req)
{
    return req->slot ? req->slot->svc->name : NULL;
}

void *sim_req_state(const struct sim_req *req)
{
    return req->slot ? req->slot->state : NULL;
}

void sim_req_mark_mutating(struct sim_req *req)
{
    req->mutating = true;
}

void sim_req_set_route(struct sim_req *req, const char *key)
{
    free(req->route_key);
    req->route_key = kc_xstrdup(key);
}

/* ---- responses ---- */

void sim_resp_status(struct sim_req *req, int status)
{
    req->status = status;
    req->has_resp = true;
}

void sim_resp_header(struct sim_req *req, const char *name, const char *value)
{
    kc_xgrow(&req->hdrs, &req->caphdrs, req->nhdrs + 1, sizeof(*req->hdrs));
    req->hdrs[req->nhdrs].name = kc_xstrdup(name);
    req->hdrs[req->nhdrs].value = kc_xstrdup(value);
    req->nhdrs++;
}

void sim_resp_body(struct sim_req *req, int status, const char *content_type,
                   const void *data, size_t len)
{
    kc_buf_reset(&req->resp);
    if (len)
        kc_buf_add(&req->resp, data, len);
    free(req->ctype);
    req->ctype = content_type ? kc_xstrdup(content_type) : NULL;
    sim_resp_status(req, status);
}

void sim_resp_json(struct sim_req *req, int status, struct json_object *body)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

    sim_resp_body(req, status, "application/json", s, len);
    json_object_put(body);
}

void sim_resp_xml(struct sim_req *req, int status, const char *xml)
{
    sim_resp_body(req, status, "text/xml;charset=UTF-8", xml, strlen(xml));
}

void sim_resp_error(struct sim_req *req, int status, const char *fmt, ...)
{
    struct json_object *o = json_object_new_object(),
                       *e = json_object_new_object();
    struct kc_buf msg = { 0 };
    va_list ap;

    va_start(ap, fmt);
    kc_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    json_object_object_add(e, "code", json_object_new_int(status));
    json_object_object_add(e, "message",
                           json_object_new_string(kc_buf_str(&msg)));
    json_object_object_add(o, "error", e);
    kc_buf_release(&msg);
    sim_resp_json(req, status, o);
}

void sim_resp_delay(struct sim_req *req, uint32_t ms)
{
    req->delay_ms = ms;
}

void sim_resp_drop(struct sim_req *req)
{
    req->drop = true;
    req->has_resp = true;
}

void sim_resp_slow(struct sim_req *req, size_t chunk, uint32_t interval_ms)
{
    req->slow_chunk = chunk ? chunk : 1;
    req->slow_interval = interval_ms;
}

/* ---- inventory ---- */

static char *gen_id(struct sim *sim)
{
    /* 19 decimal digits, first non-zero: GCP-like numeric ids. */
    uint64_t v =
        1000000000000000000ull + sim_rand(sim) % 8999999999999999999ull;

    return kc_xasprintf("%llu", (unsigned long long)v);
}

struct sim_object *sim_obj_add(struct sim *sim, const char *service,
                               const char *kind, const char *name,
                               const char *id)
{
    struct sim_object *o;

    if (sim_obj_find(sim, service, kind, name))
        return NULL;
    o = kc_xcalloc(1, sizeof(*o));
    o->service = kc_xstrdup(service);
    o->kind = kc_xstrdup(kind);
    o->name = kc_xstrdup(name);
    o->id = id ? kc_xstrdup(id) : gen_id(sim);
    o->labels = json_object_new_object();
    o->attrs = json_object_new_object();
    o->seq = ++sim->obj_seq;
    o->prev = sim->obj_tail;
    if (sim->obj_tail)
        sim->obj_tail->next = o;
    else
        sim->obj_head = o;
    sim->obj_tail = o;
    return o;
}

/* The object of SERVICE and KIND whose name (BY_ID: id) is KEY. */
static struct sim_object *obj_find(struct sim *sim, const char *service,
                                   const char *kind, const char *key,
                                   bool by_id)
{
    for (struct sim_object *o = sim->obj_head; o; o = o->next)
        if (strcmp(o->service, service) == 0 && strcmp(o->kind, kind) == 0 &&
            strcmp(by_id ? o->id : o->name, key) == 0)
            return o;
    return NULL;
}

struct sim_object *sim_obj_find(struct sim *sim, const char *service,
                                const char *kind, const char *name)
{
    return obj_find(sim, service, kind, name, false);
}

struct sim_object *sim_obj_find_id(struct sim *sim, const char *service,
                                   const char *kind, const char *id)
{
    return obj_find(sim, service, kind, id, true);
}

struct sim_object *sim_obj_next(struct sim *sim, struct sim_object *prev,
                                const char *service, const char *kind)
{
    struct sim_object *o = prev ? prev->next : sim->obj_head;

    for (; o; o = o->next)
        if ((!service || strcmp(o->service, service) == 0) &&
            (!kind || strcmp(o->kind, kind) == 0))
            return o;
    return NULL;
}

void sim_obj_remove(struct sim *sim, struct sim_object *o)
{
    if (!o)
        return;
    if (o->prev)
        o->prev->next = o->next;
    else
        sim->obj_head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        sim->obj_tail = o->prev;
    free(o->service);
    free(o->kind);
    free(o->name);
    free(o->id);
    json_object_put(o->labels);
    json_object_put(o->attrs);
    free(o);
}

struct json_object *sim_obj_json(const struct sim_object *o)
{
    struct json_object *j = json_object_new_object();

    json_object_object_add(j, "service", json_object_new_string(o->service));
    json_object_object_add(j, "kind", json_object_new_string(o->kind));
    json_object_object_add(j, "name", json_object_new_string(o->name));
    json_object_object_add(j, "id", json_object_new_string(o->id));
    json_object_object_add(j, "labels", json_object_get(o->labels));
    json_object_object_add(j, "attrs", json_object_get(o->attrs));
    return j;
}

/* ---- timers ---- */

void sim_timer_add(struct sim *sim, uint32_t delay_ms, sim_timer_fn fn,
                   void *arg, void (*free_arg)(void *))
{
    struct sim_timer *t = kc_xcalloc(1, sizeof(*t)), **pp;

    t->due = sim_now_ms() + delay_ms;
    t->seq = ++sim->timer_seq;
    t->fn = fn;
    t->arg = arg;
    t->free_arg = free_arg;
    pp = &sim->timers;
    while (*pp && (*pp)->due <= t->due)
        pp = &(*pp)->next;
    t->next = *pp;
    *pp = t;
    pthread_cond_signal(&sim->cond);
}

/* Lock held. */
static void run_due_timers(struct sim *sim)
{
    uint64_t now = sim_now_ms();

    while (sim->timers && sim->timers->due <= now) {
        struct sim_timer *t = sim->timers;

        sim->timers = t->next;
        t->fn(sim, t->arg);
        if (t->free_arg)
            t->free_arg(t->arg);
        free(t);
    }
}

static void drop_timers(struct sim *sim)
{
    while (sim->timers) {
        struct sim_timer *t = sim->timers;

        sim->timers = t->next;
        if (t->free_arg)
            t->free_arg(t->arg);
        free(t);
    }
}

static void stop_pending_daemons(struct sim *sim)
{
    struct MHD_Daemon *d[SIM_MAX_LISTENERS];
    size_t n;

    n = sim->nto_stop;
    memcpy(d, sim->to_stop, n * sizeof(*d));
    sim->nto_stop = 0;
    if (n == 0)
        return;
    /* MHD_stop_daemon joins the daemon's threads, which may be waiting for
     * the sim lock: stop them with the lock released. */
    pthread_mutex_unlock(&sim->lock);
    for (size_t i = 0; i < n; i++)
        MHD_stop_daemon(d[i]);
    pthread_mutex_lock(&sim->lock);
}

static void *timer_main(void *arg)
{
    struct sim *sim = arg;

    pthread_mutex_lock(&sim->lock);
    while (!sim->stop) {
        run_due_timers(sim);
        stop_pending_daemons(sim);
        if (sim->stop)
            break;
        if (sim->timers) {
            uint64_t due = sim->timers->due, now = sim_now_ms();
            struct timespec ts;

            if (due <= now)
                continue;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t)((due - now) / 1000);
            ts.tv_nsec += (long)((due - now) % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&sim->cond, &sim->lock, &ts);
        } else {
            pthread_cond_wait(&sim->cond, &sim->lock);
        }
    }
    pthread_mutex_unlock(&sim->lock);
    return NULL;
}

/* ---- services ---- */

static struct sim_slot *slot_find(struct sim *sim, const char *name)
{
    for (size_t i = 0; i < sim->nslots; i++)
        if (strcmp(sim->slots[i].svc->name, name) == 0)
            return &sim->slots[i];
    return NULL;
}

void *sim_service_state(struct sim *sim, const char *service)
{
    struct sim_slot *s = slot_find(sim, service);

    return s ? s->state : NULL;
}

bool sim_service_enabled(const struct sim *sim, const char *service)
{
    return slot_find((struct sim *)sim, service) != NULL;
}

/* ---- faults ---- */

static void faults_clear(struct sim *sim)
{
    for (size_t i = 0; i < sim->nfaults; i++) {
        regfree(&sim->faults[i].re);
        free(sim->faults[i].match);
        free(sim->faults[i].retry_after);
    }
    free(sim->faults);
    sim->faults = NULL;
    sim->nfaults = 0;
}

static int faults_parse(struct json_object *list, struct sim_fault **out,
                        size_t *nout, struct kc_err *err)
{
    size_t n;
    struct sim_fault *f;

    if (!json_object_is_type(list, json_type_array))
        return kc_err_set(err, KC_EINVAL, "faults: expected a JSON list");
    n = json_object_array_length(list);
    f = kc_xcalloc(n ? n : 1, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(list, i), *v;
        const char *m;
        int rc;

        f[i].probability = 1.0;
        f[i].count = -1;
        if (!json_object_is_type(r, json_type_object) ||
            !json_object_object_get_ex(r, "match", &v) ||
            !json_object_is_type(v, json_type_string)) {
            *nout = i;
            *out = f;
            return kc_err_set(
                err, KC_EINVAL,
                "faults[%zu]: expected an object with a string 'match'", i);
        }
        m = json_object_get_string(v);
        rc = regcomp(&f[i].re, m, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];

            regerror(rc, &f[i].re, msg, sizeof(msg));
            *nout = i;
            *out = f;
            return kc_err_set(err, KC_EINVAL, "faults[%zu].match: %s", i, msg);
        }
        f[i].match = kc_xstrdup(m);
        if (json_object_object_get_ex(r, "latency_ms", &v)) {
            if (json_object_is_type(v, json_type_array) &&
                json_object_array_length(v) == 2) {
                f[i].lat_min = (uint32_t)json_object_get_int(
                    json_object_array_get_idx(v, 0));
                f[i].lat_max = (uint32_t)json_object_get_int(
                    json_object_array_get_idx(v, 1));
            } else if (json_object_is_type(v, json_type_int)) {
                f[i].lat_min = f[i].lat_max = (uint32_t)json_object_get_int(v);
            } else {
                *nout = i + 1;
                *out = f;
                return kc_err_set(err, KC_EINVAL,
                                  "faults[%zu].latency_ms: expected [min,max]",
                                  i);
            }
            if (f[i].lat_max < f[i].lat_min)
                f[i].lat_max = f[i].lat_min;
        }
        if (json_object_object_get_ex(r, "status", &v))
            f[i].status = json_object_get_int(v);
        if (json_object_object_get_ex(r, "retry_after", &v))
            f[i].retry_after = kc_xstrdup(json_object_get_string(v));
        if (json_object_object_get_ex(r, "probability", &v))
            f[i].probability = json_object_get_double(v);
        if (json_object_object_get_ex(r, "drop", &v))
            f[i].drop = json_object_get_boolean(v);
        if (json_object_object_get_ex(r, "drop_after", &v))
            f[i].drop_after = json_object_get_boolean(v);
        if (json_object_object_get_ex(r, "count", &v))
            f[i].count = json_object_get_int64(v);
        if (f[i].status && (f[i].status < 100 || f[i].status > 599)) {
            *nout = i + 1;
            *out = f;
            return kc_err_set(err, KC_EINVAL,
                              "faults[%zu].status: %d is not an HTTP status", i,
                              f[i].status);
        }
    }
    *out = f;
    *nout = n;
    return 0;
}

static struct json_object *faults_json(struct sim *sim)
{
    struct json_object *a = json_object_new_array();

    for (size_t i = 0; i < sim->nfaults; i++) {
        struct sim_fault *f = &sim->faults[i];
        struct json_object *o = json_object_new_object(),
                           *lat = json_object_new_array();

        json_object_object_add(o, "match", json_object_new_string(f->match));
        json_object_array_add(lat, json_object_new_int64(f->lat_min));
        json_object_array_add(lat, json_object_new_int64(f->lat_max));
        json_object_object_add(o, "latency_ms", lat);
        json_object_object_add(o, "status", json_object_new_int(f->status));
        if (f->retry_after)
            json_object_object_add(o, "retry_after",
                                   json_object_new_string(f->retry_after));
        json_object_object_add(o, "probability",
                               json_object_new_double(f->probability));
        json_object_object_add(o, "drop", json_object_new_boolean(f->drop));
        json_object_object_add(o, "drop_after",
                               json_object_new_boolean(f->drop_after));
        if (f->count >= 0)
            json_object_object_add(o, "count", json_object_new_int64(f->count));
        json_object_object_add(o, "hits",
                               json_object_new_int64((int64_t)f->hits));
        json_object_array_add(a, o);
    }
    return a;
}

/* Lock held: the fault for this request, if any. */
static struct sim_fault *fault_pick(struct sim *sim, const char *method,
                                    const char *path)
{
    char *line = kc_xasprintf("%s %s", method, path);
    struct sim_fault *hit = NULL;

    for (size_t i = 0; i < sim->nfaults && !hit; i++) {
        struct sim_fault *f = &sim->faults[i];
        double roll;

        if (f->count == 0 || regexec(&f->re, line, 0, NULL, 0) != 0)
            continue;
        /* 53 random bits → [0, 1). One roll per matching rule. */
        roll = (double)(splitmix(&sim->rng_fault) >> 11) / 9007199254740992.0;
        if (roll >= f->probability)
            continue;
        hit = f;
        f->hits++;
        if (f->count > 0)
            f->count--;
    }
    free(line);
    return hit;
}

/* ---- counters ---- */

static void count_route(struct sim *sim, const char *key)
{
    for (size_t i = 0; i < sim->ncounts; i++)
        if (strcmp(sim->counts[i].key, key) == 0) {
            sim->counts[i].n++;
            return;
        }
    kc_xgrow(&sim->counts, &sim->capcounts, sim->ncounts + 1,
             sizeof(*sim->counts));
    sim->counts[sim->ncounts].key = kc_xstrdup(key);
    sim->counts[sim->ncounts].n = 1;
    sim->ncounts++;
}

static void counts_clear(struct sim *sim)
{
    for (size_t i = 0; i < sim->ncounts; i++)
        free(sim->counts[i].key);
    free(sim->counts);
    sim->counts = NULL;
    sim->ncounts = sim->capcounts = 0;
    sim->total = sim->mutating = sim->faulted = 0;
}

/* ---- reset ---- */

static void services_fini(struct sim *sim)
{
    for (size_t i = 0; i < sim->nslots; i++) {
        if (sim->slots[i].svc->fini)
            sim->slots[i].svc->fini(sim, sim->slots[i].state);
        sim->slots[i].state = NULL;
    }
}

static int services_init(struct sim *sim, struct kc_err *err)
{
    for (size_t i = 0; i < sim->nslots; i++) {
        if (!sim->slots[i].svc->init)
            continue;
        if (sim->slots[i].svc->init(sim, &sim->slots[i].state) < 0)
            return kc_err_set(err, KC_EINVAL, "service '%s' failed to start",
                              sim->slots[i].svc->name);
    }
    return 0;
}

static void reseed(struct sim *sim, uint64_t seed)
{
    sim->seed = seed;
    sim->rng_svc = seed;
    sim->rng_fault = seed ^ 0x5bd1e9955bd1e995ull;
}

/* Lock held. */
static int sim_reset_locked(struct sim *sim, uint64_t seed, struct kc_err *err)
{
    services_fini(sim);
    while (sim->obj_head)
        sim_obj_remove(sim, sim->obj_head);
    drop_timers(sim);
    faults_clear(sim);
    counts_clear(sim);
    sim->req_seq = 0;
    reseed(sim, seed);
    return services_init(sim, err);
}

/* ---- routing ---- */

static void req_clear_params(struct sim_req *req)
{
    for (size_t i = 0; i < req->nparams; i++) {
        free(req->pnames[i]);
        free(req->pvals[i]);
    }
    req->nparams = 0;
}

static bool route_match(const char *pattern, const char *path,
                        struct sim_req *req)
{
    const char *p = pattern, *s = path;

    req_clear_params(req);
    while (*p && *s) {
        const char *pe, *se;

        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        pe = strchr(p, '/');
        if (!pe)
            pe = p + strlen(p);
        se = strchr(s, '/');
        if (!se)
            se = s + strlen(s);
        if (*p == '{') {
            const char *close = memchr(p, '}', (size_t)(pe - p));
            bool rest;
            const char *suffix;
            size_t slen, vlen;

            if (!close || req->nparams >= SIM_MAX_PARAMS)
                return false;
            rest = close > p + 1 && close[-1] == '*';
            suffix = close + 1;
            slen = (size_t)(pe - suffix);
            if (rest) {
                se = s + strlen(s);
                if (*pe != '\0')
                    return false; /* "{x*}" only last */
            }
            vlen = (size_t)(se - s);
            if (vlen <= slen || memcmp(se - slen, suffix, slen) != 0)
                return false;
            vlen -= slen;
            req->pnames[req->nparams] =
                kc_xstrndup(p + 1, (size_t)(close - p - 1 - (rest ? 1 : 0)));
            req->pvals[req->nparams] = url_decode(s, vlen, false);
            req->nparams++;
        } else {
            if ((pe - p) != (se - s) || memcmp(p, s, (size_t)(pe - p)) != 0)
                return false;
        }
        p = pe;
        s = se;
    }
    return *p == '\0' && *s == '\0';
}

static const struct sim_route *route_find(struct sim *sim, struct sim_req *req,
                                          bool *method_mismatch)
{
    *method_mismatch = false;
    for (size_t i = 0; i < sim->nslots; i++) {
        struct sim_slot *slot = &sim->slots[i];

        if (req->l->service && strcmp(req->l->service, slot->svc->name) != 0)
            continue;
        for (const struct sim_route *r = slot->svc->routes; r && r->pattern;
             r++) {
            if (!route_match(r->pattern, req->path, req))
                continue;
            if (strcmp(r->method, "*") != 0 &&
                strcmp(r->method, req->method) != 0) {
                *method_mismatch = true;
                continue;
            }
            req->slot = slot;
            return r;
        }
    }
    req_clear_params(req);
    return NULL;
}

/* ---- admin API (lock held) ---- */

static void admin_inventory(struct sim *sim, struct sim_req *req)
{
    struct json_object *a = json_object_new_array();
    const char *svc = sim_req_query(req, "service"),
               *kind = sim_req_query(req, "kind");

    for (struct sim_object *o = sim_obj_next(sim, NULL, svc, kind); o;
         o = sim_obj_next(sim, o, svc, kind))
        json_object_array_add(a, sim_obj_json(o));
    sim_resp_json(req, 200, a);
}

static void admin_requests(struct sim *sim, struct sim_req *req)
{
    struct json_object *o = json_object_new_object(),
                       *by = json_object_new_object();

    json_object_object_add(o, "total",
                           json_object_new_int64((int64_t)sim->total));
    json_object_object_add(o, "mutating",
                           json_object_new_int64((int64_t)sim->mutating));
    json_object_object_add(o, "faulted",
                           json_object_new_int64((int64_t)sim->faulted));
    for (size_t i = 0; i < sim->ncounts; i++)
        json_object_object_add(
            by, sim->counts[i].key,
            json_object_new_int64((int64_t)sim->counts[i].n));
    json_object_object_add(o, "by_route", by);
    sim_resp_json(req, 200, o);
}

static void admin_reset(struct sim *sim, struct sim_req *req)
{
    uint64_t seed = sim->seed;
    struct kc_err err = { 0 };

    if (req->body.len) {
        struct json_object *j = sim_req_json(req), *v;

        if (!j)
            return;
        if (json_object_object_get_ex(j, "seed", &v))
            seed = (uint64_t)json_object_get_int64(v);
    }
    if (sim_reset_locked(sim, seed, &err) < 0) {
        sim_resp_error(req, 500, "%s", err.msg);
        return;
    }
    sim_resp_json(req, 200, json_object_new_object());
}

static void admin_faults(struct sim *sim, struct sim_req *req)
{
    struct kc_err err = { 0 };

    if (strcmp(req->method, "GET") == 0) {
        sim_resp_json(req, 200, faults_json(sim));
    } else if (strcmp(req->method, "DELETE") == 0) {
        faults_clear(sim);
        sim_resp_json(req, 200, json_object_new_array());
    } else if (strcmp(req->method, "POST") == 0) {
        struct json_object *j = sim_req_json(req);
        struct sim_fault *f = NULL;
        size_t n = 0;

        if (!j)
            return;
        if (faults_parse(j, &f, &n, &err) < 0) {
            for (size_t i = 0; i < n; i++) {
                regfree(&f[i].re);
                free(f[i].match);
                free(f[i].retry_after);
            }
            free(f);
            sim_resp_error(req, 400, "%s", err.msg);
            return;
        }
        faults_clear(sim);
        sim->faults = f;
        sim->nfaults = n;
        sim_resp_json(req, 200, faults_json(sim));
    } else {
        sim_resp_error(req, 405, "method not allowed");
    }
}

static void merge_into(struct json_object *dst, struct json_object *src)
{
    json_object_object_foreach (src, k, v) {
        if (!v)
            json_object_object_del(dst, k);
        else
            json_object_object_add(dst, k, json_object_get(v));
    }
}

static void admin_object(struct sim *sim, struct sim_req *req)
{
    const char *svc = sim_req_param(req, "service"),
               *kind = sim_req_param(req, "kind"),
               *name = sim_req_param(req, "name");
    struct sim_object *o = sim_obj_find(sim, svc, kind, name);
    struct sim_slot *slot = slot_find(sim, svc);
    struct kc_err err = { 0 };

    if (!o) {
        sim_resp_error(req, 404, "no object %s/%s/%s", svc, kind, name);
        return;
    }
    if (strcmp(req->method, "DELETE") == 0) {
        if (slot && slot->svc->delete_object)
            slot->svc->delete_object(sim, o);
        sim_obj_remove(sim, o);
        sim_resp_json(req, 200, json_object_new_object());
        return;
    }
    if (strcmp(req->method, "PATCH") == 0) {
        struct json_object *j = sim_req_json(req), *v;
        int rc = 0;

        if (!j)
            return;
        if (!json_object_is_type(j, json_type_object)) {
            sim_resp_error(req, 400, "expected a JSON object");
            return;
        }
        if (slot && slot->svc->patch_object) {
            rc = slot->svc->patch_object(sim, o, j, &err);
            if (rc < 0) {
                sim_resp_error(req, 400, "%s",
                               err.msg[0] ? err.msg : "refused");
                return;
            }
        }
        if (rc == 0) {
            if (json_object_object_get_ex(j, "labels", &v) &&
                json_object_is_type(v, json_type_object))
                merge_into(o->labels, v);
            if (json_object_object_get_ex(j, "attrs", &v) &&
                json_object_is_type(v, json_type_object))
                merge_into(o->attrs, v);
        }
        sim_resp_json(req, 200, sim_obj_json(o));
        return;
    }
    sim_resp_error(req, 405, "method not allowed");
}

static void admin_dispatch(struct sim *sim, struct sim_req *req)
{
    const char *p = req->path, *m = req->method;

    if (strcmp(p, "/_sim/inventory") == 0 && strcmp(m, "GET") == 0)
        admin_inventory(sim, req);
    else if (strcmp(p, "/_sim/requests") == 0 && strcmp(m, "GET") == 0)
        admin_requests(sim, req);
    else if (strcmp(p, "/_sim/reset") == 0 && strcmp(m, "POST") == 0)
        admin_reset(sim, req);
    else if (strcmp(p, "/_sim/faults") == 0)
        admin_faults(sim, req);
    else if (route_match("/_sim/objects/{service}/{kind}/{name*}", p, req))
        admin_object(sim, req);
    else
        sim_resp_error(req, 404, "no admin route %s %s", m, p);
}

/* ---- MHD glue ---- */

static void req_free(struct sim_req *req)
{
    req_clear_params(req);
    kc_buf_release(&req->body);
    kc_buf_release(&req->resp);
    json_object_put(req->json);
    for (size_t i = 0; i < req->nform; i++) {
        free(req->form_k[i]);
        free(req->form_v[i]);
    }
    free(req->form_k);
    free(req->form_v);
    for (size_t i = 0; i < req->narena; i++)
        free(req->arena[i]);
    free(req->arena);
    for (size_t i = 0; i < req->nhdrs; i++) {
        free(req->hdrs[i].name);
        free(req->hdrs[i].value);
    }
    free(req->hdrs);
    free(req->ctype);
    free(req->route_key);
    free(req->method);
    free(req->path);
    free(req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    if (*con_cls)
        req_free(*con_cls);
    *con_cls = NULL;
}

struct slow_body {
    char *data;
    size_t len, chunk;
    uint32_t interval;
};

static ssize_t slow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct slow_body *sb = cls;
    size_t n;

    if (pos >= sb->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (pos > 0)
        msleep(sb->interval);
    n = sb->len - (size_t)pos;
    if (n > sb->chunk)
        n = sb->chunk;
    if (n > max)
        n = max;
    memcpy(buf, sb->data + pos, n);
    return (ssize_t)n;
}

static void slow_free(void *cls)
{
    struct slow_body *sb = cls;

    free(sb->data);
    free(sb);
}

static enum MHD_Result send_response(struct sim_req *req)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (req->slow_chunk && req->resp.len) {
        struct slow_body *sb = kc_xcalloc(1, sizeof(*sb));

        sb->data = kc_buf_detach(&req->resp, &sb->len);
        sb->chunk = req->slow_chunk;
        sb->interval = req->slow_interval;
        r = MHD_create_response_from_callback(sb->len, 4096, slow_read, sb,
                                              slow_free);
        if (!r)
            slow_free(sb);
    } else {
        r = MHD_create_response_from_buffer(
            req->resp.len, req->resp.data ? req->resp.data : (char *)"",
            MHD_RESPMEM_MUST_COPY);
    }
    if (!r)
        return MHD_NO;
    if (req->ctype)
        MHD_add_response_header(r, "Content-Type", req->ctype);
    MHD_add_response_header(r, "X-Request-Id", req->id);
    for (size_t i = 0; i < req->nhdrs; i++)
        if (MHD_add_response_header(r, req->hdrs[i].name, req->hdrs[i].value) !=
            MHD_YES)
            fprintf(stderr, "sim: %s: cannot add header '%s'\n", req->id,
                    req->hdrs[i].name);
    ret = MHD_queue_response(req->conn, (unsigned)req->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void log_line(struct sim_req *req)
{
    fprintf(stderr, "sim: %s %s %s -> %s%d route=\"%s\" %llu ms%s%s\n", req->id,
            req->method, req->path, req->drop || req->drop_after ? "drop/" : "",
            req->status, req->route_key ? req->route_key : "-",
            (unsigned long long)(sim_now_ms() - req->start_ms),
            req->note[0] ? " " : "", req->note);
}

static enum MHD_Result handle(struct sim_req *req)
{
    struct sim *sim = req->sim;
    struct sim_fault *f = NULL;
    const struct sim_route *route;
    bool admin, mismatch = false;
    uint32_t latency = 0;
    enum MHD_Result ret;

    admin = !req->l->service && strncmp(req->path, "/_sim/", 6) == 0;
    pthread_mutex_lock(&sim->lock);
    run_due_timers(sim);
    if (admin) {
        (void)kc_snprintf(req->id, sizeof(req->id), "sim-admin");
        if (req->too_big)
            sim_resp_error(req, 413, "body over %zu bytes", sim->max_body);
        else
            admin_dispatch(sim, req);
        pthread_mutex_unlock(&sim->lock);
        goto respond;
    }
    (void)kc_snprintf(req->id, sizeof(req->id), "sim-%llu",
                      (unsigned long long)++sim->req_seq);
    sim->total++;
    f = fault_pick(sim, req->method, req->path);
    if (f) {
        latency = f->lat_min + (f->lat_max > f->lat_min
                                    ? (uint32_t)(splitmix(&sim->rng_fault) %
                                                 (f->lat_max - f->lat_min + 1))
                                    : 0);
        (void)kc_snprintf(req->note, sizeof(req->note), "[fault %s]",
                          f->drop         ? "drop"
                          : f->drop_after ? "drop_after"
                          : f->status     ? "status"
                                          : "latency");
        if (f->drop) {
            sim->faulted++;
            req->drop = true;
        } else if (f->status) {
            sim->faulted++;
            sim_resp_error(req, f->status, "injected fault");
            if (f->retry_after)
                sim_resp_header(req, "Retry-After", f->retry_after);
        }
        req->drop_after = f->drop_after;
    }
    if (!req->has_resp) {
        route = route_find(sim, req, &mismatch);
        if (!route) {
            if (mismatch)
                sim_resp_error(req, 405, "method %s not allowed on %s",
                               req->method, req->path);
            else
                sim_resp_error(req, 404, "no route for %s %s", req->method,
                               req->path);
        } else if (req->too_big) {
            sim_resp_error(req, 413, "body over %zu bytes", sim->max_body);
        } else {
            req->route_key = kc_xasprintf(
                "%s %s",
                strcmp(route->method, "*") == 0 ? req->method : route->method,
                route->pattern);
            req->mutating = route->mutating;
            route->fn(sim, req);
            if (!req->has_resp)
                sim_resp_error(req, 500, "handler for %s set no response",
                               route->pattern);
            count_route(sim, req->route_key);
            if (req->mutating)
                sim->mutating++;
        }
    }
    pthread_mutex_unlock(&sim->lock);
    latency += req->delay_ms;
    if (latency)
        msleep(latency);
respond:
    if (req->drop || req->drop_after) {
        log_line(req);
        return MHD_NO; /* MHD closes the connection without a response */
    }
    ret = send_response(req);
    log_line(req);
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct sim_listener *l = cls;
    struct sim_req *req = *con_cls;

    (void)version;
    if (!req) {
        req = kc_xcalloc(1, sizeof(*req));
        req->sim = l->sim;
        req->l = l;
        req->conn = conn;
        req->method = kc_xstrdup(method);
        req->path = kc_xstrdup(url);
        req->start_ms = sim_now_ms();
        req->status = 200;
        kc_buf_init(&req->body, l->sim->max_body);
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!req->too_big &&
            kc_buf_add(&req->body, upload_data, *upload_data_size) < 0)
            req->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->started)
        return MHD_YES;
    req->started = true;
    return handle(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("sim: mhd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static int listener_start(struct sim *sim, struct sim_listener *l,
                          const char *host, uint16_t port, struct kc_err *err)
{
    struct sockaddr_in sa = { 0 };
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;

    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return kc_err_set(err, KC_EINVAL,
                          "listen address '%s' is not an IPv4 address", host);
    l->sim = sim;
    if (l->cert) {
        if (!sim_tls_supported())
            return kc_err_set(err, KC_ENOTSUP,
                              "libmicrohttpd was built without TLS");
        flags |= MHD_USE_TLS;
        l->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_access, l, MHD_OPTION_EXTERNAL_LOGGER,
            on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &sa,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
            MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
            MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_HTTPS_MEM_KEY,
            l->key, MHD_OPTION_HTTPS_MEM_CERT, l->cert, MHD_OPTION_END);
    } else {
        l->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_access, l, MHD_OPTION_EXTERNAL_LOGGER,
            on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &sa,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
            MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
            MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    }
    if (!l->daemon)
        return kc_err_set(
            err, KC_EIO, "cannot listen on %s:%u%s", host, (unsigned)port,
            l->cert ? " (TLS: check the certificate and key)" : "");
    info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        MHD_stop_daemon(l->daemon);
        l->daemon = NULL;
        return kc_err_set(err, KC_EIO, "cannot read the bound port");
    }
    l->port = info->port;
    l->used = true;
    return 0;
}

static void listener_release(struct sim_listener *l)
{
    free(l->service);
    free(l->cert);
    if (l->key)
        kc_memzero(l->key, strlen(l->key));
    free(l->key);
    memset(l, 0, sizeof(*l));
}

int sim_listen(struct sim *sim, const struct sim_listen_opts *opts,
               uint16_t *port, struct kc_err *err)
{
    int id = -1, ret;
    struct sim_listener *l;

    for (int i = 1; i < SIM_MAX_LISTENERS; i++)
        if (!sim->listeners[i].used && !sim->listeners[i].stopping) {
            id = i;
            break;
        }
    if (id < 0)
        return kc_err_set(err, KC_ERANGE, "too many listeners");
    l = &sim->listeners[id];
    if (opts->service)
        l->service = kc_xstrdup(opts->service);
    if (opts->cert_pem || opts->key_pem) {
        if (!opts->cert_pem || !opts->key_pem) {
            listener_release(l);
            return kc_err_set(err, KC_EINVAL,
                              "TLS needs both a cert and a key");
        }
        l->cert = kc_xstrdup(opts->cert_pem);
        l->key = kc_xstrdup(opts->key_pem);
    }
    ret = listener_start(sim, l, opts->host ? opts->host : "127.0.0.1",
                         opts->port, err);
    if (ret < 0) {
        listener_release(l);
        return ret;
    }
    *port = l->port;
    return id;
}

void sim_unlisten(struct sim *sim, int id)
{
    struct sim_listener *l;

    if (id <= 0 || id >= SIM_MAX_LISTENERS || !sim->listeners[id].used)
        return;
    l = &sim->listeners[id];
    /* No new connections from now on; the timer thread stops the daemon
     * (joining its threads) with the lock released. */
    MHD_socket s = MHD_quiesce_daemon(l->daemon);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    sim->to_stop[sim->nto_stop++] = l->daemon;
    l->daemon = NULL;
    l->used = false;
    l->stopping = true; /* never reused: its connections may still run */
    free(l->service);
    l->service = kc_xstrdup("-"); /* matches no service while stopping */
    pthread_cond_signal(&sim->cond);
}

/* ---- life cycle ---- */

int sim_new(const struct sim_config *cfg, struct sim **out, struct kc_err *err)
{
    struct sim *sim = kc_xcalloc(1, sizeof(*sim));
    pthread_condattr_t ca;
    size_t n = 0;
    int ret;

    *out = NULL;
    pthread_mutex_init(&sim->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sim->cond, &ca);
    pthread_condattr_destroy(&ca);
    reseed(sim, cfg->seed);
    sim->max_body = cfg->max_body ? cfg->max_body : SIM_MAX_BODY;
    sim->host = kc_xstrdup(cfg->host ? cfg->host : "127.0.0.1");
    sim->port = cfg->port;
    if (cfg->cert_pem)
        sim->cert_pem = kc_xstrdup(cfg->cert_pem);
    if (cfg->key_pem)
        sim->key_pem = kc_xstrdup(cfg->key_pem);
    while (cfg->services && cfg->services[n])
        n++;
    sim->slots = kc_xcalloc(n ? n : 1, sizeof(*sim->slots));
    for (size_t i = 0; i < n; i++)
        sim->slots[i].svc = cfg->services[i];
    sim->nslots = n;
    *out = sim;
    pthread_mutex_lock(&sim->lock);
    ret = services_init(sim, err);
    pthread_mutex_unlock(&sim->lock);
    return ret;
}

int sim_start(struct sim *sim, uint16_t *port, struct kc_err *err)
{
    struct sim_listener *l = &sim->listeners[0];
    int ret;

    if (sim->cert_pem) {
        l->cert = kc_xstrdup(sim->cert_pem);
        l->key = kc_xstrdup(sim->key_pem);
    }
    ret = listener_start(sim, l, sim->host, sim->port, err);
    if (ret < 0)
        return ret;
    if (pthread_create(&sim->timer_thread, NULL, timer_main, sim) != 0)
        return kc_err_set(err, KC_EIO, "cannot start the timer thread");
    sim->timer_started = true;
    *port = l->port;
    return 0;
}

void sim_free(struct sim *sim)
{
    if (!sim)
        return;
    pthread_mutex_lock(&sim->lock);
    sim->stop = true;
    pthread_cond_signal(&sim->cond);
    pthread_mutex_unlock(&sim->lock);
    if (sim->timer_started)
        pthread_join(sim->timer_thread, NULL);
    for (int i = 0; i < SIM_MAX_LISTENERS; i++) {
        if (sim->listeners[i].daemon)
            MHD_stop_daemon(sim->listeners[i].daemon);
        listener_release(&sim->listeners[i]);
    }
    for (size_t i = 0; i < sim->nto_stop; i++)
        MHD_stop_daemon(sim->to_stop[i]);
    pthread_mutex_lock(&sim->lock);
    services_fini(sim);
    while (sim->obj_head)
        sim_obj_remove(sim, sim->obj_head);
    drop_timers(sim);
    faults_clear(sim);
    counts_clear(sim);
    pthread_mutex_unlock(&sim->lock);
    free(sim->slots);
    free(sim->host);
    free(sim->cert_pem);
    if (sim->key_pem)
        kc_memzero(sim->key_pem, strlen(sim->key_pem));
    free(sim->key_pem);
    pthread_mutex_destroy(&sim->lock);
    pthread_cond_destroy(&sim->cond);
    free(sim);
}
