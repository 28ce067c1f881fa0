/* tests/sim/svc_gcp.c: the simulated Google Cloud: OAuth2 token endpoint and
 * metadata server, Compute Engine v1 (instances, disks, images, firewalls,
 * zone and global operations) and Cloud Storage JSON API (simple and
 * resumable uploads, objects get/list/delete).
 *
 * Wire shapes follow Google's references:
 *   - Compute Engine API v1, https://cloud.google.com/compute/docs/reference
 *     /rest/v1 (instances.insert/get/list/delete/stop/start/attachDisk/
 *     detachDisk/setLabels/setTags/getSerialPortOutput, disks, images,
 *     firewalls, zoneOperations.get, globalOperations.get). Mutations answer
 *     an Operation that goes PENDING -> RUNNING -> DONE; "requestId" makes a
 *     repeated call return the first call's operation ("...the server will
 *     know to ignore the request if it has already been completed");
 *     labelFingerprint / tags.fingerprint mismatches answer 412
 *     conditionNotMet; lists page with maxResults/pageToken/nextPageToken.
 *   - Errors: {"error":{"code","message","errors":[{"message","domain",
 *     "reason"}]}} with reasons alreadyExists (409), notFound (404), invalid
 *     (400), conditionNotMet (412), forbidden (403), authError (401),
 *     resourceInUseByAnotherResource (400) ("Handling API errors",
 *     https://cloud.google.com/compute/docs/api/handle-errors).
 *   - Cloud Storage JSON API v1, https://cloud.google.com/storage/docs/
 *     json_api/v1/objects and "Perform resumable uploads"
 *     (https://cloud.google.com/storage/docs/performing-resumable-uploads):
 *     POST /upload/storage/v1/b/B/o?uploadType=resumable answers a session
 *     URI in Location; PUTs carry Content-Range "bytes A-B/TOTAL" (or
 *     "bytes A-B/ *" while the size is unknown, "bytes * /TOTAL" to ask the
 *     status); an unfinished session answers 308 with "Range: bytes=0-N"
 *     (no Range when nothing is stored); chunks other than the last are
 *     stored in multiples of 256 KiB. Objects carry crc32c (base64,
 *     big-endian) and md5Hash (base64); ifGenerationMatch preconditions
 *     answer 412 (0 means "must not exist").
 *   - OAuth2: POST .../token with a JWT bearer assertion (RS256, claims iss,
 *     scope, aud, iat, exp; https://developers.google.com/identity/
 *     protocols/oauth2/service-account); failures are {"error",
 *     "error_description"} with status 400. Metadata server: GET
 *     /computeMetadata/v1/instance/service-accounts/default/token with
 *     "Metadata-Flavor: Google".
 *
 * Paths: everything lives under /gcp, as manifests/sandbox.yaml's endpoints
 * say: /gcp/oauth2/token, /gcp/metadata/computeMetadata/..., /gcp/compute/v1
 * /projects/..., /gcp/storage/{upload/,}storage/v1/b/... .
 *
 * Simulation choices (documented, tested):
 *   - The token endpoint verifies the assertion's signature against the
 *     public half of tests/sim/creds/gcp-service-account.json (embedded
 *     below; KMSCTL_SIM_GCP_PUBKEY names another PEM file) and checks iss,
 *     aud (Google's token URL or this server's /gcp/oauth2/token), scope,
 *     iat and exp.
 *     Tokens live KMSCTL_SIM_GCP_TOKEN_TTL seconds (default 3600).
 *   - Every Compute and Storage call needs "Authorization: Bearer" with a
 *     live token (else 401). Projects and buckets named "denied-*" answer
 *     403 forbidden to everything.
 *   - Operation phases last a seeded random time in KMSCTL_SIM_GCP_OP_MS
 *     ("MIN,MAX" milliseconds, default "20,60").
 *   - Lists (instances, disks, images, firewalls) page with maxResults
 *     (default 500, or KMSCTL_SIM_GCP_PAGE) and pageToken, and take one
 *     filter comparison (see parse_filter); others are a 400.
 *   - Instances get natIP 127.1.x.y (distinct per instance, kept across
 *     stop/start) and networkIP 10.128.x.y. Serial port 1 gets boot lines.
 *   - Inventory kinds: instance, disk, image, firewall (name = resource
 *     name, attrs = the resource as GET returns it) and object (name =
 *     "BUCKET/OBJECT", attrs = object metadata). Operations, tokens,
 *     upload sessions and object data are service state, not inventory.
 *   - Buckets exist implicitly.
 *   - Admin PATCH of labels keeps attrs.labels and labelFingerprint in step.
 */
#include "tests/sim/sim.h"

#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/gcp/auth.h"
#include "resources/gcp/codec.h"

#define SVC         "gcp"
#define CHUNK_QUANT (256u * 1024u)
#define LIST_MAX    500
#define SERIAL_MAX  (256u * 1024u)
#define REQID_MAX   128

/* The public half of tests/sim/creds/gcp-service-account.json's key. */
static const char test_pubkey_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqQ+cnDI4F3j/sN/WJV0p\n"
    "f+/jJNICrWZcpnU59KXsIHWS9EHg4g9zMeOCzXjgOIRrydMF1XFUrEPvg1lKoMd9\n"
    "A8rxgzbQNxbktwMGDSfUgtU6btVdPdmkRXwtuozhIbOnd4iw02CBfDG0JUPtkrC0\n"
    "JjCSpjDe9NMrfJ/T488jWSgLnINSBKhb5fVs22plglahncaYwaAnYavHhH3Wfas5\n"
    "0qvJ0Wd9lX5+yf5kSOVaB6zWm+PX1aY9YRCwZA7PWtpL3cQJghNoeLavrjk0y9xp\n"
    "kEpcrl4GlcxhjV55gNC4qBUY/eWEIYdI78WOBYCKZxS+Tnc1iEegE3uWjxpL2OPI\n"
    "sQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";
static const char test_client_email[] =
    "kmsctl-sandbox@kmsctl-sandbox.iam.gserviceaccount.com";

struct gcp_token {
    char *token;
    uint64_t expires_ms;
    struct gcp_token *next;
};

struct gcp_blob { /* object data */
    char *key;    /* "bucket/object" */
    unsigned char *data;
    size_t len;
    struct gcp_blob *next;
};

struct gcp_session { /* a resumable upload */
    char *id, *bucket, *name;
    struct json_object *meta; /* the initiating request's metadata */
    struct kc_buf data;
    int64_t total;               /* -1 while unknown */
    int64_t if_generation_match; /* -1: none */
    struct json_object *result;  /* the object once finished */
    struct gcp_session *next;
};

struct gcp_serial {
    char *instance;
    struct kc_buf buf;
    int64_t base; /* offset of buf's first byte */
    struct gcp_serial *next;
};

struct gcp_op;
typedef void (*op_effect_fn)(struct sim *sim, struct gcp_op *op, bool done);

struct gcp_op {
    char *name;
    char *zone; /* NULL: global */
    char *request_id;
    struct json_object *json;
    op_effect_fn effect;     /* runs at RUNNING (done false) and DONE (true) */
    char *kind, *target;     /* inventory kind and name of the target */
    struct json_object *arg; /* the effect's input (owned) */
    struct gcp_op *next;
};

struct gcp_state {
    EVP_PKEY *pub;
    uint64_t token_ttl_ms;
    uint32_t op_min_ms, op_max_ms;
    long page_max; /* a list page without maxResults (default LIST_MAX) */
    uint64_t ip_next;
    uint64_t op_next;
    uint64_t generation;
    struct gcp_token *tokens;
    struct gcp_blob *blobs;
    struct gcp_session *sessions;
    struct gcp_serial *serials;
    struct gcp_op *ops;
};

/* ---- small helpers ---- */

static struct gcp_state *st_of(struct sim_req *req)
{
    return sim_req_state(req);
}

static struct gcp_state *st_sim(struct sim *sim)
{
    return sim_service_state(sim, SVC);
}

static void now_rfc3339(char out[64])
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03d-00:00",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

static struct json_object *jstr(const char *s)
{
    return json_object_new_string(s);
}

static void jset(struct json_object *o, const char *k, struct json_object *v)
{
    json_object_object_add(o, k, v); /* steals V */
}

static const char *jget_str(struct json_object *o, const char *k)
{
    struct json_object *v;

    if (!o || !json_object_object_get_ex(o, k, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static struct json_object *jdup(struct json_object *o)
{
    struct json_object *d = NULL;

    if (json_object_deep_copy(o, &d, NULL) != 0)
        KC_BUG("json deep copy");
    return d;
}

static struct json_object *jget(struct json_object *o, const char *k)
{
    struct json_object *v;

    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Google's error body (see the file comment). */
static void gerr(struct sim_req *req, int status, const char *reason,
                 const char *fmt, ...) KC_PRINTF(4, 5);
static void gerr(struct sim_req *req, int status, const char *reason,
                 const char *fmt, ...)
{
    struct json_object *body = json_object_new_object();
    struct json_object *e = json_object_new_object();
    struct json_object *errs = json_object_new_array();
    struct json_object *one = json_object_new_object();
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    jset(one, "message", jstr(msg));
    jset(one, "domain", jstr(status == 401 ? "global" : "global"));
    jset(one, "reason", jstr(reason));
    json_object_array_add(errs, one);
    jset(e, "code", json_object_new_int(status));
    jset(e, "message", jstr(msg));
    jset(e, "errors", errs);
    jset(body, "error", e);
    sim_resp_json(req, status, body);
}

static char *base_url(struct sim_req *req)
{
    const char *host = sim_req_header(req, "Host");

    return kc_xasprintf("http://%s/gcp", host ? host : "127.0.0.1");
}

static char *rand_hex(struct sim *sim, size_t nbytes)
{
    char *s = kc_xmalloc(2 * nbytes + 1);

    for (size_t i = 0; i < nbytes; i++)
        snprintf(s + 2 * i, 3, "%02x", (unsigned)(sim_rand(sim) & 0xff));
    return s;
}

/* A fingerprint: base64 of the first 8 bytes of SHA-256 of the canonical
 * JSON of V (Google's are opaque base64 strings too). */
static char *fingerprint(struct json_object *v)
{
    const char *s = v ? json_object_to_json_string_ext(
                            v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_SPACED)
                      : "null";
    unsigned char md[32];
    struct kc_buf b = { 0 };

    if (EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL) != 1)
        KC_BUG("sha256");
    if (gcp_b64_encode(md, 8, false, &b) < 0)
        KC_BUG("b64");
    return kc_buf_detach(&b, NULL);
}

/* Sorted copy of a labels object, so fingerprints ignore key order. */
static struct json_object *sorted_labels(struct json_object *labels)
{
    struct json_object *out = json_object_new_object();
    const char *keys[256];
    size_t n = 0;

    if (labels && json_object_is_type(labels, json_type_object)) {
        json_object_object_foreach (labels, k, v) {
            (void)v;
            if (n < KC_ARRAY_SIZE(keys))
                keys[n++] = k;
        }
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];

            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++)
        jset(out, keys[i], json_object_get(jget(labels, keys[i])));
    return out;
}

static void set_label_fp(struct json_object *attrs)
{
    struct json_object *s = sorted_labels(jget(attrs, "labels"));
    char *fp = fingerprint(s);

    jset(attrs, "labelFingerprint", jstr(fp));
    free(fp);
    json_object_put(s);
}

/* Keeps the inventory's labels equal to attrs.labels. */
static void sync_labels(struct sim_object *obj)
{
    struct json_object *l = jget(obj->attrs, "labels");

    json_object_put(obj->labels);
    obj->labels = l ? jdup(l) : json_object_new_object();
}

/* RFC 1035 names, as Compute requires: [a-z]([-a-z0-9]{0,61}[a-z0-9])? */
static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n < 1 || n > 63 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-'))
            return false;
    return true;
}

/* Labels: keys [a-z][a-z0-9_-]{0,62}, values [a-z0-9_-]{0,63}, <= 64. */
static bool valid_labels(struct json_object *l, char *why, size_t whylen)
{
    int n = 0;

    if (!l)
        return true;
    if (!json_object_is_type(l, json_type_object)) {
        snprintf(why, whylen, "labels must be an object");
        return false;
    }
    json_object_object_foreach (l, k, v) {
        const char *val;
        size_t kl = strlen(k);

        n++;
        if (kl < 1 || kl > 63 || k[0] < 'a' || k[0] > 'z') {
            snprintf(why, whylen, "invalid label key '%.64s'", k);
            return false;
        }
        if (!json_object_is_type(v, json_type_string)) {
            snprintf(why, whylen, "label '%.64s' is not a string", k);
            return false;
        }
        val = json_object_get_string(v);
        for (const char *p = k; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                  *p == '_' || *p == '-')) {
                snprintf(why, whylen, "invalid label key '%.64s'", k);
                return false;
            }
        if (strlen(val) > 63) {
            snprintf(why, whylen, "label value of '%.64s' too long", k);
            return false;
        }
        for (const char *p = val; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                  *p == '_' || *p == '-')) {
                snprintf(why, whylen, "invalid label value '%.64s'", val);
                return false;
            }
    }
    if (n > 64) {
        snprintf(why, whylen, "more than 64 labels");
        return false;
    }
    return true;
}

/* The last path segment of a URL or partial URL ("zones/z/machineTypes/x"
 * -> "x"). */
