/* resources/gcp/gcp.h: the GCP provider's shared client (private to
 * resources/gcp): configuration from providers.gcp, authenticated JSON calls
 * on reconcile/http.h, Google error decoding and operation polling.
 *
 * Calls (struct gcp_call): a request with a bearer token from the provider's
 * token cache (resources/gcp/auth.h). Without a fresh token the call first
 * waits for the shared refresh. A 401 answer drops that token, refreshes
 * once and sends the call once more (a second 401 is final). 429/5xx and
 * connection failures are retried by the HTTP module (backoff with jitter,
 * Retry-After); POSTs are retried only when marked safe (they carry a
 * requestId, or create a deterministically named object).
 *
 * Errors: Google answers {"error":{"code","message","errors":[{"reason",
 * "message"}]}} ("Handling API errors", https://cloud.google.com/compute/
 * docs/api/handle-errors; Cloud Storage "HTTP status and error codes",
 * https://cloud.google.com/storage/docs/json_api/v1/status-codes).
 * gcp_call_check() makes "CODE REASON: MESSAGE" with KC_ENOENT (404),
 * KC_EEXIST (409), KC_ECONFLICT (412), KC_EPERM (401/403) or KC_EREMOTE.
 *
 * Operations (struct gcp_wait): Compute mutations answer an Operation;
 * gcp_op_wait() polls zoneOperations.get / globalOperations.get
 * (https://cloud.google.com/compute/docs/reference/rest/v1/zoneOperations
 * /get) on a uv timer with backoff from GCP_POLL_MIN_MS doubling to
 * GCP_POLL_MAX_MS, until status DONE or the deadline; an operation that ends
 * with "error" fails with its first error's code and message.
 *
 * Callback contracts are those of STYLE.md §2.6: a start function returning
 * < 0 started nothing (ERR says why) and never calls back; 0 means the
 * callback runs exactly once, later, from the loop.
 */
#ifndef KC_RESOURCES_GCP_GCP_H
#define KC_RESOURCES_GCP_GCP_H

#include "reconcile/http.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/secret.h"
#include "reconcile/value.h"
#include "resources/gcp/auth.h"

#include <json-c/json.h>
#include <uv.h>

#define GCP_COMPUTE_URL   "https://compute.googleapis.com/compute/v1"
#define GCP_STORAGE_URL   "https://storage.googleapis.com"
#define GCP_POLL_MIN_MS   50
#define GCP_POLL_MAX_MS   5000
#define GCP_OP_TIMEOUT_MS (30u * 60u * 1000u)
#define GCP_LABEL_DEPLOY  "kmsctl-deployment"
#define GCP_LABEL_ADDRESS "kmsctl-address"

/* providers.gcp, parsed. */
struct gcp_config {
    char *project, *zone, *bucket;
    struct kc_secret *credentials; /* path or key JSON, or NULL */
    char *base_dir;                /* the manifest's folder */
    char *oauth_url;    /* token endpoint; NULL: the key file's or Google's */
    char *compute_url;  /* base up to /compute/v1 */
    char *storage_url;  /* base of /storage/v1 and /upload/storage/v1 */
    char *metadata_url; /* NULL: GCE_METADATA_HOST or Google's */
    struct kc_value *labels; /* extra labels (a map), or NULL */
};

/* Reads providers.gcp (a map; NULL fails) into OUT (caller releases). */
int gcp_config_parse(const struct kc_value *v, const char *base_dir,
                     struct gcp_config *out, struct kc_err *err);
void gcp_config_release(struct gcp_config *cfg);

/* An async job of an op, found again from the op where a callback only
 * gets the op (kc_op_persist). */
struct gcp_job {
    const void *op;
    struct gcp_job *next;
};

/* The provider context (struct kc_provider's data). */
struct gcp {
    /* read-only */
    uv_loop_t *loop;
    struct kc_http *http;
    struct kc_log *log;
    struct gcp_config cfg;
    char *deployment; /* the ownership label's value */
    struct gcp_auth *auth;
    uint32_t poll_min_ms, poll_max_ms;
    uint64_t op_timeout_ms;
    /* private: jobs waiting for a persist */
    struct gcp_job *jobs;
    /* private: the token fetch transport */
    struct kc_http_req token_req;
    struct gcp_token_fetch *token_fetch;
};

/* Makes the context: finds the credentials (auth.h's order) and sets up the
 * token cache. CFG is taken (also on failure). Nothing is sent yet. */
int gcp_new(uv_loop_t *loop, struct kc_http *http, struct kc_log *log,
            struct gcp_config *cfg, const char *deployment,
            const struct gcp_creds_env *env, struct gcp **out,
            struct kc_err *err);
/* NULL-safe. No call may be in flight. */
void gcp_free(struct gcp *g);

/* Registers J for OP until gcp_job_take(); one job per op at a time. */
void gcp_job_put(struct gcp *g, struct gcp_job *j, const void *op);
/* Unregisters and returns the job of OP, or NULL. */
struct gcp_job *gcp_job_take(struct gcp *g, const void *op);

/* "https://.../compute/v1/projects/P/zones/Z/instances/N" and so on: the
 * base from the configuration, then the parts joined with '/', each
 * percent-encoded. Caller frees. */
