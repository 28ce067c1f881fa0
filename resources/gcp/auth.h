/* resources/gcp/auth.h: Google credentials and OAuth2 access tokens.
 *
 * Credentials (struct gcp_creds) come from one of four sources, looked up by
 * gcp_creds_find() in this order; the first one present wins, and a source
 * that is named but broken is an error, never skipped:
 *   1. the manifest's providers.gcp.credentials: a key file's path, or the
 *      key file's JSON itself (e.g. from ${env:…}); explicit, so it wins;
 *   2. GOOGLE_OAUTH_ACCESS_TOKEN: a ready access token (used as it is, never
 *      refreshed; a 401 with it is final);
 *   3. GOOGLE_APPLICATION_CREDENTIALS: a key file's path;
 *   4. gcloud's ADC file, $CLOUDSDK_CONFIG/application_default_credentials
 *      .json or ~/.config/gcloud/application_default_credentials.json
 *      (written by `gcloud auth application-default login`);
 *   5. the GCE metadata server (unless disabled), which only answers inside
 *      Google Cloud: its absence shows at the first token fetch.
 * Key files are "service_account" (a JWT signed with its RSA key is traded
 * for a token) or "authorized_user" (a refresh token is traded for one).
 *
 * Wire formats, from Google's references:
 *   - service account: "Using OAuth 2.0 for Server to Server Applications",
 *     https://developers.google.com/identity/protocols/oauth2/service-account
 *     ("Preparing to make an authorized API call" / HTTP/REST): a JWT with
 *     header {"alg":"RS256","typ":"JWT"} (plus "kid", the key id), claims
 *     iss (client_email), scope (space-delimited), aud (the token URI),
 *     iat and exp (at most one hour later), signed RSASSA-PKCS1-v1_5 with
 *     SHA-256, base64url without padding; POSTed as
 *     application/x-www-form-urlencoded grant_type=urn:ietf:params:oauth:
 *     grant-type:jwt-bearer&assertion=<JWT> to https://oauth2.googleapis.com
 *     /token; the answer is {"access_token","expires_in","token_type"};
 *   - authorized user: the same endpoint with grant_type=refresh_token,
 *     client_id, client_secret, refresh_token (RFC 6749 §6);
 *   - metadata server: GET http://metadata.google.internal/computeMetadata
 *     /v1/instance/service-accounts/default/token with the header
 *     "Metadata-Flavor: Google" ("About VM metadata" / "Authenticate
 *     workloads using service accounts", https://cloud.google.com/compute/
 *     docs/access/authenticate-workloads#applications); GCE_METADATA_HOST
 *     replaces the host as in Google's client libraries.
 * Errors from the token endpoint are {"error","error_description"} (RFC
 * 6749 §5.2); both reach the message.
 *
 * Token cache (struct gcp_auth): one per provider. gcp_auth_token() gives
 * the cached token while it has more than GCP_AUTH_SLACK_S seconds left (or
 * half its life, for short ones). Otherwise gcp_auth_refresh(): every caller
 * waiting meanwhile joins the one fetch in flight and all are called back
 * when it ends. After a 401, gcp_auth_invalidate(token) drops that token if
 * it is still the cached one, so concurrent 401s cause one refresh; the
 * caller then retries once with the new token (the rule lives in gcp.c).
 *
 * The fetch goes through a transport function (gcp_token_send_fn), so the
 * cache does not depend on the HTTP module; gcp.c supplies one on
 * reconcile/http.h, tests supply fakes.
 *
 * Secrets: private keys, client secrets, refresh tokens, JWTs, form bodies
 * and access tokens are struct kc_secret; the logger learns each token.
 */
#ifndef KC_RESOURCES_GCP_AUTH_H
#define KC_RESOURCES_GCP_AUTH_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/secret.h"

#include <json-c/json.h>
#include <openssl/evp.h>

#define GCP_TOKEN_URL    "https://oauth2.googleapis.com/token"
#define GCP_METADATA_URL "http://metadata.google.internal"
#define GCP_METADATA_TOKEN_PATH \
    "/computeMetadata/v1/instance/service-accounts/default/token"
#define GCP_SCOPE_CLOUD_PLATFORM \
    "https://www.googleapis.com/auth/cloud-platform"