static const char *last_seg(const char *url)
{
    const char *s = url ? strrchr(url, '/') : NULL;

    return s ? s + 1 : url;
}

/* ---- tokens and auth ---- */

static bool token_live(struct gcp_state *st, const char *tok)
{
    uint64_t now = sim_now_ms();

    for (struct gcp_token *t = st->tokens; t; t = t->next)
        if (strcmp(t->token, tok) == 0)
            return now < t->expires_ms;
    return false;
}

static struct json_object *token_issue(struct sim *sim, struct gcp_state *st)
{
    struct gcp_token *t = kc_xcalloc(1, sizeof(*t));
    struct json_object *o = json_object_new_object();
    char *hex = rand_hex(sim, 16);

    t->token = kc_xasprintf("ya29.sim-%s", hex);
    t->expires_ms = sim_now_ms() + st->token_ttl_ms;
    t->next = st->tokens;
    st->tokens = t;
    jset(o, "access_token", jstr(t->token));
    jset(o, "expires_in",
         json_object_new_int64(
             (int64_t)(st->token_ttl_ms / 1000 ? st->token_ttl_ms / 1000 : 1)));
    jset(o, "token_type", jstr("Bearer"));
    free(hex);
    return o;
}

/* Answers 401/403 and returns false when REQ may not go on. PROJECT is the
 * project or bucket named by the request. */
static bool authorize(struct sim_req *req, const char *project,
                      const char *permission)
{
    const char *h = sim_req_header(req, "Authorization");

    if (!h || strncmp(h, "Bearer ", 7) != 0 || !token_live(st_of(req), h + 7)) {
        gerr(req, 401, "authError",
             "Request had invalid authentication credentials. Expected "
             "OAuth 2 access token, login cookie or other valid "
             "authentication credential.");
        return false;
    }
    if (project && strncmp(project, "denied-", 7) == 0) {
        gerr(req, 403, "forbidden",
             "Required '%s' permission for 'projects/%s'", permission, project);
        return false;
    }
    return true;
}

static void token_error(struct sim_req *req, const char *error,
                        const char *desc)
{
    struct json_object *o = json_object_new_object();

    jset(o, "error", jstr(error));
    jset(o, "error_description", jstr(desc));
    sim_resp_json(req, 400, o);
}

static bool aud_ok(struct sim_req *req, const char *aud)
{
    char *mine;
    const char *host = sim_req_header(req, "Host");
    bool ok;

    if (strcmp(aud, GCP_TOKEN_URL) == 0)
        return true;
    mine = kc_xasprintf("://%s/gcp/oauth2/token", host ? host : "");
    ok =
        strstr(aud, mine) != NULL &&
        (strncmp(aud, "http://", 7) == 0 || strncmp(aud, "https://", 8) == 0) &&
        strcmp(strstr(aud, mine), mine) == 0;
    free(mine);
    return ok;
}

static void h_token(struct sim *sim, struct sim_req *req)
{
    struct gcp_state *st = st_of(req);
    const char *gt = sim_req_form(req, "grant_type");
    const char *jwt = sim_req_form(req, "assertion");
    struct json_object *claims = NULL;
    struct kc_err err = { 0 };
    const char *iss, *aud, *scope;
    int64_t iat = 0, exp = 0, now = (int64_t)time(NULL);

    if (!gt || strcmp(gt, GCP_JWT_GRANT_TYPE) != 0) {
        char desc[160];

        snprintf(desc, sizeof(desc), "Invalid grant_type: %.100s",
                 gt ? gt : "");
        token_error(req, "unsupported_grant_type", desc);
        return;
    }
    if (!jwt ||
        gcp_jwt_verify(jwt, strlen(jwt), st->pub, NULL, &claims, &err) < 0) {
        token_error(req, "invalid_grant", "Invalid JWT Signature.");
        return;
    }
    iss = kc_json_opt_str(claims, "iss");
    aud = kc_json_opt_str(claims, "aud");
    scope = kc_json_opt_str(claims, "scope");
    if (kc_json_get_int(claims, "iat", &iat, &err) < 0 ||
        kc_json_get_int(claims, "exp", &exp, &err) < 0 || exp - iat > 3600 ||
        exp <= iat || iat > now + 300 || exp < now) {
        token_error(req, "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token (60 "
                    "minutes) and in a reasonable timeframe. Check your iat "
                    "and exp values in the JWT claim.");
    } else if (!iss || strcmp(iss, test_client_email) != 0) {
        token_error(req, "invalid_grant", "Invalid grant: account not found");
    } else if (!aud || !aud_ok(req, aud)) {
        token_error(req, "invalid_grant",
                    "Invalid JWT: Failed audience check.");
    } else if (!scope || !*scope) {
        token_error(req, "invalid_scope",
                    "Invalid OAuth scope or ID token audience provided.");
    } else {
        sim_resp_json(req, 200, token_issue(sim, st));
    }
    json_object_put(claims);
}

static void h_metadata_token(struct sim *sim, struct sim_req *req)
{
    const char *flavor = sim_req_header(req, "Metadata-Flavor");

    if (!flavor || strcmp(flavor, "Google") != 0) {
        sim_resp_body(req, 403, "text/html",
                      "Missing Metadata-Flavor:Google header.", 38);
        return;
    }
    sim_resp_json(req, 200, token_issue(sim, st_of(req)));
}

/* ---- operations ---- */

static struct gcp_op *op_find(struct gcp_state *st, const char *name)
{
    for (struct gcp_op *o = st->ops; o; o = o->next)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static struct gcp_op *op_by_request_id(struct gcp_state *st, const char *zone,
                                       const char *rid)
{
    for (struct gcp_op *o = st->ops; o; o = o->next)
        if (o->request_id && strcmp(o->request_id, rid) == 0 &&
            ((!zone && !o->zone) ||
             (zone && o->zone && strcmp(zone, o->zone) == 0)))
            return o;
    return NULL;
}

static void op_set_status(struct gcp_op *op, const char *status)
{
    char ts[64];

    now_rfc3339(ts);
    jset(op->json, "status", jstr(status));
    if (strcmp(status, "RUNNING") == 0) {
        jset(op->json, "startTime", jstr(ts));
        jset(op->json, "progress", json_object_new_int(50));
    } else if (strcmp(status, "DONE") == 0) {
        jset(op->json, "endTime", jstr(ts));
        jset(op->json, "progress", json_object_new_int(100));
    }
}

/* Ends OP in error (an operation-level error, as Compute reports a failed
 * asynchronous mutation). */
static void op_fail(struct gcp_op *op, int http, const char *code,
                    const char *msg)
{
    struct json_object *e = json_object_new_object();
    struct json_object *errs = json_object_new_array();
    struct json_object *one = json_object_new_object();

    jset(one, "code", jstr(code));
    jset(one, "message", jstr(msg));
    json_object_array_add(errs, one);
    jset(e, "errors", errs);
    jset(op->json, "error", e);
    jset(op->json, "httpErrorStatusCode", json_object_new_int(http));
    jset(op->json, "httpErrorMessage",
         jstr(http == 404 ? "NOT FOUND" : "BAD REQUEST"));
}

static void on_op_phase(struct sim *sim, void *arg);

static void op_schedule(struct sim *sim, struct gcp_op *op)
{
    struct gcp_state *st = st_sim(sim);
    uint32_t ms = (uint32_t)sim_rand_range(sim, st->op_min_ms, st->op_max_ms);

    sim_timer_add(sim, ms, on_op_phase, kc_xstrdup(op->name), free);
}

static void on_op_phase(struct sim *sim, void *arg)
{
    struct gcp_state *st = st_sim(sim);
    struct gcp_op *op = st ? op_find(st, arg) : NULL;
    const char *status;

    if (!op)
        return;
    status = jget_str(op->json, "status");
    if (strcmp(status, "PENDING") == 0) {
        op_set_status(op, "RUNNING");
        if (op->effect)
            op->effect(sim, op, false);
        op_schedule(sim, op);
    } else if (strcmp(status, "RUNNING") == 0) {
        if (op->effect && !jget(op->json, "error"))
            op->effect(sim, op, true);
        op_set_status(op, "DONE");
    }
}

/* Starts an operation of TYPE on KIND/TARGET (zonal when ZONE is set) and
 * answers it. EFFECT runs at RUNNING and DONE with ARG (taken). */
static struct gcp_op *op_start(struct sim *sim, struct sim_req *req,
                               const char *project, const char *zone,
                               const char *type, const char *kind,
                               const char *target, const char *target_link,
                               op_effect_fn effect, struct json_object *arg)
{
    struct gcp_state *st = st_of(req);
    struct gcp_op *op = kc_xcalloc(1, sizeof(*op));
    char *base = base_url(req), *hex = rand_hex(sim, 6), ts[64];
    const char *rid = sim_req_query(req, "requestId");
    struct sim_object *obj = sim_obj_find(sim, SVC, kind, target);

    now_rfc3339(ts);
    op->name = kc_xasprintf("operation-%llu-%s",
                            (unsigned long long)++st->op_next, hex);
    op->zone = zone ? kc_xstrdup(zone) : NULL;
    op->request_id = rid ? kc_xstrdup(rid) : NULL;
    op->kind = kc_xstrdup(kind);
    op->target = kc_xstrdup(target);
    op->effect = effect;
    op->arg = arg;
    op->json = json_object_new_object();
    jset(op->json, "kind", jstr("compute#operation"));
    jset(op->json, "id",
         json_object_new_string(obj ? obj->id : "0")); /* as the target */
    jset(op->json, "name", jstr(op->name));
    jset(op->json, "operationType", jstr(type));
    jset(op->json, "targetLink", jstr(target_link));
    if (obj)
        jset(op->json, "targetId", jstr(obj->id));
    jset(op->json, "status", jstr("PENDING"));
    jset(op->json, "progress", json_object_new_int(0));
    jset(op->json, "insertTime", jstr(ts));
    jset(op->json, "user", jstr(test_client_email));
    if (zone) {
        char *z = kc_xasprintf("%s/compute/v1/projects/%s/zones/%s", base,
                               project, zone);

        jset(op->json, "zone", jstr(z));
        free(z);
        z = kc_xasprintf("%s/compute/v1/projects/%s/zones/%s/operations/%s",
                         base, project, zone, op->name);
        jset(op->json, "selfLink", jstr(z));
        free(z);
    } else {
        char *s = kc_xasprintf("%s/compute/v1/projects/%s/global/operations/%s",
                               base, project, op->name);

        jset(op->json, "selfLink", jstr(s));
        free(s);
    }
    op->next = st->ops;
    st->ops = op;
    op_schedule(sim, op);
    sim_resp_json(req, 200, json_object_get(op->json));
    free(base);
    free(hex);
    return op;
}

/* requestId: a repeated id answers the first call's operation. Returns true
 * when it answered. */
static bool op_replay(struct sim_req *req, const char *zone)
{
    const char *rid = sim_req_query(req, "requestId");
    struct gcp_op *op;

    if (!rid)
        return false;
    if (strlen(rid) > REQID_MAX) {
        gerr(req, 400, "invalid", "Invalid value for field 'requestId': '%s'",
             rid);
        return true;
    }
    op = op_by_request_id(st_of(req), zone, rid);
    if (!op)
        return false;
    sim_resp_json(req, 200, json_object_get(op->json));
    return true;
}

static void op_free(struct gcp_op *op)
{
    free(op->name);
    free(op->zone);
    free(op->request_id);
    free(op->kind);
    free(op->target);
    json_object_put(op->json);
    json_object_put(op->arg);
    free(op);
}

static void h_op_get(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    const char *name = sim_req_param(req, "operation");
    struct gcp_op *op;

    (void)sim;
    if (!authorize(req, project, "compute.zoneOperations.get"))
        return;
    op = op_find(st_of(req), name);
    if (!op || (zone && (!op->zone || strcmp(op->zone, zone) != 0)) ||
        (!zone && op->zone)) {
        gerr(req, 404, "notFound",
             "The resource 'projects/%s/%s%s%soperations/%s' was not found",
             project, zone ? "zones/" : "global/", zone ? zone : "",
             zone ? "/" : "", name);
        return;
    }
    sim_resp_json(req, 200, json_object_get(op->json));
}

/* ---- serial port ---- */

static struct gcp_serial *serial_of(struct gcp_state *st, const char *inst,
                                    bool create)
{
    struct gcp_serial *s;

    for (s = st->serials; s; s = s->next)
        if (strcmp(s->instance, inst) == 0)
            return s;
    if (!create)
        return NULL;
    s = kc_xcalloc(1, sizeof(*s));
    s->instance = kc_xstrdup(inst);
    s->next = st->serials;
    st->serials = s;
    return s;
}

static void serial_drop(struct gcp_state *st, const char *inst)
{
    for (struct gcp_serial **p = &st->serials; *p; p = &(*p)->next)
        if (strcmp((*p)->instance, inst) == 0) {
            struct gcp_serial *s = *p;

            *p = s->next;
            free(s->instance);
            kc_buf_release(&s->buf);
            free(s);
            return;
        }
}

static void serial_add(struct gcp_state *st, const char *inst, const char *line)
{
    struct gcp_serial *s = serial_of(st, inst, true);

    if (kc_buf_addstr(&s->buf, line) < 0 || kc_buf_addch(&s->buf, '\n') < 0)
        KC_BUG("serial");
    if (s->buf.len > SERIAL_MAX) { /* keep the newest half */
        size_t cut = s->buf.len - SERIAL_MAX / 2;
        struct kc_buf nb = { 0 };

        if (kc_buf_add(&nb, s->buf.data + cut, s->buf.len - cut) < 0)
            KC_BUG("serial");
        kc_buf_release(&s->buf);
        s->buf = nb;
        s->base += (int64_t)cut;
    }
}

/* ---- lists ---- */

/* Minimal list filter (Compute's AIP-160 form, one comparison):
 * `labels.KEY = "VALUE"`, `labels.KEY=VALUE` or `name = "X"`. Anything else
 * (other operators, AND/OR, regular expressions) is refused with a 400 like
 * an invalid expression on the real API, never ignored. */
struct filter {
    bool on;
    char key[80];
    char val[80];
    bool is_name;
};

static int parse_filter(const char *f, struct filter *out)
{
    const char *eq;
    size_t kl, vl;
    const char *k, *v;

    memset(out, 0, sizeof(*out));
    if (!f || !*f)
        return 0;
    eq = strchr(f, '=');
    if (!eq)
        return -1;
    k = f;
    while (*k == ' ')
        k++;
    kl = (size_t)(eq - k);
    while (kl > 0 && k[kl - 1] == ' ')
        kl--;
    v = eq + 1;
    while (*v == ' ')
        v++;
    vl = strlen(v);
    while (vl > 0 && v[vl - 1] == ' ')
        vl--;
    if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v++;
        vl -= 2;
    }
    if (kl > 7 && strncmp(k, "labels.", 7) == 0 && kl - 7 < sizeof(out->key)) {
        /* A label key is [-_a-z0-9]: anything else here is another operator
         * ("!=", ">=", "<=") or syntax this simulator does not know. */
        for (size_t i = 7; i < kl; i++)
            if (!((k[i] >= 'a' && k[i] <= 'z') ||
                  (k[i] >= '0' && k[i] <= '9') || k[i] == '-' || k[i] == '_'))
                return -1;
        memcpy(out->key, k + 7, kl - 7);
    } else if (kl == 4 && strncmp(k, "name", 4) == 0) {
        out->is_name = true;
    } else {
        return -1;
    }
    if (vl >= sizeof(out->val) || memchr(v, '"', vl) || memchr(v, ' ', vl))
        return -1;
    memcpy(out->val, v, vl);
    out->on = true;
    return 0;
}

