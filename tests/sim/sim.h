/* tests/sim/sim.h: the framework of kmsctl-sim, one libmicrohttpd server
 * that simulates the cloud APIs kmsctl talks to (GCP, EC2, the KMS) plus an
 * admin API under /_sim/ for tests.
 *
 * Adding a service
 *   A service is one file tests/sim/svc_<name>.c exporting one
 *       const struct sim_service sim_svc_<name> = { .name = "<name>", ... };
 *   main.c lists the known services as weak symbols, so a service that is
 *   not linked is simply absent. To add a new name, add one line to the
 *   table in main.c (gcp, ec2, kms and test are already there).
 *
 * Threading model
 *   MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION with
 *   its internal polling thread), plus one framework thread that fires
 *   timers. ONE mutex (the "sim lock") guards every piece of simulator
 *   state: inventory, counters, faults, RNG, timers and the services' own
 *   state. Every service callback (handler, init, reset, hooks, timers) runs
 *   with the lock held, so services need no locking of their own. Handlers
 *   must not block: injected latency, sim_resp_delay(), slow bodies and
 *   dropped connections are carried out by the framework after the handler
 *   returned, with the lock released, so 100 delayed requests overlap.
 *   Timers fire on the timer thread (and also, when due, just before a
 *   request is dispatched, so a client that polls sees state changes no
 *   later than their deadline).
 *
 * Determinism
 *   One seeded RNG (--seed) for the services (ids, delays) and a separate
 *   one for fault decisions, so injecting faults does not change ids. POST
 *   /_sim/reset reseeds both. Given the same seed and the same sequence of
 *   requests, responses and fault decisions are the same.
 *
 * Every response carries "X-Request-Id: sim-<n>" (n counts from 1 per reset)
 * and each request logs one line on stderr:
 *   sim: sim-12 POST /compute/v1/.../instances -> 200 route="POST
 * /compute/v1/projects/{project}/zones/{zone}/instances" 3 ms
 *
 * Admin API (JSON)
 *   GET    /_sim/inventory[?service=S&kind=K]
 * [{"service","kind","name","id","labels":{},"attrs":{}}] GET    /_sim/requests
 * {"total","mutating","faulted","by_route":{"METHOD /pattern":N}} POST
 * /_sim/reset      empty inventory, counters, faults, timers; reseed (body
 * {"seed":N} optional: new seed); services' reset hooks run POST   /_sim/faults
 * replace the rules with a JSON list of
 *                           {"match":"regex on 'METHOD PATH'" (POSIX ERE),
 *                            "latency_ms":[min,max], "status":503,
 *                            "retry_after":1 (seconds, or a string sent as is),
 *                            "probability":0.2 (default 1), "drop":false,
 *                            "drop_after":false (handled, then the connection
 *                            is closed without the response), "count":N}
 *                           The first matching rule whose dice roll hits
 *                           applies; "count" bounds how often it applies.
 *   GET    /_sim/faults     the rules with "hits"
 *   DELETE /_sim/faults     no rules
 *   PATCH  /_sim/objects/{service}/{kind}/{name}  body {"labels":{},"attrs":{}}
 *                           merged (a null member removes it); the service's
 *                           patch hook runs first and may refuse (400)
 *   DELETE /_sim/objects/{service}/{kind}/{name}  the service's delete hook
 *                           runs, then the object is removed
 *   Admin requests are not counted in /_sim/requests and never faulted.
 *   Counting: "total" counts every service request (faulted ones too);
 *   "faulted" those answered or dropped by a fault before the handler;
 *   "by_route" and "mutating" the requests a handler saw.
 */
#ifndef KC_TESTS_SIM_SIM_H
#define KC_TESTS_SIM_SIM_H

#include "reconcile/kc.h"

#include <json-c/json.h>

struct sim;
struct sim_req;

/* Runs with the sim lock held. Must set a response (else 500 is sent). */
typedef void (*sim_handler_fn)(struct sim *sim, struct sim_req *req);

struct sim_route {
    const char *method; /* "GET", "POST", ...; "*" any method */
    /* Path pattern: literal segments, "{name}" (one segment, percent-
     * decoded, read with sim_req_param) and, as the last segment only,
     * "{name*}" (the rest of the path, slashes included). A segment may
     * also be "{name}:verb" (literal suffix, e.g. Google custom methods).
     * The pattern is the by_route key ("POST /test/objects"). */
    const char *pattern;
    sim_handler_fn fn;
    bool mutating; /* count as mutating (see also sim_req_mark_mutating) */
};