char *gcp_compute_url(const struct gcp *g, const char *fmt, ...)
    KC_PRINTF(2, 3);

struct gcp_call;
typedef void (*gcp_call_cb)(struct gcp_call *c, int status);
/* Adds what a call needs beyond URL, token and JSON body (headers, an fd
 * body) to REQ; called before each send (a 401 resend builds it again). */
typedef int (*gcp_call_setup_fn)(struct gcp_call *c, struct kc_http_req *req,
                                 struct kc_err *err);

struct gcp_call {
    /* public, set before gcp_call_start */
    void *data;
    gcp_call_setup_fn setup; /* optional */
    bool safe;               /* POST/PATCH retried on 5xx (requestId) */
    const struct kc_http_retry *retry; /* optional: replaces the policy */
    /* read-only, valid in the callback */
    long code;                /* HTTP status, 0 when none */
    struct json_object *resp; /* parsed JSON body, or NULL */
    struct kc_err err;        /* status < 0: why */
    struct kc_http_req req;   /* the finished request (headers, raw body) */
    /* private */
    struct gcp *g;
    gcp_call_cb cb;
    enum kc_http_method method;
    char *url;
    struct json_object *body;
    struct kc_secret *token;
    struct gcp_auth_req areq;
    bool resent;
};

/* Starts METHOD URL with BODY (taken; NULL for none). See the header
 * comment for tokens and retries. CB(c, 0): a response came (any status,
 * see c->code; JSON bodies parsed into c->resp); CB(c, < 0): no response
 * (c->err). */
int gcp_call_start(struct gcp *g, struct gcp_call *c, enum kc_http_method m,
                   const char *url, struct json_object *body, gcp_call_cb cb,
                   struct kc_err *err);
/* gcp_call_release(C), C zeroed (data, setup, safe and retry too), then
 * gcp_call_start(): a kind's next call on the same struct. */
int gcp_call_restart(struct gcp *g, struct gcp_call *c, enum kc_http_method m,
                     const char *url, struct json_object *body, gcp_call_cb cb,
                     struct kc_err *err);
/* Frees what the call holds; the struct may be started again. */
void gcp_call_release(struct gcp_call *c);
/* 0 for a 2xx; else ERR = "WHAT: CODE REASON: MESSAGE" (see above). */
int gcp_call_check(const struct gcp_call *c, int status, const char *what,
                   struct kc_err *err);
/* errors[0].reason of an error answer, or NULL. Borrowed from c->resp. */
const char *gcp_call_reason(const struct gcp_call *c);

struct gcp_wait;
typedef void (*gcp_wait_cb)(struct gcp_wait *w, int status);

struct gcp_wait {
    /* public */
    void *data;
    /* read-only, valid in the callback */
    struct json_object *op; /* the final Operation (status DONE), or NULL */
    struct kc_err err;
    /* private */
    struct gcp *g;
    gcp_wait_cb cb;
    char *url, *what;
    struct gcp_call call;
    uv_timer_t timer;
    bool timer_live;
    uint32_t delay_ms;
    uint64_t deadline;
    int status;
};

/* Waits for operation OP (a Compute Operation answer: borrowed, its name and
 * zone are read now) to be DONE. WHAT names the resource in errors. CB(w, 0)
 * when it succeeded; < 0 when it ended with an error (KC_EREMOTE, w->err
 * "WHAT: operation NAME failed: CODE: MESSAGE"), the poll failed or the
 * deadline passed (KC_ETIMEDOUT). */
int gcp_op_wait(struct gcp *g, struct gcp_wait *w, struct json_object *op,
                const char *what, gcp_wait_cb cb, struct kc_err *err);
void gcp_wait_release(struct gcp_wait *w);

/* The ownership labels of ADDRESS: {kmsctl-deployment: <deployment>,
 * kmsctl-address: <address as a label value>} plus providers.gcp.labels.
 * Label values allow only [-_a-z0-9]{0,63}: other characters become '_'
 * and a longer address is cut and ends with 8 hex digits of its CRC32C. */
struct json_object *gcp_owner_labels(const struct gcp *g, const char *address);
/* The label value gcp_owner_labels uses for ADDRESS (OUT holds 64). */
void gcp_label_value(const char *s, char out[64]);
/* 0 when LABELS (an object or NULL) carry this deployment's ownership of
 * ADDRESS; else KC_ECONFLICT naming the owner found ("owned by deployment
 * 'x'", "not created by kmsctl"). */
int gcp_owner_check(const struct gcp *g, struct json_object *labels,
                    const char *address, const char *what, struct kc_err *err);

/* The integer at PATH of O, an API answer (a JSON number, or a decimal
 * string as Google encodes int64), into *OUT when it is from MIN to MAX.
 * Absent (or null): *OUT = 0 and 0. Anything else (not a number, trailing
 * text, out of range) is KC_EPARSE naming WHAT (the resource) and PATH. */
int gcp_answer_int(struct json_object *o, const char *path, int64_t min,
                   int64_t max, const char *what, int64_t *out,
                   struct kc_err *err);

#endif