static bool filter_match(const struct filter *f, struct sim_object *o)
{
    const char *v;

    if (!f->on)
        return true;
    if (f->is_name)
        return strcmp(o->name, f->val) == 0;
    v = jget_str(jget(o->attrs, "labels"), f->key);
    return v && strcmp(v, f->val) == 0;
}

/* Answers a list of KIND objects (zonal: ZONE must match attrs.zone's last
 * segment) with maxResults/pageToken paging. */
/* One page of a list walk: objects that match are counted; those from
 * START on go into ITEMS until MAX of them; the next one sets BODY's
 * nextPageToken and page_add() returns false (stop). */
struct page {
    struct json_object *body, *items;
    long start, max, idx, n;
};

/* The start index that page token TOK ("pt-N", as page_add makes it)
 * names; false when it is not one. */
static bool page_start(const char *tok, long *start)
{
    char *end = NULL;

    return strncmp(tok, "pt-", 3) == 0 &&
           (*start = strtol(tok + 3, &end, 10)) >= 0 && !*end;
}

static bool page_add(struct page *pg, const struct sim_object *o)
{
    if (pg->idx++ < pg->start)
        return true;
    if (pg->n == pg->max) {
        char tok[32];

        snprintf(tok, sizeof(tok), "pt-%ld", pg->start + pg->n);
        jset(pg->body, "nextPageToken", jstr(tok));
        return false;
    }
    json_object_array_add(pg->items, jdup(o->attrs));
    pg->n++;
    return true;
}

static void list_objects(struct sim *sim, struct sim_req *req, const char *kind,
                         const char *list_kind, const char *zone,
                         const char *self)
{
    const char *ptok = sim_req_query(req, "pageToken");
    const char *mr = sim_req_query(req, "maxResults");
    struct json_object *body = json_object_new_object();
    struct json_object *items = json_object_new_array();
    struct filter flt;
    long max = st_sim(sim)->page_max, start = 0;
    struct page pg;
    char *end = NULL;

    if (mr) {
        max = strtol(mr, &end, 10);
        if (!*mr || *end || max < 0 || max > LIST_MAX) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'maxResults': '%s'. Must be in the "
                 "range [0, 500].",
                 mr);
            goto fail;
        }
        if (max == 0)
            max = st_sim(sim)->page_max;
    }
    if (ptok && !page_start(ptok, &start)) {
        gerr(req, 400, "invalid", "Invalid value for field 'pageToken': '%s'",
             ptok);
        goto fail;
    }
    if (parse_filter(sim_req_query(req, "filter"), &flt) < 0) {
        gerr(req, 400, "invalid", "Invalid list filter expression '%s'.",
             sim_req_query(req, "filter"));
        goto fail;
    }
    pg = (struct page){ body, items, start, max, 0, 0 };
    for (struct sim_object *o = sim_obj_next(sim, NULL, SVC, kind); o;
         o = sim_obj_next(sim, o, SVC, kind)) {
        if (zone && strcmp(last_seg(jget_str(o->attrs, "zone")), zone) != 0)
            continue;
        if (!filter_match(&flt, o))
            continue;
        if (!page_add(&pg, o))
            break;
    }
    jset(body, "kind", jstr(list_kind));
    jset(body, "items", items);
    jset(body, "selfLink", jstr(self));
    sim_resp_json(req, 200, body);
    return;
fail:
    json_object_put(items);
    json_object_put(body);
}

/* ---- compute: common ---- */

/* The zone's own URL (an object's "zone"). */
static char *zone_link(struct sim_req *req, const char *project,
                       const char *zone)
{
    char *base = base_url(req);
    char *s =
        kc_xasprintf("%s/compute/v1/projects/%s/zones/%s", base, project, zone);

    free(base);
    return s;
}

static char *zonal_link(struct sim_req *req, const char *project,
                        const char *zone, const char *coll, const char *name)
{
    char *base = base_url(req);
    char *s = kc_xasprintf("%s/compute/v1/projects/%s/zones/%s/%s/%s", base,
                           project, zone, coll, name);

    free(base);
    return s;
}

static char *global_link(struct sim_req *req, const char *project,
                         const char *coll, const char *name)
{
    char *base = base_url(req);
    char *s = kc_xasprintf("%s/compute/v1/projects/%s/global/%s/%s", base,
                           project, coll, name);

    free(base);
    return s;
}

static void not_found(struct sim_req *req, const char *project,
                      const char *zone, const char *coll, const char *name)
{
    if (zone)
        gerr(req, 404, "notFound",
             "The resource 'projects/%s/zones/%s/%s/%s' was not found", project,
             zone, coll, name);
    else
        gerr(req, 404, "notFound",
             "The resource 'projects/%s/global/%s/%s' was not found", project,
             coll, name);
}

static void already_exists(struct sim_req *req, const char *project,
                           const char *zone, const char *coll, const char *name)
{
    if (zone)
        gerr(req, 409, "alreadyExists",
             "The resource 'projects/%s/zones/%s/%s/%s' already exists",
             project, zone, coll, name);
    else
        gerr(req, 409, "alreadyExists",
             "The resource 'projects/%s/global/%s/%s' already exists", project,
             coll, name);
}

/* The object KIND/NAME in ZONE (NULL: global), or NULL. */
static struct sim_object *find_in(struct sim *sim, const char *kind,
                                  const char *name, const char *zone)
{
    struct sim_object *o = sim_obj_find(sim, SVC, kind, name);

    if (o && zone && strcmp(last_seg(jget_str(o->attrs, "zone")), zone) != 0)
        return NULL;
    return o;
}

/* The get, list and delete of a compute object: KIND (also the name of its
 * path parameter) in collection COLL, zonal when the route has {zone},
 * after the caller's IAM PERM. */
static void object_get(struct sim *sim, struct sim_req *req, const char *kind,
                       const char *coll, const char *perm)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    const char *name = sim_req_param(req, kind);
    struct sim_object *o;

    if (!authorize(req, project, perm))
        return;
    o = find_in(sim, kind, name, zone);
    if (!o)
        not_found(req, project, zone, coll, name);
    else
        sim_resp_json(req, 200, jdup(o->attrs));
}

static void object_list(struct sim *sim, struct sim_req *req, const char *kind,
                        const char *coll, const char *list_kind,
                        const char *perm)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    char *self;

    if (!authorize(req, project, perm))
        return;
    self = zone ? zonal_link(req, project, zone, coll, "")
                : global_link(req, project, coll, "");
    self[strlen(self) - 1] = '\0';
    list_objects(sim, req, kind, list_kind, zone, self);
    free(self);
}

/* A global object's delete: an operation running EFF. */
static void global_delete(struct sim *sim, struct sim_req *req,
                          const char *kind, const char *coll, const char *perm,
                          op_effect_fn eff)
{
    const char *project = sim_req_param(req, "project");
    const char *name = sim_req_param(req, kind);
    struct sim_object *o;

    if (!authorize(req, project, perm) || op_replay(req, NULL))
        return;
    o = sim_obj_find(sim, SVC, kind, name);
    if (!o) {
        not_found(req, project, NULL, coll, name);
        return;
    }
    op_start(sim, req, project, NULL, "delete", kind, name,
             jget_str(o->attrs, "selfLink"), eff, NULL);
}

static void set_status(struct sim *sim, const char *kind, const char *name,
                       const char *status)
{
    struct sim_object *o = sim_obj_find(sim, SVC, kind, name);

    if (o)
        jset(o->attrs, "status", jstr(status));
}

/* ---- disks ---- */

static void bad_name(struct sim_req *req, const char *field, const char *name)
{
    gerr(req, 400, "invalid",
         "Invalid value for field '%s': '%s'. Must be a match of regex "
         "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
         field, name ? name : "");
}

/* The image named by a sourceImage URL; answers 404/400 and returns NULL
 * when it is missing or not READY. */
static struct sim_object *image_ready(struct sim *sim, struct sim_req *req,
                                      const char *project, const char *url)
{
    struct sim_object *img = sim_obj_find(sim, SVC, "image", last_seg(url));

    if (!img) {
        not_found(req, project, NULL, "images", last_seg(url));
        return NULL;
    }
    if (strcmp(jget_str(img->attrs, "status"), "READY") != 0) {
        gerr(req, 400, "resourceNotReady",
             "The resource 'projects/%s/global/images/%s' is not ready",
             project, last_seg(url));
        return NULL;
    }
    return img;
}

/* Checks a new disk (name, labels, image); answers and returns false when
 * it cannot be made. */
static bool disk_check(struct sim *sim, struct sim_req *req,
                       const char *project, const char *zone, const char *name,
                       const char *image, struct json_object *labels)
{
    char why[160];

    if (!valid_name(name)) {
        bad_name(req, "resource.name", name);
        return false;
    }
    if (!valid_labels(labels, why, sizeof(why))) {
        gerr(req, 400, "invalid", "Invalid value for field 'labels': %s", why);
        return false;
    }
    if (image && !image_ready(sim, req, project, image))
        return false;
    if (sim_obj_find(sim, SVC, "disk", name)) {
        already_exists(req, project, zone, "disks", name);
        return false;
    }
    return true;
}

/* Makes a disk object (status CREATING); disk_check() passed. */
static struct sim_object *disk_make(struct sim *sim, struct sim_req *req,
                                    const char *project, const char *zone,
                                    const char *name, int64_t size_gb,
                                    const char *type, const char *image,
                                    struct json_object *labels)
{
    struct sim_object *d = sim_obj_add(sim, SVC, "disk", name, NULL);
    char *link, ts[64], size[24];

    now_rfc3339(ts);
    snprintf(size, sizeof(size), "%lld",
             (long long)(size_gb > 0 ? size_gb : 10));
    jset(d->attrs, "kind", jstr("compute#disk"));
    jset(d->attrs, "id", jstr(d->id));
    jset(d->attrs, "name", jstr(name));
    jset(d->attrs, "creationTimestamp", jstr(ts));
    jset(d->attrs, "sizeGb", jstr(size));
    link = zonal_link(req, project, zone, "diskTypes",
                      type ? last_seg(type) : "pd-standard");
    jset(d->attrs, "type", jstr(link));
    free(link);
    link = zone_link(req, project, zone);
    jset(d->attrs, "zone", jstr(link));
    free(link);
    if (image) {
        link = global_link(req, project, "images", last_seg(image));
        jset(d->attrs, "sourceImage", jstr(link));
        free(link);
    }
    jset(d->attrs, "status", jstr("CREATING"));
    jset(d->attrs, "labels", labels ? jdup(labels) : json_object_new_object());
    set_label_fp(d->attrs);
    link = zonal_link(req, project, zone, "disks", name);
    jset(d->attrs, "selfLink", jstr(link));
    free(link);
    jset(d->attrs, "users", json_object_new_array());
    sync_labels(d);
    return d;
}

static void disk_user_add(struct sim_object *d, const char *inst_link)
{
    json_object_array_add(jget(d->attrs, "users"), jstr(inst_link));
}