#define GCP_JWT_GRANT_TYPE "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define GCP_JWT_LIFETIME_S 3600 /* Google's maximum for exp - iat */
#define GCP_AUTH_SLACK_S   300  /* refresh this long before expiry */
#define GCP_KEYFILE_MAX    (1u << 20)
#define GCP_JWT_MAX        (64u << 10)

enum gcp_cred_kind {
    GCP_CRED_SERVICE_ACCOUNT = 1,
    GCP_CRED_AUTHORIZED_USER,
    GCP_CRED_ACCESS_TOKEN,
    GCP_CRED_METADATA,
};

struct gcp_creds {
    enum gcp_cred_kind kind;
    char *origin;     /* where they came from, for messages; never secret */
    char *project_id; /* from the key file, or NULL */
    /* service account */
    char *client_email;
    char *private_key_id;
    struct kc_secret *private_key; /* PEM */
    /* authorized user */
    char *client_id;
    struct kc_secret *client_secret;
    struct kc_secret *refresh_token;
    /* both key file kinds: the file's token_uri, or NULL */
    char *token_uri;
    /* GCP_CRED_ACCESS_TOKEN */
    struct kc_secret *access_token;
};

/* Where gcp_creds_find() looks. Strings are borrowed; NULL means unset. */
struct gcp_creds_env {
    const struct kc_secret *credentials; /* manifest: a path or key JSON */
    const char *base_dir;                /* resolves a relative manifest path */
    const char *access_token;            /* GOOGLE_OAUTH_ACCESS_TOKEN */
    const char *app_credentials;         /* GOOGLE_APPLICATION_CREDENTIALS */
    const char *cloudsdk_config;         /* CLOUDSDK_CONFIG */
    const char *home;                    /* HOME */
    bool no_metadata; /* do not fall back to the metadata server */
};

/* Fills ENV from the process environment (getenv; borrowed from environ),
 * with CREDENTIALS and BASE_DIR from the manifest (may be NULL). */
void gcp_creds_env_from_process(struct gcp_creds_env *env,
                                const struct kc_secret *credentials,
                                const char *base_dir);
/* Looks credentials up in the order above. *OUT is the caller's
 * (gcp_creds_free). KC_ENOENT when nothing is found and the metadata server
 * is disabled (the message lists what was tried); KC_EINVAL/KC_EPARSE for a
 * broken file, naming it; KC_ENOTSUP for key files of other types. */
int gcp_creds_find(const struct gcp_creds_env *env, struct gcp_creds **out,
                   struct kc_err *err);
/* Parses a key file's JSON (LEN bytes of TEXT). ORIGIN names it in errors.
 * A service account's private key is parsed here, so a bad key fails now. */
int gcp_creds_parse(const char *text, size_t len, const char *origin,
                    struct gcp_creds **out, struct kc_err *err);
void gcp_creds_free(struct gcp_creds *creds);
/* "service account 'x@y' from file '/k.json'" and so on. Caller frees. */
char *gcp_creds_describe(const struct gcp_creds *creds);

/* The JWT assertion of a service account, for AUD and SCOPE, issued at NOW
 * (seconds since the epoch), expiring GCP_JWT_LIFETIME_S later. */
int gcp_jwt_sign(const struct gcp_creds *creds, const char *aud,
                 const char *scope, int64_t now, struct kc_secret **out,
                 struct kc_err *err);
/* Checks the compact JWS JWT (LEN bytes): three base64url parts, header alg
 * RS256, an RSASSA-PKCS1-v1_5 SHA-256 signature by PUB. On success *HEADER
 * and *CLAIMS (each optional) hold one reference each. The claims are not
 * judged here (the caller checks iss, aud, exp...). KC_EPARSE for a
 * malformed token, KC_ECRYPTO for a bad signature. */
int gcp_jwt_verify(const char *jwt, size_t len, EVP_PKEY *pub,
                   struct json_object **header, struct json_object **claims,
                   struct kc_err *err);

/* Parses a token endpoint or metadata server answer of status CODE: a 2xx
 * with access_token and expires_in gives *TOKEN (caller frees) and
 * *EXPIRES_IN (seconds); else KC_EREMOTE with Google's error and
 * error_description (or KC_EPARSE). WHAT names the endpoint. */