struct sim_object {
    /* read-only */
    char *service, *kind, *name, *id;
    /* public: owned by the object, change freely under the lock */
    struct json_object *labels; /* JSON object, never NULL */
    struct json_object *attrs;  /* JSON object, never NULL */
    /* private */
    struct sim_object *next, *prev;
    uint64_t seq;
};

struct sim_service {
    const char *name;               /* "gcp", "ec2", "kms", "test" */
    const struct sim_route *routes; /* ends with { NULL } */
    /* Optional: called once at start, and again after each reset (after
     * the inventory was emptied). *STATE is the service's own data
     * (sim_service_state). Return < 0 to refuse to start (message on
     * stderr). */
    int (*init)(struct sim *sim, void **state);
    /* Optional: frees STATE (at reset before init, and at exit). */
    void (*fini)(struct sim *sim, void *state);
    /* Optional: PATCH /_sim/objects/... on one of this service's objects.
     * PATCH is the JSON body ({"labels":{},"attrs":{}}). Runs before the
     * framework merges PATCH into OBJ; may change OBJ itself (and then
     * return 1 to skip the generic merge). Return < 0 with a message in
     * ERR to refuse (the admin call answers 400). */
    int (*patch_object)(struct sim *sim, struct sim_object *obj,
                        struct json_object *patch, struct kc_err *err);
    /* Optional: DELETE /_sim/objects/...: runs before the object is
     * removed (e.g. to stop an emulator). */
    void (*delete_object)(struct sim *sim, struct sim_object *obj);
};

/* ---- request access (all borrowed until the handler returns) ---- */
const char *sim_req_method(const struct sim_req *req);
/* The path without the query string, as sent (not decoded). */
const char *sim_req_path(const struct sim_req *req);
/* A path parameter of the matched route (percent-decoded), or NULL. */
const char *sim_req_param(const struct sim_req *req, const char *name);
/* A query parameter (decoded), or NULL. */
const char *sim_req_query(const struct sim_req *req, const char *key);
/* A request header (case-insensitive), or NULL. */
const char *sim_req_header(const struct sim_req *req, const char *name);
/* The whole request body (NUL-terminated; "" when none). */
const char *sim_req_body(const struct sim_req *req, size_t *len);
/* Parses the body as JSON. On failure answers 400 with a JSON error and
 * returns NULL. Borrowed: the request keeps the reference. */
struct json_object *sim_req_json(struct sim_req *req);
/* A field of an application/x-www-form-urlencoded body (decoded), or NULL.
 * EC2's Query API sends its parameters this way. */
const char *sim_req_form(struct sim_req *req, const char *key);
/* "http://HOST:PORT" (https on a TLS listener) as the client addressed
 * this listener (from the Host header; the listener's address without
 * one): for absolute URLs in answers (selfLink, an upload session's
 * Location). */
const char *sim_req_base_url(const struct sim_req *req);
/* "sim-<n>". */
const char *sim_req_id(const struct sim_req *req);
/* The service this route belongs to, and its state. */
const char *sim_req_service(const struct sim_req *req);
void *sim_req_state(const struct sim_req *req);
/* Counts this request as mutating (for handlers whose route does not say,
 * e.g. EC2's single POST / endpoint). */
void sim_req_mark_mutating(struct sim_req *req);
/* Replaces the by_route key (e.g. "POST /?Action=RunInstances"). Copied. */
void sim_req_set_route(struct sim_req *req, const char *key);

/* ---- responses ---- */
void sim_resp_status(struct sim_req *req, int status);
/* Adds a response header (copied). */
void sim_resp_header(struct sim_req *req, const char *name, const char *value);
/* Sets status and body (copied) with a Content-Type. */
void sim_resp_body(struct sim_req *req, int status, const char *content_type,
                   const void *data, size_t len);
/* Sets status and a JSON body. Steals BODY. */
void sim_resp_json(struct sim_req *req, int status, struct json_object *body);
/* Sets status and an XML body (text/xml; copied). */
void sim_resp_xml(struct sim_req *req, int status, const char *xml);
/* {"error":{"code":STATUS,"message":MSG}} (Google style, fine elsewhere). */
void sim_resp_error(struct sim_req *req, int status, const char *fmt, ...)
    KC_PRINTF(3, 4);