static void disk_user_del(struct sim_object *d, const char *inst_link)
{
    struct json_object *u = jget(d->attrs, "users");
    struct json_object *nu = json_object_new_array();

    for (size_t i = 0; u && i < json_object_array_length(u); i++) {
        const char *s = json_object_get_string(json_object_array_get_idx(u, i));

        if (strcmp(s, inst_link) != 0)
            json_object_array_add(nu, jstr(s));
    }
    jset(d->attrs, "users", nu);
}

static void eff_disk_insert(struct sim *sim, struct gcp_op *op, bool done)
{
    if (done)
        set_status(sim, "disk", op->target, "READY");
}

static void eff_disk_delete(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *d = sim_obj_find(sim, SVC, "disk", op->target);

    if (!d)
        return;
    if (!done)
        jset(d->attrs, "status", jstr("DELETING"));
    else
        sim_obj_remove(sim, d);
}

static void h_disk_insert(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    struct json_object *body;
    const char *name, *image;
    int64_t size = 0;
    char *link;

    if (!authorize(req, project, "compute.disks.create") ||
        op_replay(req, zone) || !(body = sim_req_json(req)))
        return;
    name = jget_str(body, "name");
    image = jget_str(body, "sourceImage");
    if (jget(body, "sizeGb"))
        size = json_object_get_int64(jget(body, "sizeGb"));
    if (!disk_check(sim, req, project, zone, name, image, jget(body, "labels")))
        return;
    disk_make(sim, req, project, zone, name, size, jget_str(body, "type"),
              image, jget(body, "labels"));
    link = zonal_link(req, project, zone, "disks", name);
    op_start(sim, req, project, zone, "insert", "disk", name, link,
             eff_disk_insert, NULL);
    free(link);
}

static void h_disk_get(struct sim *sim, struct sim_req *req)
{
    object_get(sim, req, "disk", "disks", "compute.disks.get");
}

static void h_disk_list(struct sim *sim, struct sim_req *req)
{
    object_list(sim, req, "disk", "disks", "compute#diskList",
                "compute.disks.list");
}

static void h_disk_delete(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    const char *name = sim_req_param(req, "disk");
    struct sim_object *d;
    struct json_object *users;
    char *link;

    if (!authorize(req, project, "compute.disks.delete") ||
        op_replay(req, zone))
        return;
    d = find_in(sim, "disk", name, zone);
    if (!d) {
        not_found(req, project, zone, "disks", name);
        return;
    }
    users = jget(d->attrs, "users");
    if (users && json_object_array_length(users) > 0) {
        gerr(req, 400, "resourceInUseByAnotherResource",
             "The disk resource 'projects/%s/zones/%s/disks/%s' is already "
             "being used by '%s'",
             project, zone, name,
             json_object_get_string(json_object_array_get_idx(users, 0)));
        return;
    }
    link = zonal_link(req, project, zone, "disks", name);
    op_start(sim, req, project, zone, "delete", "disk", name, link,
             eff_disk_delete, NULL);
    free(link);
}

/* ---- instances ---- */

static void ip_of(uint64_t n, unsigned a, char out[20])
{
    snprintf(out, 20, "%u.%u.%u.%u", a, (unsigned)((n >> 16) & 255),
             (unsigned)((n >> 8) & 255), (unsigned)(n & 255));
}

static struct sim_object *instance_of(struct sim *sim, struct sim_req *req,
                                      const char *project, const char *zone,
                                      const char *name)
{
    struct sim_object *o = find_in(sim, "instance", name, zone);

    if (!o)
        not_found(req, project, zone, "instances", name);
    return o;
}

static void boot_lines(struct gcp_state *st, const char *inst)
{
    serial_add(st, inst, "SeaBIOS (version 1.8.2-google)");
    serial_add(st, inst, "Booting from Hard Disk 0...");
    serial_add(st, inst, "dstack: TDX guest, measured boot");
    serial_add(st, inst, "app-compose.sh: starting containers");
}

/* The instance's disks: on delete, auto-deleted disks go, others lose the
 * instance as user. */
static void instance_release_disks(struct sim *sim, struct sim_object *inst)
{
    struct json_object *disks = jget(inst->attrs, "disks");
    const char *self = jget_str(inst->attrs, "selfLink");

    for (size_t i = 0; disks && i < json_object_array_length(disks); i++) {
        struct json_object *ad = json_object_array_get_idx(disks, i);
        struct sim_object *d =
            sim_obj_find(sim, SVC, "disk", last_seg(jget_str(ad, "source")));

        if (!d)
            continue;
        if (json_object_get_boolean(jget(ad, "autoDelete")))
            sim_obj_remove(sim, d);
        else
            disk_user_del(d, self);
    }
}

static void eff_instance_insert(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);
    struct json_object *disks;

    if (!o)
        return;
    if (!done) {
        jset(o->attrs, "status", jstr("STAGING"));
        return;
    }
    disks = jget(o->attrs, "disks");
    for (size_t i = 0; disks && i < json_object_array_length(disks); i++)
        set_status(
            sim, "disk",
            last_seg(jget_str(json_object_array_get_idx(disks, i), "source")),
            "READY");
    jset(o->attrs, "status", jstr("RUNNING"));
    boot_lines(st_sim(sim), op->target);
}

static void eff_instance_delete(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);

    if (!o)
        return;
    if (!done) {
        jset(o->attrs, "status", jstr("STOPPING"));
        return;
    }
    instance_release_disks(sim, o);
    serial_drop(st_sim(sim), op->target);
    sim_obj_remove(sim, o);
}

static void eff_instance_stop(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);

    if (!o)
        return;
    jset(o->attrs, "status", jstr(done ? "TERMINATED" : "STOPPING"));
    if (done)
        serial_add(st_sim(sim), op->target, "reboot: Power down");
}

static void eff_instance_start(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);

    if (!o)
        return;
    jset(o->attrs, "status", jstr(done ? "RUNNING" : "STAGING"));
    if (done)
        boot_lines(st_sim(sim), op->target);
}

static void eff_attach(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);
    struct sim_object *d;

    if (!o || !done)
        return;
    d = sim_obj_find(sim, SVC, "disk", last_seg(jget_str(op->arg, "source")));
    if (!d) {
        op_fail(op, 404, "RESOURCE_NOT_FOUND", "The disk went away");
        return;
    }
    json_object_array_add(jget(o->attrs, "disks"), jdup(op->arg));
    disk_user_add(d, jget_str(o->attrs, "selfLink"));
}

static void eff_detach(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);
    const char *dev = json_object_get_string(op->arg);
    struct json_object *disks, *nd;

    if (!o || !done)
        return;
    disks = jget(o->attrs, "disks");
    nd = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(disks); i++) {
        struct json_object *ad = json_object_array_get_idx(disks, i);

        if (strcmp(jget_str(ad, "deviceName"), dev) == 0) {
            struct sim_object *d = sim_obj_find(
                sim, SVC, "disk", last_seg(jget_str(ad, "source")));

            if (d)
                disk_user_del(d, jget_str(o->attrs, "selfLink"));
            continue;
        }
        json_object_array_add(nd, json_object_get(ad));
    }
    jset(o->attrs, "disks", nd);
}

static void eff_set_labels(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, op->kind, op->target);

    if (!o || !done)
        return;
    jset(o->attrs, "labels", jdup(op->arg));
    set_label_fp(o->attrs);
    sync_labels(o);
}

static void eff_set_tags(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *o = sim_obj_find(sim, SVC, "instance", op->target);
    struct json_object *tags;
    char *fp;

    if (!o || !done)
        return;
    tags = json_object_new_object();
    jset(tags, "items", jdup(op->arg));
    fp = fingerprint(op->arg);
    jset(tags, "fingerprint", jstr(fp));
    free(fp);
    jset(o->attrs, "tags", tags);
}

/* Builds the attachedDisk list of a new instance, creating its disks.
 * Answers and returns NULL on a bad spec. */
static struct json_object *instance_disks(struct sim *sim, struct sim_req *req,
                                          const char *project, const char *zone,
                                          const char *inst,
                                          struct json_object *specs)
{
    struct json_object *out = json_object_new_array();
    size_t n = specs ? json_object_array_length(specs) : 0;
    char *self = zonal_link(req, project, zone, "instances", inst);

    if (n == 0 || !json_object_is_type(specs, json_type_array)) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource.disks': ''. At least one "
             "disk must be specified.");
        goto fail;
    }
    /* Check everything first, so a refused insert leaves nothing behind. */
    for (size_t i = 0; i < n; i++) {
        struct json_object *s = json_object_array_get_idx(specs, i);
        struct json_object *ip = jget(s, "initializeParams");
        bool boot = json_object_get_boolean(jget(s, "boot"));
        const char *src = jget_str(s, "source");

        if (boot != (i == 0)) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'resource.disks[%zu].boot': the "
                 "first disk, and only it, must be the boot disk",
                 i);
            goto fail;
        }
        if (src) {
            struct sim_object *d = find_in(sim, "disk", last_seg(src), zone);
            struct json_object *u = d ? jget(d->attrs, "users") : NULL;

            if (!d) {
                not_found(req, project, zone, "disks", last_seg(src));
                goto fail;
            }
            if (u && json_object_array_length(u) > 0) {
                gerr(req, 400, "resourceInUseByAnotherResource",
                     "The disk resource 'projects/%s/zones/%s/disks/%s' is "
                     "already being used by '%s'",
                     project, zone, last_seg(src),
                     json_object_get_string(json_object_array_get_idx(u, 0)));
                goto fail;
            }
        } else if (ip) {
            const char *dn = jget_str(ip, "diskName");
            const char *img = jget_str(ip, "sourceImage");

            if (boot && !img) {
                gerr(req, 400, "invalid",
                     "Invalid value for field "
                     "'resource.disks[0].initializeParams.sourceImage': ''. "
                     "A boot disk needs a source image.");
                goto fail;
            }
            if (!disk_check(sim, req, project, zone, dn ? dn : inst, img,
                            jget(ip, "labels")))
                goto fail;
            for (size_t j = 0; j < i; j++) {
                struct json_object *p = jget(
                    json_object_array_get_idx(specs, j), "initializeParams");
                const char *pn = p ? jget_str(p, "diskName") : NULL;

                if (strcmp(pn ? pn : inst, dn ? dn : inst) == 0) {
                    already_exists(req, project, zone, "disks", dn ? dn : inst);
                    goto fail;
                }
            }
        } else {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'resource.disks[%zu]': either "
                 "source or initializeParams is required",
                 i);
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct json_object *s = json_object_array_get_idx(specs, i);
        struct json_object *ip = jget(s, "initializeParams");
        struct json_object *ad = json_object_new_object();
        struct sim_object *d;
        const char *dev = jget_str(s, "deviceName");

        if (jget_str(s, "source")) {
            d = find_in(sim, "disk", last_seg(jget_str(s, "source")), zone);
        } else {
            const char *dn = jget_str(ip, "diskName");
            int64_t size = jget(ip, "diskSizeGb")
                               ? json_object_get_int64(jget(ip, "diskSizeGb"))
                               : 0;

            d = disk_make(sim, req, project, zone, dn ? dn : inst, size,
                          jget_str(ip, "diskType"), jget_str(ip, "sourceImage"),
                          jget(ip, "labels"));
        }
        disk_user_add(d, self);
        jset(ad, "kind", jstr("compute#attachedDisk"));
        jset(ad, "type", jstr("PERSISTENT"));
        jset(ad, "mode", jstr("READ_WRITE"));
        jset(ad, "source", jstr(jget_str(d->attrs, "selfLink")));
        jset(ad, "deviceName", jstr(dev ? dev : d->name));
        jset(ad, "index", json_object_new_int((int)i));
        jset(ad, "boot", json_object_new_boolean(i == 0));
        jset(ad, "autoDelete",
             json_object_new_boolean(
                 json_object_get_boolean(jget(s, "autoDelete"))));
        jset(ad, "interface", jstr("NVME"));
        jset(ad, "diskSizeGb", jstr(jget_str(d->attrs, "sizeGb")));
        if (jget_str(d->attrs, "sourceImage")) {
            struct sim_object *img = sim_obj_find(
                sim, SVC, "image", last_seg(jget_str(d->attrs, "sourceImage")));

            if (img && jget(img->attrs, "guestOsFeatures"))
                jset(ad, "guestOsFeatures",
                     jdup(jget(img->attrs, "guestOsFeatures")));
        }
        json_object_array_add(out, ad);
    }
    free(self);
    return out;
fail:
    free(self);
    json_object_put(out);
    return NULL;
}

