/* reconcile/http.h: the one HTTP client of kmsctl: libcurl's multi interface
 * driven by the libuv loop, with retries, timeouts, TLS pinning, per-request
 * host mapping, streaming bodies, --debug tracing with redaction and request
 * counters.
 *
 * Model
 *   One struct kc_http per run (it hangs off struct kc_ctx) owns one CURLM,
 *   one uv_timer_t and one uv_poll_t per socket, so every provider shares
 *   connections and TLS sessions. Only this module talks to libcurl.
 *
 *   A request is a struct kc_http_req embedded in the caller's state. The
 *   caller fills it (kc_http_req_init + setters), then kc_http_send() starts
 *   it. Contract of kc_http_send():
 *     < 0: nothing started, ERR says why, the callback is never called.
 *       0: the callback runs exactly once, later, from the loop (never inside
 *          kc_http_send), also on cancel (status KC_ECANCELED). Until then
 *          the request belongs to this module: do not touch or move it.
 *   In the callback the request is the caller's again: read the result, then
 *   kc_http_req_release() it (or release + init + send it again).
 *
 * Callback status
 *       0: a response was received and is final: look at req->code (any
 *          status, 404 and 503 included; the caller decides what it means).
 *          req->gave_up is true when it was still retryable but a bound
 *          (attempts, elapsed time) stopped the retries.
 *     < 0: no usable response: KC_EHTTP (transport error after the retries;
 *          req->err has curl's text and req->curl_code the CURLcode),
 *          KC_ETIMEDOUT (the per-attempt timeout fired on the last attempt,
 *          or the retry deadline passed), KC_ECANCELED (kc_http_cancel or
 *          kc_http_close), KC_ECRYPTO (TLS verification or pin failure: never
 *          retried), KC_EIO (reading the upload fd or writing the download
 *          fd failed), or whatever a prepare hook returned.
 *
 * Retries (struct kc_http_retry)
 *   Exponential backoff with full jitter: before attempt n+1 (n >= 1) wait a
 *   uniformly random time in [0, min(max_backoff_ms, base_ms * 2^(n-1))].
 *   Retryable: connection refused / reset / DNS failure, empty reply, partial
 *   body, per-attempt timeouts, HTTP 408, 429, 500, 502, 503, 504, the codes
 *   in extra_codes, and whatever the classifier says. A Retry-After header
 *   (delta-seconds or an HTTP-date) replaces the jittered wait when present
 *   (capped at max_retry_after_ms); a wait that would end after the
 *   deadline (first attempt + max_elapsed_ms) ends the retries instead.
 *   Idempotency: GET, HEAD, PUT, DELETE and OPTIONS are retried; POST and
 *   PATCH only when the request is marked safe (kc_http_req_set_safe: it
 *   carries an idempotency token such as EC2's ClientToken, or a GCP insert
 *   with a deterministic name). One exception: a connection that could not
 *   be established (CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST) sent
 *   nothing, so it is retried whatever the method.
 *   TLS failures (bad certificate, wrong pin) are never retried.
 *
 * TLS
 *   Verification of the peer and host name is always on. A request may add
 *   a CA file, an in-memory CA PEM (instead of the system store) and/or a
 *   pinned public key ("sha256//<base64>[;sha256//...]" as
 *   CURLOPT_PINNEDPUBLICKEY; with a pin the CA check still applies).
 *
 * Tracing
 *   When the logger is at KC_LOG_DEBUG, every attempt logs (component
 *   "http") "METHOD URL" with request headers and body, then "METHOD URL ->
 *   CODE in N ms (attempt k)" with response headers and body (bodies cut at
 *   KC_HTTP_TRACE_MAX bytes). Redacted: the values of Authorization,
 *   Proxy-Authorization, Cookie, Set-Cookie, X-Amz-Security-Token, any
 *   header named in the request's redact list; query parameters that carry
 *   signatures or tokens (X-Amz-Signature, X-Amz-Credential,
 *   X-Amz-Security-Token, access_token, sig, signature, token, key);
 *   JSON members and form fields named like secrets (private_key,
 *   client_secret, access_token, refresh_token, id_token, assertion,
 *   password, secret, token, plus the request's redact list); and every
 *   secret the logger knows (kc_log_add_secret). Streamed bodies are shown
 *   as "<N bytes from fd>".
 *
 * Threads: none. Everything runs on the loop thread. No call blocks: DNS
 * uses curl's asynchronous resolver, fd bodies use uv_fs_* with curl pauses.
 */