/* Waits MS before sending the response (lock released meanwhile). */
void sim_resp_delay(struct sim_req *req, uint32_t ms);
/* Closes the connection instead of answering. */
void sim_resp_drop(struct sim_req *req);
/* Sends the body CHUNK bytes at a time, INTERVAL_MS apart. */
void sim_resp_slow(struct sim_req *req, size_t chunk, uint32_t interval_ms);

/* ---- inventory: the store services keep their objects in ---- */
/* Adds an object; NULL if SERVICE/KIND/NAME exists already. ID NULL: a
 * seeded 19-digit decimal id. Labels and attrs start as empty objects. */
struct sim_object *sim_obj_add(struct sim *sim, const char *service,
                               const char *kind, const char *name,
                               const char *id);
struct sim_object *sim_obj_find(struct sim *sim, const char *service,
                                const char *kind, const char *name);
struct sim_object *sim_obj_find_id(struct sim *sim, const char *service,
                                   const char *kind, const char *id);
/* Iterates in creation order: PREV NULL gives the first. SERVICE and KIND
 * filter when not NULL. Do not remove PREV while iterating from it (take
 * the next one first). */
struct sim_object *sim_obj_next(struct sim *sim, struct sim_object *prev,
                                const char *service, const char *kind);
/* Removes and frees OBJ (no hooks run). */
void sim_obj_remove(struct sim *sim, struct sim_object *obj);
/* The object as JSON (the /_sim/inventory element). Caller puts. */
struct json_object *sim_obj_json(const struct sim_object *obj);

/* ---- time, randomness, timers ---- */
/* Monotonic milliseconds. */
uint64_t sim_now_ms(void);
/* Seeded (services' stream). */
uint64_t sim_rand(struct sim *sim);
/* Uniform in [lo, hi]. */
uint64_t sim_rand_range(struct sim *sim, uint64_t lo, uint64_t hi);
uint64_t sim_seed(const struct sim *sim);

typedef void (*sim_timer_fn)(struct sim *sim, void *arg);
/* Runs FN(sim, ARG) with the lock held DELAY_MS from now. FREE_ARG (may be
 * NULL) frees ARG after FN ran or when a reset drops the timer. Timers with
 * the same deadline run in the order they were added. */
void sim_timer_add(struct sim *sim, uint32_t delay_ms, sim_timer_fn fn,
                   void *arg, void (*free_arg)(void *));

/* The state pointer of a service by name (NULL if not enabled). */
void *sim_service_state(struct sim *sim, const char *service);
bool sim_service_enabled(const struct sim *sim, const char *service);

/* ---- listeners ---- */
struct sim_listen_opts {
    const char *host;     /* "127.0.0.1" */
    uint16_t port;        /* 0: any free port */
    const char *cert_pem; /* with key_pem: HTTPS (MHD with GnuTLS) */
    const char *key_pem;
    /* Only this service's routes (and no admin API) on this listener; NULL:
     * everything. The KMS emulator uses its own TLS listener this way. */
    const char *service;
};
/* Starts one more listener (callable from a handler or timer, lock held).
 * At most 63 such listeners over the life of the process (a stopped one's
 * slot is not reused, its connections may still be finishing).
 * *PORT gets the bound port. Returns a listener id >= 0, or < 0 with a
 * message in ERR (KC_ENOTSUP when MHD lacks TLS). */
int sim_listen(struct sim *sim, const struct sim_listen_opts *opts,
               uint16_t *port, struct kc_err *err);
/* Stops listener ID (its connections are closed). Lock held or not. */
void sim_unlisten(struct sim *sim, int id);
/* true when MHD was built with TLS. */
bool sim_tls_supported(void);

/* ---- the program (main.c) ---- */
struct sim_config {
    const char *host;
    uint16_t port;
    uint64_t seed;
    const struct sim_service *const *services; /* enabled, NULL-terminated */
    const char *cert_pem, *key_pem;            /* main listener over TLS */
    size_t max_body;                           /* 0: 256 MiB */
};
int sim_new(const struct sim_config *cfg, struct sim **out, struct kc_err *err);
/* Starts the main listener; *PORT gets the bound port. */
int sim_start(struct sim *sim, uint16_t *port, struct kc_err *err);
void sim_free(struct sim *sim);

#endif