static void h_instance_insert(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    struct gcp_state *st = st_of(req);
    struct json_object *body, *disks, *nics, *nic, *ac, *v, *tags, *md;
    struct json_object *cic, *sched;
    struct sim_object *o;
    const char *name, *mt, *cit, *ohm;
    char *link, ts[64], ip[20], why[160], *fp;

    if (!authorize(req, project, "compute.instances.create") ||
        op_replay(req, zone) || !(body = sim_req_json(req)))
        return;
    name = jget_str(body, "name");
    mt = jget_str(body, "machineType");
    if (!valid_name(name)) {
        bad_name(req, "resource.name", name);
        return;
    }
    if (find_in(sim, "instance", name, NULL)) {
        already_exists(req, project, zone, "instances", name);
        return;
    }
    if (!mt || !*last_seg(mt)) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource.machineType': ''. Machine "
             "type must be specified.");
        return;
    }
    if (!valid_labels(jget(body, "labels"), why, sizeof(why))) {
        gerr(req, 400, "invalid", "Invalid value for field 'labels': %s", why);
        return;
    }
    cic = jget(body, "confidentialInstanceConfig");
    cit = jget_str(cic, "confidentialInstanceType");
    sched = jget(body, "scheduling");
    ohm = jget_str(sched, "onHostMaintenance");
    if (cit && strcmp(cit, "TDX") != 0 && strcmp(cit, "SEV") != 0 &&
        strcmp(cit, "SEV_SNP") != 0) {
        gerr(req, 400, "invalid",
             "Invalid value for field "
             "'resource.confidentialInstanceConfig.confidentialInstanceType': "
             "'%s'",
             cit);
        return;
    }
    if (cit && strcmp(cit, "TDX") == 0) {
        if (strncmp(last_seg(mt), "c3-", 3) != 0) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'resource.machineType': '%s'. "
                 "Confidential Computing type TDX is not supported for this "
                 "machine type.",
                 mt);
            return;
        }
        if (!ohm || strcmp(ohm, "TERMINATE") != 0) {
            gerr(req, 400, "invalid",
                 "Invalid value for field "
                 "'resource.scheduling.onHostMaintenance': '%s'. Instances "
                 "with Confidential Computing enabled must use "
                 "onHostMaintenance TERMINATE.",
                 ohm ? ohm : "MIGRATE");
            return;
        }
    }
    disks = instance_disks(sim, req, project, zone, name, jget(body, "disks"));
    if (!disks)
        return;
    o = sim_obj_add(sim, SVC, "instance", name, NULL);
    now_rfc3339(ts);
    jset(o->attrs, "kind", jstr("compute#instance"));
    jset(o->attrs, "id", jstr(o->id));
    jset(o->attrs, "name", jstr(name));
    jset(o->attrs, "creationTimestamp", jstr(ts));
    if (jget_str(body, "description"))
        jset(o->attrs, "description", jstr(jget_str(body, "description")));
    link = zonal_link(req, project, zone, "machineTypes", last_seg(mt));
    jset(o->attrs, "machineType", jstr(link));
    free(link);
    jset(o->attrs, "status", jstr("PROVISIONING"));
    link = zone_link(req, project, zone);
    jset(o->attrs, "zone", jstr(link));
    free(link);
    link = zonal_link(req, project, zone, "instances", name);
    jset(o->attrs, "selfLink", jstr(link));
    jset(o->attrs, "disks", disks);
    /* Network: one NIC; an access config gets a distinct loopback natIP. */
    nics = json_object_new_array();
    nic = json_object_new_object();
    v = json_object_array_get_idx(jget(body, "networkInterfaces"), 0);
    {
        const char *net = jget_str(v, "network");
        char *nl = global_link(req, project, "networks",
                               net ? last_seg(net) : "default");

        jset(nic, "network", jstr(nl));
        free(nl);
        if (jget_str(v, "subnetwork"))
            jset(nic, "subnetwork", jstr(jget_str(v, "subnetwork")));
    }
    st->ip_next++;
    {
        char nip[20];

        snprintf(nip, sizeof(nip), "10.128.%u.%u",
                 (unsigned)((st->ip_next >> 8) & 255),
                 (unsigned)(st->ip_next & 255));
        jset(nic, "networkIP", jstr(nip));
    }
    jset(nic, "name", jstr("nic0"));
    if (jget(v, "accessConfigs") &&
        json_object_array_length(jget(v, "accessConfigs")) > 0) {
        struct json_object *acs = json_object_new_array();

        ac = json_object_new_object();
        jset(ac, "kind", jstr("compute#accessConfig"));
        jset(ac, "type", jstr("ONE_TO_ONE_NAT"));
        jset(ac, "name", jstr("External NAT"));
        ip_of(0x010000 + st->ip_next, 127, ip);
        jset(ac, "natIP", jstr(ip));
        jset(ac, "networkTier", jstr("PREMIUM"));
        json_object_array_add(acs, ac);
        jset(nic, "accessConfigs", acs);
    }
    json_object_array_add(nics, nic);
    jset(o->attrs, "networkInterfaces", nics);
    /* Tags, labels, metadata with their fingerprints. */
    tags = json_object_new_object();
    v = jget(jget(body, "tags"), "items");
    jset(tags, "items", v ? jdup(v) : json_object_new_array());
    fp = fingerprint(jget(tags, "items"));
    jset(tags, "fingerprint", jstr(fp));
    free(fp);
    jset(o->attrs, "tags", tags);
    v = jget(body, "labels");
    jset(o->attrs, "labels", v ? jdup(v) : json_object_new_object());
    set_label_fp(o->attrs);
    sync_labels(o);
    md = json_object_new_object();
    jset(md, "kind", jstr("compute#metadata"));
    v = jget(jget(body, "metadata"), "items");
    if (v)
        jset(md, "items", jdup(v));
    fp = fingerprint(v);
    jset(md, "fingerprint", jstr(fp));
    free(fp);
    jset(o->attrs, "metadata", md);
    if (jget(body, "serviceAccounts"))
        jset(o->attrs, "serviceAccounts", jdup(jget(body, "serviceAccounts")));
    sched = sched ? jdup(sched) : json_object_new_object();
    if (!jget(sched, "onHostMaintenance"))
        jset(sched, "onHostMaintenance", jstr("MIGRATE"));
    if (!jget(sched, "automaticRestart"))
        jset(sched, "automaticRestart", json_object_new_boolean(true));
    jset(o->attrs, "scheduling", sched);
    if (cic)
        jset(o->attrs, "confidentialInstanceConfig", jdup(cic));
    jset(o->attrs, "cpuPlatform", jstr("Intel Sapphire Rapids"));
    op_start(sim, req, project, zone, "insert", "instance", name, link,
             eff_instance_insert, NULL);
    free(link);
}

static void h_instance_get(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    struct sim_object *o;

    if (!authorize(req, project, "compute.instances.get"))
        return;
    o = instance_of(sim, req, project, zone, sim_req_param(req, "instance"));
    if (o)
        sim_resp_json(req, 200, jdup(o->attrs));
}

static void h_instance_list(struct sim *sim, struct sim_req *req)
{
    object_list(sim, req, "instance", "instances", "compute#instanceList",
                "compute.instances.list");
}

/* Instance methods: delete, stop, start, attachDisk, detachDisk, setLabels,
 * setTags. */
static void instance_method(struct sim *sim, struct sim_req *req,
                            const char *type, const char *perm,
                            op_effect_fn eff)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    const char *name = sim_req_param(req, "instance");
    struct json_object *arg = NULL, *body;
    struct sim_object *o;

    if (!authorize(req, project, perm) || op_replay(req, zone))
        return;
    o = instance_of(sim, req, project, zone, name);
    if (!o)
        return;
    if (strcmp(type, "attachDisk") == 0) {
        struct sim_object *d;
        struct json_object *disks = jget(o->attrs, "disks"), *u;
        const char *src, *dev;

        if (!(body = sim_req_json(req)))
            return;
        src = jget_str(body, "source");
        d = src ? find_in(sim, "disk", last_seg(src), zone) : NULL;
        if (!d) {
            not_found(req, project, zone, "disks", src ? last_seg(src) : "");
            return;
        }
        u = jget(d->attrs, "users");
        if (json_object_array_length(u) > 0) {
            gerr(req, 400, "resourceInUseByAnotherResource",
                 "The disk resource 'projects/%s/zones/%s/disks/%s' is "
                 "already being used by '%s'",
                 project, zone, d->name,
                 json_object_get_string(json_object_array_get_idx(u, 0)));
            return;
        }
        dev = jget_str(body, "deviceName");
        if (!dev)
            dev = d->name;
        for (size_t i = 0; i < json_object_array_length(disks); i++)
            if (strcmp(
                    jget_str(json_object_array_get_idx(disks, i), "deviceName"),
                    dev) == 0) {
                gerr(req, 400, "invalid",
                     "Invalid value for field 'resource.deviceName': '%s'. "
                     "A disk with this device name is already attached.",
                     dev);
                return;
            }
        arg = json_object_new_object();
        jset(arg, "kind", jstr("compute#attachedDisk"));
        jset(arg, "type", jstr("PERSISTENT"));
        jset(arg, "mode", jstr("READ_WRITE"));
        jset(arg, "source", jstr(jget_str(d->attrs, "selfLink")));
        jset(arg, "deviceName", jstr(dev));
        jset(arg, "index",
             json_object_new_int((int)json_object_array_length(disks)));
        jset(arg, "boot", json_object_new_boolean(false));
        jset(arg, "autoDelete",
             json_object_new_boolean(
                 json_object_get_boolean(jget(body, "autoDelete"))));
        jset(arg, "interface", jstr("NVME"));
        jset(arg, "diskSizeGb", jstr(jget_str(d->attrs, "sizeGb")));
    } else if (strcmp(type, "detachDisk") == 0) {
        const char *dev = sim_req_query(req, "deviceName");
        struct json_object *disks = jget(o->attrs, "disks");
        bool found = false;

        for (size_t i = 0; dev && i < json_object_array_length(disks); i++) {
            struct json_object *ad = json_object_array_get_idx(disks, i);

            if (strcmp(jget_str(ad, "deviceName"), dev) == 0) {
                if (json_object_get_boolean(jget(ad, "boot"))) {
                    gerr(req, 400, "invalid",
                         "Invalid value for field 'deviceName': '%s'. The "
                         "boot disk cannot be detached.",
                         dev);
                    return;
                }
                found = true;
            }
        }
        if (!found) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'deviceName': '%s'. No attached "
                 "disk found with this device name.",
                 dev ? dev : "");
            return;
        }
        arg = jstr(dev);
    } else if (strcmp(type, "setLabels") == 0) {
        const char *fp;
        char why[160];

        if (!(body = sim_req_json(req)))
            return;
        fp = jget_str(body, "labelFingerprint");
        if (!fp || strcmp(fp, jget_str(o->attrs, "labelFingerprint")) != 0) {
            gerr(req, 412, "conditionNotMet",
                 "Labels fingerprint either invalid or resource labels have "
                 "changed");
            return;
        }
        if (!valid_labels(jget(body, "labels"), why, sizeof(why))) {
            gerr(req, 400, "invalid", "Invalid value for field 'labels': %s",
                 why);
            return;
        }
        arg = jget(body, "labels") ? jdup(jget(body, "labels"))
                                   : json_object_new_object();
    } else if (strcmp(type, "setTags") == 0) {
        const char *fp;

        if (!(body = sim_req_json(req)))
            return;
        fp = jget_str(body, "fingerprint");
        if (!fp ||
            strcmp(fp, jget_str(jget(o->attrs, "tags"), "fingerprint")) != 0) {
            gerr(req, 412, "conditionNotMet", "Invalid fingerprint.");
            return;
        }
        arg = jget(body, "items") ? jdup(jget(body, "items"))
                                  : json_object_new_array();
    }
    op_start(sim, req, project, zone, type, "instance", name,
             jget_str(o->attrs, "selfLink"), eff, arg);
}

/* The instance methods: DELETE .../instances/{instance} ("delete") and POST
 * .../instances/{instance}/VERB, each an operation of type VERB needing the
 * permission compute.instances.VERB. */
static const struct {
    const char *verb;
    op_effect_fn eff;
} instance_verbs[] = {
    { "delete", eff_instance_delete }, { "stop", eff_instance_stop },
    { "start", eff_instance_start },   { "attachDisk", eff_attach },
    { "detachDisk", eff_detach },      { "setLabels", eff_set_labels },
    { "setTags", eff_set_tags },
};

static void h_instance_verb(struct sim *sim, struct sim_req *req)
{
    const char *verb = strrchr(sim_req_path(req), '/') + 1;
    char perm[64];

    if (strcmp(sim_req_method(req), "DELETE") == 0)
        verb = "delete";
    for (size_t i = 0; i < KC_ARRAY_SIZE(instance_verbs); i++) {
        if (strcmp(verb, instance_verbs[i].verb) == 0) {
            snprintf(perm, sizeof(perm), "compute.instances.%s", verb);
            instance_method(sim, req, instance_verbs[i].verb, perm,
                            instance_verbs[i].eff);
            return;
        }
    }
    gerr(req, 404, "notFound", "Unknown instance method.");
}