#ifndef KC_RECONCILE_HTTP_H
#define KC_RECONCILE_HTTP_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/secret.h"

#include <json-c/json.h>
#include <uv.h>

#define KC_HTTP_TRACE_MAX       4096
#define KC_HTTP_BODY_MAX        (64u << 20) /* default response body cap */
#define KC_HTTP_TIMEOUT_MS      60000       /* default per-attempt timeout */
#define KC_HTTP_CONNECT_MS      10000       /* default connect timeout */
#define KC_HTTP_MAX_ATTEMPTS    5
#define KC_HTTP_BASE_MS         250
#define KC_HTTP_MAX_BACKOFF_MS  20000
#define KC_HTTP_MAX_ELAPSED_MS  120000
#define KC_HTTP_MAX_RETRY_AFTER 60000

struct kc_http;
struct kc_http_req;

enum kc_http_method {
    KC_HTTP_GET = 0,
    KC_HTTP_HEAD,
    KC_HTTP_POST,
    KC_HTTP_PUT,
    KC_HTTP_PATCH,
    KC_HTTP_DELETE,
    KC_HTTP_OPTIONS,
    KC_HTTP_METHOD_COUNT,
};

/* "GET", "POST"...; never NULL for a valid method. */
const char *kc_http_method_name(enum kc_http_method m);

/* A classifier's verdict on a finished attempt. */
enum kc_http_verdict {
    KC_HTTP_DEFAULT = 0, /* no opinion: apply the built-in rules */
    KC_HTTP_DONE,        /* final: call back with this response */
    KC_HTTP_RETRY,       /* retryable (still subject to idempotency/bounds) */
    KC_HTTP_FAIL,        /* final, even if the built-in rules would retry */
};

/* Called on the loop after each attempt that got an HTTP response (not on
 * transport errors). REQ's code, headers (kc_http_resp_header) and body are
 * those of this attempt. Example: EC2 answers throttling with 503 or 400 and
 * <Code>RequestLimitExceeded</Code> in the body. */
typedef enum kc_http_verdict (*kc_http_classify_fn)(
    const struct kc_http_req *req, void *arg);

/* The retry policy. A zeroed struct means the defaults (KC_HTTP_* above). It
 * is copied by kc_http_send (extra_codes and classify_arg are borrowed until
 * the callback; usually they are static). */
struct kc_http_retry {
    unsigned max_attempts;   /* 0: KC_HTTP_MAX_ATTEMPTS; 1: never retry */
    uint32_t base_ms;        /* 0: KC_HTTP_BASE_MS */
    uint32_t max_backoff_ms; /* 0: KC_HTTP_MAX_BACKOFF_MS */
    uint64_t max_elapsed_ms; /* 0: KC_HTTP_MAX_ELAPSED_MS; from first start */
    uint32_t max_retry_after_ms; /* 0: KC_HTTP_MAX_RETRY_AFTER */
    bool ignore_retry_after;     /* use the jittered backoff only */
    const long *extra_codes;     /* more retryable HTTP statuses */
    size_t nextra_codes;
    kc_http_classify_fn classify; /* optional */
    void *classify_arg;
};

/* Called on the loop before every attempt (the first one included), e.g. to
 * sign the request again (SigV4's date) or set a fresh bearer token with
 * kc_http_req_set_header*. A negative return ends the request with that
 * status and ERR's message. */
typedef int (*kc_http_prepare_fn)(struct kc_http_req *req, void *arg,
                                  struct kc_err *err);