int gcp_token_parse(long code, const char *body, size_t len, const char *what,
                    struct kc_secret **token, int64_t *expires_in,
                    struct kc_err *err);

/* One token fetch handed to the transport. */
struct gcp_token_fetch {
    /* read-only for the transport, valid until gcp_token_fetch_done */
    const char *method; /* "POST" or "GET" */
    const char *url;
    const char *content_type;     /* NULL without a body */
    const struct kc_secret *body; /* form body, or NULL */
    const char *header_name;      /* one extra header, or NULL */
    const char *header_value;
    /* filled by the transport before gcp_token_fetch_done */
    long code;
    struct kc_buf resp;
    /* private */
    struct gcp_auth *auth;
};
/* Sends F. < 0: nothing started (ERR says why). 0: the transport calls
 * gcp_token_fetch_done(F, ...) exactly once, later, from the loop. */
typedef int (*gcp_token_send_fn)(void *arg, struct gcp_token_fetch *f,
                                 struct kc_err *err);
/* The transport reports the end of F: STATUS 0 with f->code and f->resp
 * filled, or < 0 with ERR (a transport failure). */
void gcp_token_fetch_done(struct gcp_token_fetch *f, int status,
                          const struct kc_err *err);

typedef int64_t (*gcp_clock_fn)(void *arg);

struct gcp_auth_config {
    struct gcp_creds *creds;  /* taken, also when gcp_auth_new fails */
    const char *token_url;    /* NULL: creds' token_uri, else GCP_TOKEN_URL */
    const char *metadata_url; /* NULL: http://$GCE_METADATA_HOST or the
                                 default (GCP_METADATA_URL) */
    const char *scope;        /* NULL: GCP_SCOPE_CLOUD_PLATFORM */
    gcp_token_send_fn send;   /* required */
    void *send_arg;
    gcp_clock_fn clock; /* seconds since the epoch; NULL: time() */
    void *clock_arg;
    struct kc_log *log; /* optional: learns every token */
};

struct gcp_auth;
struct gcp_auth_req;
typedef void (*gcp_auth_cb)(struct gcp_auth_req *req, int status);

/* A wait for a token, embedded in the caller's struct. */
struct gcp_auth_req {
    void *data;        /* public: the caller's */
    struct kc_err err; /* read-only: set when status < 0 */
    /* private */
    gcp_auth_cb cb;
    struct gcp_auth_req *next;
};

struct gcp_auth_stats {
    uint64_t fetches;  /* token fetches started */
    uint64_t failures; /* fetches that failed */
    uint64_t joined;   /* refresh calls that joined a fetch in flight */
};

int gcp_auth_new(const struct gcp_auth_config *cfg, struct gcp_auth **out,
                 struct kc_err *err);
/* Frees AUTH; NULL-safe. No refresh may be in flight (KC_BUG). */
void gcp_auth_free(struct gcp_auth *auth);
/* The cached token if it is still fresh, else NULL. Borrowed until the next
 * refresh or invalidate. */
const struct kc_secret *gcp_auth_token(struct gcp_auth *auth);
/* Starts a token fetch, or joins the one in flight. < 0: nothing started
 * (ERR says why: e.g. a rejected GOOGLE_OAUTH_ACCESS_TOKEN cannot be
 * refreshed), CB never called. 0: CB runs exactly once, later, from the
 * loop; with 0 gcp_auth_token() then gives the new token, with < 0
 * req->err says why. */
int gcp_auth_refresh(struct gcp_auth *auth, struct gcp_auth_req *req,
                     gcp_auth_cb cb, struct kc_err *err);
/* Forgets TOKEN if it is the cached one (it was refused with 401). */
void gcp_auth_invalidate(struct gcp_auth *auth, const struct kc_secret *token);
/* The credentials' project_id, or NULL. Borrowed. */
const char *gcp_auth_project(const struct gcp_auth *auth);
const struct gcp_creds *gcp_auth_creds(const struct gcp_auth *auth);
void gcp_auth_get_stats(const struct gcp_auth *auth,
                        struct gcp_auth_stats *out);

#endif