static void h_instance_serial(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *zone = sim_req_param(req, "zone");
    const char *name = sim_req_param(req, "instance");
    const char *qs = sim_req_query(req, "start");
    const char *qp = sim_req_query(req, "port");
    struct gcp_serial *s;
    struct json_object *body;
    struct sim_object *o;
    int64_t start = 0, end, base;
    char *end_p = NULL, *link;

    if (!authorize(req, project, "compute.instances.getSerialPortOutput"))
        return;
    o = instance_of(sim, req, project, zone, name);
    if (!o)
        return;
    if (qp && strcmp(qp, "1") != 0 && strcmp(qp, "2") != 0 &&
        strcmp(qp, "3") != 0 && strcmp(qp, "4") != 0) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'port': '%s'. Must be in the range [1, "
             "4].",
             qp);
        return;
    }
    if (qs) {
        start = strtoll(qs, &end_p, 10);
        if (!*qs || *end_p) {
            gerr(req, 400, "invalid", "Invalid value for field 'start': '%s'",
                 qs);
            return;
        }
    }
    s = (!qp || strcmp(qp, "1") == 0) ? serial_of(st_of(req), name, false)
                                      : NULL;
    base = s ? s->base : 0;
    end = base + (int64_t)(s ? s->buf.len : 0);
    if (start < base)
        start = base; /* older output is gone: start moves forward */
    if (start > end)
        start = end;
    body = json_object_new_object();
    jset(body, "kind", jstr("compute#serialPortOutput"));
    jset(body, "contents",
         json_object_new_string_len(s ? s->buf.data + (start - base) : "",
                                    (int)(end - start)));
    jset(body, "start", json_object_new_int64(start));
    jset(body, "next", json_object_new_int64(end));
    link = kc_xasprintf("%s/serialPort", jget_str(o->attrs, "selfLink"));
    jset(body, "selfLink", jstr(link));
    free(link);
    sim_resp_json(req, 200, body);
}

/* ---- images ---- */

static const char *const os_features[] = {
    "UEFI_COMPATIBLE",
    "TDX_CAPABLE",
    "GVNIC",
    "SEV_CAPABLE",
    "SEV_SNP_CAPABLE",
    "SEV_LIVE_MIGRATABLE",
    "SEV_LIVE_MIGRATABLE_V2",
    "VIRTIO_SCSI_MULTIQUEUE",
    "MULTI_IP_SUBNET",
    "SECURE_BOOT",
    "WINDOWS",
    "IDPF",
};

/* "BUCKET/OBJECT" of a storage URL (https://storage.googleapis.com/B/O or
 * any scheme://host/B/O), or NULL. Caller frees. */
static char *storage_key(const char *url)
{
    const char *p = url ? strstr(url, "://") : NULL;

    if (!p)
        return NULL;
    p = strchr(p + 3, '/');
    if (!p || !p[1] || !strchr(p + 1, '/'))
        return NULL;
    return kc_xstrdup(p + 1);
}

static void eff_image_insert(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *img = sim_obj_find(sim, SVC, "image", op->target);
    char *key, msg[600];

    if (!img || !done)
        return;
    key = storage_key(jget_str(jget(img->attrs, "rawDisk"), "source"));
    if (!key || !sim_obj_find(sim, SVC, "object", key)) {
        snprintf(msg, sizeof(msg),
                 "The resource '%s' of type 'storage object' was not found.",
                 jget_str(jget(img->attrs, "rawDisk"), "source"));
        op_fail(op, 404, "RESOURCE_NOT_FOUND", msg);
        sim_obj_remove(sim, img);
    } else {
        struct sim_object *o = sim_obj_find(sim, SVC, "object", key);

        jset(img->attrs, "archiveSizeBytes", jstr(jget_str(o->attrs, "size")));
        jset(img->attrs, "status", jstr("READY"));
    }
    free(key);
}

static void eff_image_delete(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *img = sim_obj_find(sim, SVC, "image", op->target);

    if (img && done)
        sim_obj_remove(sim, img);
}

static void h_image_insert(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    struct json_object *body, *f, *feats;
    struct sim_object *img;
    const char *name, *src;
    char *link, ts[64], why[160];

    if (!authorize(req, project, "compute.images.create") ||
        op_replay(req, NULL) || !(body = sim_req_json(req)))
        return;
    name = jget_str(body, "name");
    src = jget_str(jget(body, "rawDisk"), "source");
    if (!valid_name(name)) {
        bad_name(req, "resource.name", name);
        return;
    }
    if (!src) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource.rawDisk.source': ''. A "
             "source is required (rawDisk.source, sourceDisk or "
             "sourceImage).");
        return;
    }
    if (!valid_labels(jget(body, "labels"), why, sizeof(why))) {
        gerr(req, 400, "invalid", "Invalid value for field 'labels': %s", why);
        return;
    }
    feats = jget(body, "guestOsFeatures");
    for (size_t i = 0; feats && i < json_object_array_length(feats); i++) {
        const char *t = jget_str(json_object_array_get_idx(feats, i), "type");
        bool known = false;

        for (size_t k = 0; t && k < KC_ARRAY_SIZE(os_features); k++)
            known = known || strcmp(t, os_features[k]) == 0;
        if (!known) {
            gerr(req, 400, "invalid",
                 "Invalid value for field "
                 "'resource.guestOsFeatures[%zu].type': '%s'",
                 i, t ? t : "");
            return;
        }
    }
    if (sim_obj_find(sim, SVC, "image", name)) {
        already_exists(req, project, NULL, "images", name);
        return;
    }
    img = sim_obj_add(sim, SVC, "image", name, NULL);
    now_rfc3339(ts);
    jset(img->attrs, "kind", jstr("compute#image"));
    jset(img->attrs, "id", jstr(img->id));
    jset(img->attrs, "name", jstr(name));
    jset(img->attrs, "creationTimestamp", jstr(ts));
    if (jget_str(body, "description"))
        jset(img->attrs, "description", jstr(jget_str(body, "description")));
    jset(img->attrs, "sourceType", jstr("RAW"));
    f = json_object_new_object();
    jset(f, "source", jstr(src));
    jset(f, "containerType", jstr("TAR"));
    jset(img->attrs, "rawDisk", f);
    jset(img->attrs, "status", jstr("PENDING"));
    jset(img->attrs, "diskSizeGb", jstr("10"));
    jset(img->attrs, "guestOsFeatures",
         feats ? jdup(feats) : json_object_new_array());
    jset(img->attrs, "labels",
         jget(body, "labels") ? jdup(jget(body, "labels"))
                              : json_object_new_object());
    set_label_fp(img->attrs);
    sync_labels(img);
    link = global_link(req, project, "images", name);
    jset(img->attrs, "selfLink", jstr(link));
    op_start(sim, req, project, NULL, "insert", "image", name, link,
             eff_image_insert, NULL);
    free(link);
}

static void h_image_get(struct sim *sim, struct sim_req *req)
{
    object_get(sim, req, "image", "images", "compute.images.get");
}

static void h_image_list(struct sim *sim, struct sim_req *req)
{
    object_list(sim, req, "image", "images", "compute#imageList",
                "compute.images.list");
}

static void h_image_delete(struct sim *sim, struct sim_req *req)
{
    global_delete(sim, req, "image", "images", "compute.images.delete",
                  eff_image_delete);
}

static void h_image_set_labels(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *name = sim_req_param(req, "image");
    struct json_object *body;
    struct sim_object *img;
    const char *fp;
    char why[160];

    if (!authorize(req, project, "compute.images.setLabels") ||
        op_replay(req, NULL))
        return;
    img = sim_obj_find(sim, SVC, "image", name);
    if (!img) {
        not_found(req, project, NULL, "images", name);
        return;
    }
    if (!(body = sim_req_json(req)))
        return;
    fp = jget_str(body, "labelFingerprint");
    if (!fp || strcmp(fp, jget_str(img->attrs, "labelFingerprint")) != 0) {
        gerr(req, 412, "conditionNotMet",
             "Labels fingerprint either invalid or resource labels have "
             "changed");
        return;
    }
    if (!valid_labels(jget(body, "labels"), why, sizeof(why))) {
        gerr(req, 400, "invalid", "Invalid value for field 'labels': %s", why);
        return;
    }
    op_start(sim, req, project, NULL, "setLabels", "image", name,
             jget_str(img->attrs, "selfLink"), eff_set_labels,
             jget(body, "labels") ? jdup(jget(body, "labels"))
                                  : json_object_new_object());
}

/* ---- firewalls ---- */

static bool valid_cidr(const char *s)
{
    unsigned a, b, c, d, m = 32;
    char tail;
    int n = sscanf(s, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &m, &tail);

    if (n != 4 && n != 5)
        return false;
    return a < 256 && b < 256 && c < 256 && d < 256 && m <= 32;
}

/* Checks a firewall body (a full one for insert, a partial one for patch)
 * and answers 400 when it is bad. */
static bool firewall_check(struct sim_req *req, struct json_object *b,
                           bool full)
{
    struct json_object *al = jget(b, "allowed"), *de = jget(b, "denied");
    struct json_object *sr = jget(b, "sourceRanges");
    struct json_object *pr = jget(b, "priority");
    size_t nal = al ? json_object_array_length(al) : 0;
    size_t nde = de ? json_object_array_length(de) : 0;

    if ((full && nal + nde == 0) || (nal && nde)) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource': exactly one of 'allowed' "
             "or 'denied' must be specified.");
        return false;
    }
    for (size_t i = 0; i < nal + nde; i++) {
        struct json_object *r = json_object_array_get_idx(nal ? al : de, i);
        const char *p = jget_str(r, "IPProtocol");

        if (!p) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'resource.%s[%zu].IPProtocol': ''",
                 nal ? "allowed" : "denied", i);
            return false;
        }
    }
    for (size_t i = 0; sr && i < json_object_array_length(sr); i++) {
        const char *c =
            json_object_get_string(json_object_array_get_idx(sr, i));

        if (!c || !valid_cidr(c)) {
            gerr(req, 400, "invalid",
                 "Invalid value for field 'resource.sourceRanges[%zu]': "
                 "'%s'. Must be a CIDR address range that is contained in "
                 "the network.",
                 i, c ? c : "");
            return false;
        }
    }
    if (pr &&
        (json_object_get_int64(pr) < 0 || json_object_get_int64(pr) > 65535)) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource.priority': '%lld'. Must be "
             "in the range [0, 65535].",
             (long long)json_object_get_int64(pr));
        return false;
    }
    return true;
}

static void eff_fw_insert(struct sim *sim, struct gcp_op *op, bool done)
{
    (void)sim;
    (void)op;
    (void)done; /* the rule exists from the insert on */
}

static void eff_fw_patch(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *fw = sim_obj_find(sim, SVC, "firewall", op->target);

    if (!fw || !done)
        return;
    json_object_object_foreach (op->arg, k, v) {
        if (strcmp(k, "name") == 0)
            continue;
        if (strcmp(k, "allowed") == 0)
            json_object_object_del(fw->attrs, "denied");
        if (strcmp(k, "denied") == 0)
            json_object_object_del(fw->attrs, "allowed");
        jset(fw->attrs, k, jdup(v));
    }
}

static void eff_fw_delete(struct sim *sim, struct gcp_op *op, bool done)
{
    struct sim_object *fw = sim_obj_find(sim, SVC, "firewall", op->target);

    if (fw && done)
        sim_obj_remove(sim, fw);
}

static void h_fw_insert(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    struct json_object *body, *v;
    struct sim_object *fw;
    const char *name, *net;
    char *link, ts[64];

    if (!authorize(req, project, "compute.firewalls.create") ||
        op_replay(req, NULL) || !(body = sim_req_json(req)))
        return;
    name = jget_str(body, "name");
    if (!valid_name(name)) {
        bad_name(req, "resource.name", name);
        return;
    }
    if (!firewall_check(req, body, true))
        return;
    if (sim_obj_find(sim, SVC, "firewall", name)) {
        already_exists(req, project, NULL, "firewalls", name);
        return;
    }
    fw = sim_obj_add(sim, SVC, "firewall", name, NULL);
    now_rfc3339(ts);
    jset(fw->attrs, "kind", jstr("compute#firewall"));
    jset(fw->attrs, "id", jstr(fw->id));
    jset(fw->attrs, "creationTimestamp", jstr(ts));
    jset(fw->attrs, "name", jstr(name));
    jset(fw->attrs, "description",
         jstr(jget_str(body, "description") ? jget_str(body, "description")
                                            : ""));
    net = jget_str(body, "network");
    link =
        global_link(req, project, "networks", net ? last_seg(net) : "default");
    jset(fw->attrs, "network", jstr(link));
    free(link);
    v = jget(body, "priority");
    jset(fw->attrs, "priority",
         json_object_new_int64(v ? json_object_get_int64(v) : 1000));
    v = jget(body, "sourceRanges");
    jset(fw->attrs, "sourceRanges", v ? jdup(v) : json_object_new_array());
    if (!v)
        json_object_array_add(jget(fw->attrs, "sourceRanges"),
                              jstr("0.0.0.0/0"));
    if ((v = jget(body, "targetTags")))
        jset(fw->attrs, "targetTags", jdup(v));
    if ((v = jget(body, "allowed")) && json_object_array_length(v))
        jset(fw->attrs, "allowed", jdup(v));
    if ((v = jget(body, "denied")) && json_object_array_length(v))
        jset(fw->attrs, "denied", jdup(v));
    jset(fw->attrs, "direction",
         jstr(jget_str(body, "direction") ? jget_str(body, "direction")
                                          : "INGRESS"));
    jset(fw->attrs, "disabled",
         json_object_new_boolean(
             json_object_get_boolean(jget(body, "disabled"))));
    link = global_link(req, project, "firewalls", name);
    jset(fw->attrs, "selfLink", jstr(link));
    op_start(sim, req, project, NULL, "insert", "firewall", name, link,
             eff_fw_insert, NULL);
    free(link);
}

static void h_fw_get(struct sim *sim, struct sim_req *req)
{
    object_get(sim, req, "firewall", "firewalls", "compute.firewalls.get");
}