/* Per-request options. Copied by kc_http_send (strings too), except the
 * pointers noted as borrowed. A zeroed struct is valid (all defaults). */
struct kc_http_opts {
    long timeout_ms;         /* per attempt; 0: KC_HTTP_TIMEOUT_MS; <0: none */
    long connect_timeout_ms; /* 0: KC_HTTP_CONNECT_MS */
    struct kc_http_retry retry;
    const char *ca_file;       /* PEM file of trusted CAs (replaces system) */
    const char *ca_pem;        /* in-memory PEM of trusted CAs */
    const char *pinned_pubkey; /* "sha256//<base64>" (';'-separated list) */
    /* host→address mappings for this request, CURLOPT_RESOLVE syntax
     * "HOST:PORT:ADDRESS" (e.g. "kms.example.com:443:203.0.113.5"). Applied
     * with CURLOPT_CONNECT_TO so that the mapping stays with this request:
     * CURLOPT_RESOLVE entries would go into the DNS cache every request
     * shares. TLS still checks the certificate against HOST. */
    const char *const *resolve;
    size_t nresolve;
    size_t max_body;            /* response body cap; 0: KC_HTTP_BODY_MAX */
    kc_http_prepare_fn prepare; /* optional; borrowed */
    void *prepare_arg;          /* borrowed */
    bool follow_redirects;      /* off by default; https targets only */
};

/* Counters since kc_http_new(). "attempts" counts requests on the wire
 * (each retry is one more), by_method the same split per method. */
struct kc_http_stats {
    uint64_t sends;    /* kc_http_send calls that started */
    uint64_t attempts; /* requests sent on the wire (retries included) */
    uint64_t by_method[KC_HTTP_METHOD_COUNT]; /* attempts per method */
    uint64_t retries;                         /* attempts after the first */
    uint64_t failures;                        /* callbacks with status < 0 */
    uint64_t bytes_up, bytes_down;
    uint64_t connects; /* new connections made (the rest were reused) */
    uint64_t live;     /* requests not yet called back */
};

struct kc_http_config {
    uv_loop_t *loop;           /* required; borrowed for the client's life */
    struct kc_log *log;        /* optional; borrowed; tracing at KC_LOG_DEBUG */
    const char *user_agent;    /* NULL: "kmsctl/<version>" */
    uint64_t seed;             /* jitter RNG seed; 0: from time and pid */
    long max_host_connections; /* 0: 16 per host (curl queues the rest) */
};

/* Creates the client. *OUT is freed by kc_http_close(). */
int kc_http_new(const struct kc_http_config *cfg, struct kc_http **out,
                struct kc_err *err);
/* Cancels every live request (their callbacks run later from the loop with
 * KC_ECANCELED), closes the handles and frees the client once the loop has
 * run their close callbacks: the caller keeps running the loop until it
 * exits. NULL-safe. Do not use HTTP after this call. */
void kc_http_close(struct kc_http *http);
/* Ends REQ (if still live) with KC_ECANCELED; its callback runs later from
 * the loop. Requests already called back are ignored. */
void kc_http_cancel(struct kc_http *http, struct kc_http_req *req);
/* kc_http_cancel for every live request (Ctrl-C). */
void kc_http_cancel_all(struct kc_http *http);
/* Ctrl-C: the retries of requests that may safely stop end now, and none of
 * theirs starts again: a request waiting out its backoff (or not started
 * yet) is called back with KC_ECANCELED ("interrupted instead of retrying
 * after HTTP 503"), and an attempt in flight finishes but is not retried.
 * May stop: a read (GET, HEAD, OPTIONS, or kc_http_req_set_read), or any
 * request none of whose attempts may have reached the server (nothing sent,
 * or only connection failures). A write that may have arrived keeps its
 * retries, so that it reaches a known outcome (or fails and its caller's
 * write-ahead intent lets the next run find out). First attempts of
 * requests sent later go out as usual (an op reaching a safe point may
 * need them); only their retries are refused. */