static void h_fw_list(struct sim *sim, struct sim_req *req)
{
    object_list(sim, req, "firewall", "firewalls", "compute#firewallList",
                "compute.firewalls.list");
}

static void h_fw_patch(struct sim *sim, struct sim_req *req)
{
    const char *project = sim_req_param(req, "project");
    const char *name = sim_req_param(req, "firewall");
    struct json_object *body;
    struct sim_object *fw;
    const char *bn;

    if (!authorize(req, project, "compute.firewalls.update") ||
        op_replay(req, NULL))
        return;
    fw = sim_obj_find(sim, SVC, "firewall", name);
    if (!fw) {
        not_found(req, project, NULL, "firewalls", name);
        return;
    }
    if (!(body = sim_req_json(req)) || !firewall_check(req, body, false))
        return;
    bn = jget_str(body, "name");
    if (bn && strcmp(bn, name) != 0) {
        gerr(req, 400, "invalid",
             "Invalid value for field 'resource.name': '%s'. The name of a "
             "firewall cannot be changed.",
             bn);
        return;
    }
    op_start(sim, req, project, NULL, "patch", "firewall", name,
             jget_str(fw->attrs, "selfLink"), eff_fw_patch, jdup(body));
}

static void h_fw_delete(struct sim *sim, struct sim_req *req)
{
    global_delete(sim, req, "firewall", "firewalls", "compute.firewalls.delete",
                  eff_fw_delete);
}

/* ---- storage ---- */

static struct gcp_blob *blob_find(struct gcp_state *st, const char *key)
{
    for (struct gcp_blob *b = st->blobs; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    return NULL;
}

static void blob_drop(struct gcp_state *st, const char *key)
{
    for (struct gcp_blob **p = &st->blobs; *p; p = &(*p)->next)
        if (strcmp((*p)->key, key) == 0) {
            struct gcp_blob *b = *p;

            *p = b->next;
            free(b->key);
            free(b->data);
            free(b);
            return;
        }
}

/* 412 unless the object's generation satisfies ifGenerationMatch MATCH
 * (NULL: no precondition; "0": must not exist). */
static bool generation_ok(struct sim_req *req, struct sim_object *o,
                          const char *match)
{
    const char *gen = o ? jget_str(o->attrs, "generation") : NULL;

    if (!match)
        return true;
    if ((strcmp(match, "0") == 0 && !o) || (gen && strcmp(match, gen) == 0))
        return true;
    gerr(req, 412, "conditionNotMet",
         "At least one of the pre-conditions you specified did not hold.");
    return false;
}

/* Stores DATA as BUCKET/NAME and answers its metadata (200); false when it
 * answered an error instead. Checks the checksums the client announced
 * (META's crc32c/md5Hash, or X-Goog-Hash). */
static bool object_store(struct sim *sim, struct sim_req *req,
                         const char *bucket, const char *name,
                         struct json_object *meta, const unsigned char *data,
                         size_t len, const char *if_gen)
{
    struct gcp_state *st = st_of(req);
    char *key = kc_xasprintf("%s/%s", bucket, name), *base, *s;
    struct sim_object *o = sim_obj_find(sim, SVC, "object", key);
    char crc[GCP_CRC32C_B64_LEN], md5s[GCP_MD5_B64_LEN], ts[64], num[32];
    unsigned char md5[16];
    const char *want, *xgh = sim_req_header(req, "X-Goog-Hash");
    struct gcp_blob *b;
    struct kc_buf enc = { 0 };
    bool ok = false;

    gcp_crc32c_b64(gcp_crc32c_update(0, data, len), crc);
    if (EVP_Digest(data, len, md5, NULL, EVP_md5(), NULL) != 1)
        KC_BUG("md5");
    gcp_md5_b64(md5, md5s);
    if ((want = jget_str(meta, "crc32c")) && strcmp(want, crc) != 0) {
        gerr(req, 400, "invalid",
             "Provided CRC32C \"%s\" doesn't match calculated CRC32C \"%s\".",
             want, crc);
        goto out;
    }
    if ((want = jget_str(meta, "md5Hash")) && strcmp(want, md5s) != 0) {
        gerr(req, 400, "invalid",
             "Provided MD5 hash \"%s\" doesn't match calculated MD5 hash "
             "\"%s\".",
             want, md5s);
        goto out;
    }
    if (xgh && (s = strstr(xgh, "crc32c=")) &&
        strncmp(s + 7, crc, strlen(crc)) != 0) {
        gerr(req, 400, "invalid",
             "Provided CRC32C doesn't match calculated CRC32C \"%s\".", crc);
        goto out;
    }
    if (!generation_ok(req, o, if_gen))
        goto out;
    if (!o)
        o = sim_obj_add(sim, SVC, "object", key, NULL);
    b = blob_find(st, key);
    if (!b) {
        b = kc_xcalloc(1, sizeof(*b));
        b->key = kc_xstrdup(key);
        b->next = st->blobs;
        st->blobs = b;
    }
    free(b->data);
    b->data = kc_xmalloc(len ? len : 1);
    memcpy(b->data, data, len);
    b->len = len;
    now_rfc3339(ts);
    json_object_put(o->attrs);
    o->attrs = json_object_new_object();
    jset(o->attrs, "kind", jstr("storage#object"));
    snprintf(num, sizeof(num), "%llu",
             (unsigned long long)(1700000000000000ull + ++st->generation));
    s = kc_xasprintf("%s/%s/%s", bucket, name, num);
    jset(o->attrs, "id", jstr(s));
    free(s);
    base = base_url(req);
    gcp_pct_encode(name, strlen(name), &enc);
    s = kc_xasprintf("%s/storage/storage/v1/b/%s/o/%s", base, bucket,
                     kc_buf_str(&enc));
    jset(o->attrs, "selfLink", jstr(s));
    free(s);
    s = kc_xasprintf(
        "%s/storage/download/storage/v1/b/%s/o/%s?generation=%s&alt=media",
        base, bucket, kc_buf_str(&enc), num);
    jset(o->attrs, "mediaLink", jstr(s));
    free(s);
    free(base);
    kc_buf_release(&enc);
    jset(o->attrs, "name", jstr(name));
    jset(o->attrs, "bucket", jstr(bucket));
    jset(o->attrs, "generation", jstr(num));
    jset(o->attrs, "metageneration", jstr("1"));
    jset(o->attrs, "contentType",
         jstr(jget_str(meta, "contentType") ? jget_str(meta, "contentType")
                                            : "application/octet-stream"));
    jset(o->attrs, "storageClass", jstr("STANDARD"));
    snprintf(num, sizeof(num), "%zu", len);
    jset(o->attrs, "size", jstr(num));
    jset(o->attrs, "md5Hash", jstr(md5s));
    jset(o->attrs, "crc32c", jstr(crc));
    jset(o->attrs, "etag", jstr(crc));
    jset(o->attrs, "timeCreated", jstr(ts));
    jset(o->attrs, "updated", jstr(ts));
    if (jget(meta, "metadata"))
        jset(o->attrs, "metadata", jdup(jget(meta, "metadata")));
    /* The inventory's labels are the object's custom metadata, where
     * kmsctl's ownership marks live. */
    json_object_put(o->labels);
    o->labels = jget(meta, "metadata") ? jdup(jget(meta, "metadata"))
                                       : json_object_new_object();
    sim_resp_json(req, 200, jdup(o->attrs));
    ok = true;
out:
    free(key);
    return ok;
}

static struct gcp_session *session_find(struct gcp_state *st, const char *id)
{
    for (struct gcp_session *s = st->sessions; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void h_upload_post(struct sim *sim, struct sim_req *req)
{
    const char *bucket = sim_req_param(req, "bucket");
    const char *type = sim_req_query(req, "uploadType");
    const char *name = sim_req_query(req, "name");
    const char *if_gen = sim_req_query(req, "ifGenerationMatch");
    struct gcp_state *st = st_of(req);
    struct json_object *meta = NULL;
    size_t len;
    const char *body;

    if (!authorize(req, bucket, "storage.objects.create"))
        return;
    if (!type ||
        (strcmp(type, "media") != 0 && strcmp(type, "resumable") != 0)) {
        gerr(req, 400, "invalid",
             "Invalid upload type '%s' (this simulator takes media and "
             "resumable).",
             type ? type : "");
        return;
    }
    if (strcmp(type, "media") == 0) {
        if (!name || !*name) {
            gerr(req, 400, "required", "Required parameter: name");
            return;
        }
        body = sim_req_body(req, &len);
        (void)object_store(sim, req, bucket, name, NULL,
                           (const unsigned char *)body, len, if_gen);
        return; /* answered either way */
    }
    body = sim_req_body(req, &len);
    if (len > 0 && !(meta = sim_req_json(req)))
        return;
    if (!name)
        name = jget_str(meta, "name");
    if (!name || !*name) {
        gerr(req, 400, "required", "Required parameter: name");
        return;
    }
    {
        struct gcp_session *s = kc_xcalloc(1, sizeof(*s));
        char *hex = rand_hex(sim, 12), *base = base_url(req), *loc;
        struct kc_buf enc = { 0 };

        s->id = kc_xasprintf("sim-%s", hex);
        s->bucket = kc_xstrdup(bucket);
        s->name = kc_xstrdup(name);
        s->meta = meta ? jdup(meta) : json_object_new_object();
        s->total = -1;
        s->if_generation_match = -1;
        if (if_gen)
            jset(s->meta, "_ifGenerationMatch", jstr(if_gen));
        s->next = st->sessions;
        st->sessions = s;
        gcp_pct_encode(name, strlen(name), &enc);
        loc = kc_xasprintf(
            "%s/storage/upload/storage/v1/b/%s/o?uploadType=resumable"
            "&name=%s&upload_id=%s",
            base, bucket, kc_buf_str(&enc), s->id);
        sim_resp_header(req, "Location", loc);
        sim_resp_body(req, 200, "text/plain", "", 0);
        free(loc);
        free(base);
        free(hex);
        kc_buf_release(&enc);
    }
}

/* Parses Content-Range: "bytes A-B/T", "bytes A-B/ *", "bytes * /T",
 * "bytes * / *" (without the spaces). A = -1 for "*"; T = -1 for "*". */
static int parse_content_range(const char *h, int64_t *a, int64_t *b,
                               int64_t *t)
{
    const char *p;
    char *end;

    if (!h || strncmp(h, "bytes ", 6) != 0)
        return -1;
    p = h + 6;
    if (*p == '*') {
        *a = *b = -1;
        p++;
    } else {
        *a = strtoll(p, &end, 10);
        if (end == p || *end != '-')
            return -1;
        p = end + 1;
        *b = strtoll(p, &end, 10);
        if (end == p || *b < *a)
            return -1;
        p = end;
    }
    if (*p != '/')
        return -1;
    p++;
    if (strcmp(p, "*") == 0) {
        *t = -1;
        return 0;
    }
    *t = strtoll(p, &end, 10);
    return (end == p || *end || *t < 0) ? -1 : 0;
}

static void range_308(struct sim_req *req, size_t committed)
{
    if (committed > 0) {
        char r[64];

        snprintf(r, sizeof(r), "bytes=0-%zu", committed - 1);
        sim_resp_header(req, "Range", r);
    }
    sim_resp_body(req, 308, "text/plain", "", 0);
}

static void h_upload_put(struct sim *sim, struct sim_req *req)
{
    const char *bucket = sim_req_param(req, "bucket");
    const char *id = sim_req_query(req, "upload_id");
    const char *cr = sim_req_header(req, "Content-Range");
    struct gcp_session *s;
    int64_t a = 0, b = -1, t = -1;
    size_t len;
    const char *body = sim_req_body(req, &len);

    if (!authorize(req, bucket, "storage.objects.create"))
        return;
    s = id ? session_find(st_of(req), id) : NULL;
    if (!s || strcmp(s->bucket, bucket) != 0) {
        gerr(req, 404, "notFound", "No such upload session '%s'", id ? id : "");
        return;
    }
    if (s->result) { /* finished: the object again */
        sim_resp_json(req, 200, jdup(s->result));
        return;
    }
    if (!cr) {
        t = (int64_t)len;
        b = len ? (int64_t)len - 1 : -1;
        a = len ? 0 : -1;
    } else if (parse_content_range(cr, &a, &b, &t) < 0) {
        gerr(req, 400, "invalid", "Failed to parse Content-Range header.");
        return;
    }
    if (t >= 0) {
        if (s->total >= 0 && s->total != t) {
            gerr(req, 400, "invalid",
                 "The total object size %lld differs from the earlier "
                 "%lld.",
                 (long long)t, (long long)s->total);
            return;
        }
        s->total = t;
    }
    if (a >= 0) {
        size_t skip;

        if ((int64_t)len != b - a + 1) {
            gerr(req, 400, "invalid",
                 "Content-Range says %lld bytes, the body has %zu.",
                 (long long)(b - a + 1), len);
            return;
        }
        if (a > (int64_t)s->data.len) {
            gerr(req, 400, "invalid",
                 "Invalid request. There were %zu byte(s) in the upload "
                 "session, but the request starts at offset %lld.",
                 s->data.len, (long long)a);
            return;
        }
        if (s->total >= 0 && b + 1 > s->total) {
            gerr(req, 400, "invalid",
                 "The data ends past the total object size %lld.",
                 (long long)s->total);
            return;
        }
        skip = s->data.len - (size_t)a; /* already stored: ignored */
        if (skip < len && kc_buf_add(&s->data, body + skip, len - skip) < 0) {
            gerr(req, 400, "invalid", "Upload too large for the simulator.");
            return;
        }
    } else if (len > 0) {
        gerr(req, 400, "invalid",
             "A status query (Content-Range: bytes */N) has no body.");
        return;
    }
    if (s->total >= 0 && (int64_t)s->data.len == s->total) {
        const char *ig = jget_str(s->meta, "_ifGenerationMatch");

        if (object_store(sim, req, s->bucket, s->name, s->meta,
                         (const unsigned char *)s->data.data, s->data.len,
                         ig)) {
            /* Later PUTs on the finished session answer the object. */
            char *key = kc_xasprintf("%s/%s", s->bucket, s->name);
            struct sim_object *o = sim_obj_find(sim, SVC, "object", key);

            s->result = jdup(o->attrs);
            kc_buf_release(&s->data);
            free(key);
        }
        return;
    }
    /* Not the last chunk: stored in whole 256 KiB units. */
    if (a >= 0 && (s->total < 0 || (int64_t)s->data.len < s->total)) {
        size_t keep = s->data.len / CHUNK_QUANT * CHUNK_QUANT;

        if (keep < s->data.len) {
            struct kc_buf nb = { 0 };

            if (keep && kc_buf_add(&nb, s->data.data, keep) < 0)
                KC_BUG("upload buffer");
            kc_buf_release(&s->data);
            s->data = nb;
        }
    }
    range_308(req, s->data.len);
}

static void h_object_get(struct sim *sim, struct sim_req *req)
{
    const char *bucket = sim_req_param(req, "bucket");
    const char *name = sim_req_param(req, "object");
    const char *alt = sim_req_query(req, "alt");
    char *key;
    struct sim_object *o;

    if (!authorize(req, bucket, "storage.objects.get"))
        return;
    key = kc_xasprintf("%s/%s", bucket, name);
    o = sim_obj_find(sim, SVC, "object", key);
    if (!o) {
        gerr(req, 404, "notFound", "No such object: %s", key);
    } else if (alt && strcmp(alt, "media") == 0) {
        struct gcp_blob *b = blob_find(st_of(req), key);

        sim_resp_body(req, 200, "application/octet-stream",
                      b ? b->data : (const unsigned char *)"", b ? b->len : 0);
    } else {
        sim_resp_json(req, 200, jdup(o->attrs));
    }
    free(key);
}

static void h_object_delete(struct sim *sim, struct sim_req *req)
{
    const char *bucket = sim_req_param(req, "bucket");
    const char *name = sim_req_param(req, "object");
    char *key;
    struct sim_object *o;

    if (!authorize(req, bucket, "storage.objects.delete"))
        return;
    key = kc_xasprintf("%s/%s", bucket, name);
    o = sim_obj_find(sim, SVC, "object", key);
    if (!o) {
        gerr(req, 404, "notFound", "No such object: %s", key);
    } else if (generation_ok(req, o, sim_req_query(req, "ifGenerationMatch"))) {
        blob_drop(st_of(req), key);
        sim_obj_remove(sim, o);
        sim_resp_body(req, 204, "text/plain", "", 0);
    }
    free(key);
}

static void h_object_list(struct sim *sim, struct sim_req *req)
{
    const char *bucket = sim_req_param(req, "bucket");
    const char *prefix = sim_req_query(req, "prefix");
    const char *ptok = sim_req_query(req, "pageToken");
    const char *mr = sim_req_query(req, "maxResults");
    struct json_object *body, *items;
    long max = 1000, start = 0;
    struct page pg;
    size_t bl = strlen(bucket);
    char *end = NULL;

    if (!authorize(req, bucket, "storage.objects.list"))
        return;
    if (mr && ((max = strtol(mr, &end, 10)) <= 0 || *end || max > 1000)) {
        gerr(req, 400, "invalid", "Invalid value for maxResults: %s", mr);
        return;
    }
    if (ptok && !page_start(ptok, &start)) {
        gerr(req, 400, "invalid", "Invalid page token: %s", ptok);
        return;
    }
    body = json_object_new_object();
    items = json_object_new_array();
    pg = (struct page){ body, items, start, max, 0, 0 };
    for (struct sim_object *o = sim_obj_next(sim, NULL, SVC, "object"); o;
         o = sim_obj_next(sim, o, SVC, "object")) {
        if (strncmp(o->name, bucket, bl) != 0 || o->name[bl] != '/')
            continue;
        if (prefix && strncmp(o->name + bl + 1, prefix, strlen(prefix)) != 0)
            continue;
        if (!page_add(&pg, o))
            break;
    }
    jset(body, "kind", jstr("storage#objects"));
    jset(body, "items", items);
    sim_resp_json(req, 200, body);
}

/* ---- admin hooks, init, routes ---- */

/* Merges PATCH's members into DST; a null member removes one. */
static void merge_into(struct json_object *dst, struct json_object *patch)
{
    json_object_object_foreach (patch, k, v) {
        if (!v)
            json_object_object_del(dst, k);
        else
            jset(dst, k, jdup(v));
    }
}

static int gcp_patch_object(struct sim *sim, struct sim_object *obj,
                            struct json_object *patch, struct kc_err *err)
{
    struct json_object *labels = jget(patch, "labels");
    struct json_object *attrs = jget(patch, "attrs");

    (void)sim;
    if ((labels && !json_object_is_type(labels, json_type_object)) ||
        (attrs && !json_object_is_type(attrs, json_type_object)))
        return kc_err_set(err, KC_EINVAL, "labels and attrs must be objects");
    if (attrs)
        merge_into(obj->attrs, attrs);
    if (labels) {
        /* Objects keep their marks in custom metadata, the rest in labels
         * with a fingerprint that changes with them. */
        bool is_obj = strcmp(obj->kind, "object") == 0;
        const char *key = is_obj ? "metadata" : "labels";
        struct json_object *l = jget(obj->attrs, key);

        if (!l) {
            l = json_object_new_object();
            jset(obj->attrs, key, l);
        }
        merge_into(l, labels);
        if (!is_obj)
            set_label_fp(obj->attrs);
        json_object_put(obj->labels);
        obj->labels = jdup(l);
    } else if (attrs && jget(attrs, "labels") &&
               strcmp(obj->kind, "object") != 0) {
        set_label_fp(obj->attrs);
        sync_labels(obj);
    }
    return 1;
}

static void gcp_delete_object(struct sim *sim, struct sim_object *obj)
{
    struct gcp_state *st = st_sim(sim);

    if (!st)
        return;
    if (strcmp(obj->kind, "instance") == 0) {
        instance_release_disks(sim, obj);
        serial_drop(st, obj->name);
    } else if (strcmp(obj->kind, "object") == 0) {
        blob_drop(st, obj->name);
    }
}

static void parse_op_ms(const char *s, uint32_t *lo, uint32_t *hi)
{
    unsigned a, b;

    *lo = 20;
    *hi = 60;
    if (s && sscanf(s, "%u,%u", &a, &b) == 2 && a <= b && b <= 600000) {
        *lo = a;
        *hi = b;
    }
}

static int gcp_init(struct sim *sim, void **state)
{
    struct gcp_state *st = kc_xcalloc(1, sizeof(*st));
    const char *ttl = getenv("KMSCTL_SIM_GCP_TOKEN_TTL");
    const char *page = getenv("KMSCTL_SIM_GCP_PAGE");
    const char *keyfile = getenv("KMSCTL_SIM_GCP_PUBKEY");
    char *pem = NULL;
    size_t len = 0;
    struct kc_err err = { 0 };
    BIO *bio;

    (void)sim;
    if (keyfile && *keyfile) {
        if (kc_file_read(keyfile, 1u << 20, &pem, &len, &err) < 0) {
            fprintf(stderr, "sim gcp: %s\n", err.msg);
            free(st);
            return -1;
        }
    } else {
        pem = kc_xstrdup(test_pubkey_pem);
        len = strlen(pem);
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    st->pub = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    if (!st->pub) {
        fprintf(stderr, "sim gcp: cannot read the public key%s%s\n",
                keyfile ? " from " : "", keyfile ? keyfile : "");
        free(st);
        return -1;
    }
    st->token_ttl_ms = 3600 * 1000ull;
    if (ttl && *ttl) {
        char *end;
        unsigned long v = strtoul(ttl, &end, 10);

        if (!*end && v > 0)
            st->token_ttl_ms = v * 1000ull;
    }
    parse_op_ms(getenv("KMSCTL_SIM_GCP_OP_MS"), &st->op_min_ms, &st->op_max_ms);
    /* KMSCTL_SIM_GCP_PAGE=N: lists answer N items a page (1..500) when the
     * request does not say, so a test sees pageToken paging. */
    st->page_max = LIST_MAX;
    if (page && *page) {
        char *end;
        long v = strtol(page, &end, 10);

        if (!*end && v > 0 && v <= LIST_MAX)
            st->page_max = v;
    }
    *state = st;
    return 0;
}

static void gcp_fini(struct sim *sim, void *state)
{
    struct gcp_state *st = state;

    (void)sim;
    if (!st)
        return;
    while (st->tokens) {
        struct gcp_token *t = st->tokens;

        st->tokens = t->next;
        free(t->token);
        free(t);
    }
    while (st->blobs) {
        struct gcp_blob *b = st->blobs;

        st->blobs = b->next;
        free(b->key);
        free(b->data);
        free(b);
    }
    while (st->sessions) {
        struct gcp_session *s = st->sessions;

        st->sessions = s->next;
        free(s->id);
        free(s->bucket);
        free(s->name);
        json_object_put(s->meta);
        json_object_put(s->result);
        kc_buf_release(&s->data);
        free(s);
    }
    while (st->serials) {
        struct gcp_serial *s = st->serials;

        st->serials = s->next;
        free(s->instance);
        kc_buf_release(&s->buf);
        free(s);
    }
    while (st->ops) {
        struct gcp_op *o = st->ops;

        st->ops = o->next;
        op_free(o);
    }
    EVP_PKEY_free(st->pub);
    free(st);
}

#define CP "/gcp/compute/v1/projects/{project}"
#define ZI CP "/zones/{zone}/instances/{instance}"

static const struct sim_route gcp_routes[] = {
    { "POST", "/gcp/oauth2/token", h_token, false },
    { "GET",
      "/gcp/metadata/computeMetadata/v1/instance/service-accounts/"
      "default/token",
      h_metadata_token, false },
    { "GET", CP "/zones/{zone}/instances", h_instance_list, false },
    { "POST", CP "/zones/{zone}/instances", h_instance_insert, true },
    { "GET", ZI, h_instance_get, false },
    { "DELETE", ZI, h_instance_verb, true },
    { "POST", ZI "/stop", h_instance_verb, true },
    { "POST", ZI "/start", h_instance_verb, true },
    { "POST", ZI "/attachDisk", h_instance_verb, true },
    { "POST", ZI "/detachDisk", h_instance_verb, true },
    { "POST", ZI "/setLabels", h_instance_verb, true },
    { "POST", ZI "/setTags", h_instance_verb, true },
    { "GET", ZI "/serialPort", h_instance_serial, false },
    { "GET", CP "/zones/{zone}/disks", h_disk_list, false },
    { "POST", CP "/zones/{zone}/disks", h_disk_insert, true },
    { "GET", CP "/zones/{zone}/disks/{disk}", h_disk_get, false },
    { "DELETE", CP "/zones/{zone}/disks/{disk}", h_disk_delete, true },
    { "GET", CP "/zones/{zone}/operations/{operation}", h_op_get, false },
    { "GET", CP "/global/images", h_image_list, false },
    { "POST", CP "/global/images", h_image_insert, true },
    { "GET", CP "/global/images/{image}", h_image_get, false },
    { "DELETE", CP "/global/images/{image}", h_image_delete, true },
    { "POST", CP "/global/images/{image}/setLabels", h_image_set_labels, true },
    { "GET", CP "/global/firewalls", h_fw_list, false },
    { "POST", CP "/global/firewalls", h_fw_insert, true },
    { "GET", CP "/global/firewalls/{firewall}", h_fw_get, false },
    { "PATCH", CP "/global/firewalls/{firewall}", h_fw_patch, true },
    { "DELETE", CP "/global/firewalls/{firewall}", h_fw_delete, true },
    { "GET", CP "/global/operations/{operation}", h_op_get, false },
    { "POST", "/gcp/storage/upload/storage/v1/b/{bucket}/o", h_upload_post,
      true },
    { "PUT", "/gcp/storage/upload/storage/v1/b/{bucket}/o", h_upload_put,
      true },
    { "GET", "/gcp/storage/storage/v1/b/{bucket}/o", h_object_list, false },
    { "GET", "/gcp/storage/storage/v1/b/{bucket}/o/{object}", h_object_get,
      false },
    { "DELETE", "/gcp/storage/storage/v1/b/{bucket}/o/{object}",
      h_object_delete, true },
    { NULL, NULL, NULL, false },
};

const struct sim_service sim_svc_gcp = {
    .name = SVC,
    .routes = gcp_routes,
    .init = gcp_init,
    .fini = gcp_fini,
    .patch_object = gcp_patch_object,
    .delete_object = gcp_delete_object,
};