void kc_http_interrupt(struct kc_http *http);
void kc_http_get_stats(const struct kc_http *http, struct kc_http_stats *out);

typedef void (*kc_http_cb)(struct kc_http_req *req, int status);

struct kc_http_header {
    char *name;
    char *value;
};

struct kc_http_req {
    /* public */
    void *data; /* the caller's */

    /* read-only: valid in the callback (and in classify/prepare hooks) */
    enum kc_http_method method;
    char *url;
    long code;           /* HTTP status of the last attempt; 0 if none */
    struct kc_buf body;  /* response body (not when downloading to an fd with
                            a 2xx status: then it holds nothing) */
    struct kc_err err;   /* set when status < 0 */
    int curl_code;       /* CURLcode of the last attempt (0: none) */
    unsigned attempts;   /* attempts made (>= 1 once called back) */
    bool gave_up;        /* final response was retryable, bounds stopped it */
    double total_ms;     /* from kc_http_send to the callback */
    double attempt_ms;   /* duration of the last attempt */
    uint64_t uploaded;   /* bytes of the request body sent (last attempt) */
    uint64_t downloaded; /* bytes written to the download fd (last attempt) */

    /* private: use the functions below */
    struct kc_http_header *req_headers;
    size_t nreq_headers, capreq_headers;
    struct kc_http_header *resp_headers;
    size_t nresp_headers, capresp_headers;
    struct kc_buf req_body;
    char **redact; /* extra names to redact in traces */
    size_t nredact, capredact;
    bool safe; /* retry although the method is not idempotent */
    bool read; /* only reads, whatever the method (kc_http_interrupt) */
    bool trace_bodies_off;
    int upload_fd, download_fd;
    uint64_t upload_offset, upload_length, download_offset;
    bool has_upload_fd, has_download_fd;
    struct kc_http_priv *priv; /* live state while sent */
};

/* Prepares REQ for METHOD on URL (copied). Any previous contents must have
 * been released. */
void kc_http_req_init(struct kc_http_req *req, enum kc_http_method method,
                      const char *url);
/* Frees everything REQ owns; REQ is zeroed afterwards except ->data. Must not
 * be called while REQ is live. NULL-safe. */
void kc_http_req_release(struct kc_http_req *req);

/* Adds a request header (name and value copied; no CR/LF allowed: KC_EINVAL).
 * set_header replaces every header of that name (case-insensitive); a NULL
 * value removes it. */
int kc_http_req_add_header(struct kc_http_req *req, const char *name,
                           const char *value, struct kc_err *err);
int kc_http_req_set_header(struct kc_http_req *req, const char *name,
                           const char *value, struct kc_err *err);
/* As set_header with a secret's bytes (e.g. "Bearer <token>"): PREFIX is
 * prepended. The header's value is also redacted in traces. */
int kc_http_req_set_header_secret(struct kc_http_req *req, const char *name,
                                  const char *prefix,
                                  const struct kc_secret *value,
                                  struct kc_err *err);
/* First request header named NAME, or NULL. Borrowed. */
const char *kc_http_req_header(const struct kc_http_req *req, const char *name);
/* All request headers; borrowed. For signers (SigV4 canonical headers). */
const struct kc_http_header *kc_http_req_headers(const struct kc_http_req *req,
                                                 size_t *n);

/* Appends "KEY=VALUE" (both percent-encoded) to the URL's query. */
int kc_http_req_add_query(struct kc_http_req *req, const char *key,
                          const char *value, struct kc_err *err);

/* Sets the request body (copied) and, when CONTENT_TYPE is not NULL, the
 * Content-Type header. Replaces any earlier body or upload fd. */
int kc_http_req_set_body(struct kc_http_req *req, const void *data, size_t len,
                         const char *content_type, struct kc_err *err);
/* Serialises BODY as the request body with Content-Type application/json.
 * Takes ownership of BODY (one json-c reference), also when it fails. */
int kc_http_req_take_json(struct kc_http_req *req, struct json_object *body,
                          struct kc_err *err);
/* Appends "KEY=VALUE" (percent-encoded, '&'-joined) to a form body and sets
 * Content-Type application/x-www-form-urlencoded. */
int kc_http_req_add_form(struct kc_http_req *req, const char *key,
                         const char *value, struct kc_err *err);
/* The request body built so far (borrowed); for signers. Empty when the body
 * streams from an fd. */
const struct kc_buf *kc_http_req_body(const struct kc_http_req *req);

/* Streams the request body from FD (borrowed, must stay open until the
 * callback): LENGTH bytes from OFFSET (read with uv_fs_read at explicit
 * offsets, so a retry re-sends the same bytes and resumable uploads can send
 * any chunk). Sets Content-Length. */
int kc_http_req_upload_fd(struct kc_http_req *req, int fd, uint64_t offset,
                          uint64_t length, struct kc_err *err);
/* Writes a 2xx response body to FD (borrowed) from OFFSET on (uv_fs_write at
 * explicit offsets; a retry writes again from OFFSET). req->downloaded says
 * how many bytes the final attempt wrote: the caller truncates the file to
 * OFFSET + downloaded if it may have been longer. Non-2xx bodies go to
 * req->body as usual, for error messages. */
int kc_http_req_download_fd(struct kc_http_req *req, int fd, uint64_t offset,
                            struct kc_err *err);

/* Marks a POST that only reads (EC2 Describe*, JSON-RPC eth_call): after
 * kc_http_interrupt its retries stop like a GET's. */
void kc_http_req_set_read(struct kc_http_req *req, bool read);
/* Marks a POST/PATCH safe to retry (it carries an idempotency token). */
void kc_http_req_set_safe(struct kc_http_req *req, bool safe);
/* Adds a header name, JSON member or form field to redact in traces. */
void kc_http_req_redact(struct kc_http_req *req, const char *name);
/* Traces only the sizes of the bodies (e.g. for binary or secret bodies). */
void kc_http_req_trace_bodies(struct kc_http_req *req, bool on);

/* Starts REQ (see the contract at the top). OPTS may be NULL. */
int kc_http_send(struct kc_http *http, struct kc_http_req *req,
                 const struct kc_http_opts *opts, kc_http_cb cb,
                 struct kc_err *err);

/* Response header NAME of the final attempt (case-insensitive; the last one
 * when repeated), or NULL. Borrowed from REQ. */
const char *kc_http_resp_header(const struct kc_http_req *req,
                                const char *name);
/* Parses the response body as JSON (depth-limited); *OUT holds one reference
 * (caller puts). Errors name the request ("GET URL: ..."). */
int kc_http_resp_json(const struct kc_http_req *req, struct json_object **out,
                      struct kc_err *err);
/* true when the final status is 2xx. */
bool kc_http_req_ok(const struct kc_http_req *req);
/* Turns a finished request into an error: when STATUS < 0 copies req->err;
 * when the HTTP status is not 2xx sets "METHOD URL: CODE <first 200 bytes of
 * the body, redacted>" with code KC_EREMOTE; returns 0 on a 2xx. The URL is
 * shown without its query. */
int kc_http_req_check(const struct kc_http_req *req, int status,
                      struct kc_err *err);

/* Translates a CURLcode into ERR with curl's text (KC_ETIMEDOUT for
 * timeouts, KC_ECRYPTO for TLS/pin failures, KC_EHTTP otherwise). */
int kc_err_from_curl(struct kc_err *err, int curl_code, const char *errbuf,
                     const char *what);

/* Percent-encodes S (RFC 3986 unreserved kept) into a new string. */
char *kc_http_escape(const char *s);
/* Parses a Retry-After value (delta-seconds or HTTP-date) relative to NOW
 * (seconds since the epoch) into milliseconds to wait (>= 0). Returns -1 if
 * it is neither. Exposed for tests. */
int64_t kc_http_parse_retry_after(const char *value, int64_t now);

#endif
