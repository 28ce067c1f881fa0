/* reconcile/http.c: libcurl multi on the libuv loop, retries, tracing. */
#include "reconcile/http.h"

#include <ctype.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <uv.h>

#include "reconcile/hex.h"
#include "reconcile/json.h"

#define HTTP_IOBUF        (256u << 10)
#define HTTP_MAX_HEADERS  256
#define HTTP_HEADER_BYTES (64u << 10)
#define HTTP_DEFAULT_HOST 64

enum priv_state {
    ST_RUNNING, /* the easy handle is in the multi */
    ST_WAITING, /* on the wait list: backoff before the next attempt */
    ST_IOWAIT,  /* the attempt ended, a uv_fs request is still in flight */
    ST_DONE,    /* on the done queue: the callback is due */
};

struct http_sock {
    uv_poll_t poll;
    struct kc_http *http;
    curl_socket_t fd;
    struct http_sock *next, *prev;
};

struct kc_http_priv {
    struct kc_http *http;
    struct kc_http_req *req;
    kc_http_cb cb;
    enum priv_state state;
    struct kc_http_opts opts; /* strings below replace the borrowed ones */
    char *ca_file, *ca_pem, *pinned;
    struct curl_slist *connect_to;
    struct curl_slist *headers;
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
    uint64_t start_ms, attempt_start_ms, deadline_ms, wake_ms;
    int final_status;
    bool canceled;
    long cur_code; /* from the status line being received */
    size_t header_bytes;
    bool too_big;
    int pending_result; /* CURLcode of an attempt waiting for its I/O */
    /* fd streaming */
    uv_fs_t fsreq;
    bool fs_busy;
    char *iobuf;
    size_t io_len, io_pos, io_cap;
    uint64_t io_off;  /* upload: next file offset to read */
    uint64_t io_left; /* upload: bytes still to read from the file */
    bool paused;      /* curl is paused waiting for our I/O */
    int io_error;     /* uv error of the fd I/O */
    struct kc_http_priv *next, *prev; /* live list */
    struct kc_http_priv *qnext;       /* wait list / done queue */
};

struct kc_http {
    uv_loop_t *loop;
    struct kc_log *log;
    CURLM *multi;
    CURLSH *share;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t sched; /* retries' backoff and deferred callbacks */
    char *user_agent;
    uint64_t rng;
    long max_host;
    struct kc_http_stats stats;
    struct kc_http_priv *live;
    struct kc_http_priv *waiting;
    struct kc_http_priv *done_head, *done_tail;
    struct http_sock *socks;
    int nhandles;
    bool closing, torn_down, in_sched;
};

static const char *const method_names[KC_HTTP_METHOD_COUNT] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
};

/* Header names whose values never reach a trace. */
static const char *const redact_headers[] = {
    "authorization", "proxy-authorization",  "cookie",
    "set-cookie",    "x-amz-security-token", "x-goog-iap-jwt-assertion",
};

/* Query parameters, JSON members and form fields that carry secrets. */
static const char *const redact_names[] = {
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "private_key",
    "assertion",
    "password",
    "secret",
    "token",
    "sig",
    "signature",
    "key",
    "secretaccesskey",
    "sessiontoken",
    "private_key_id",
};

static void http_arm_sched(struct kc_http *http);
static void attempt_start(struct kc_http_priv *priv);
static void attempt_classify(struct kc_http_priv *priv, int result);
static void http_check_teardown(struct kc_http *http);

const char *kc_http_method_name(enum kc_http_method m)
{
    if ((unsigned)m >= KC_HTTP_METHOD_COUNT)
        return "?";
    return method_names[m];
}

static double now_ms_f(void)
{
    return (double)uv_hrtime() / 1e6;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static uint64_t http_rand(struct kc_http *http)
{
    /* splitmix64: small, seedable, good enough for jitter. */
    uint64_t z = (http->rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int kc_err_from_curl(struct kc_err *err, int curl_code, const char *errbuf,
                     const char *what)
{
    const char *text =
        errbuf && errbuf[0] ? errbuf : curl_easy_strerror((CURLcode)curl_code);
    int code = KC_EHTTP;

    switch (curl_code) {
    case CURLE_OPERATION_TIMEDOUT:
        code = KC_ETIMEDOUT;
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
        code = KC_ECRYPTO;
        break;
    default:
        break;
    }
    return kc_err_set(err, code, "%s: %s", what, text);
}

static bool curl_retryable(int rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Nothing was sent: safe to retry whatever the method. */
static bool curl_never_sent(int rc)
{
    return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT;
}

static bool status_retryable(long code, const struct kc_http_retry *r)
{
    switch (code) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
        return true;
    default:
        break;
    }
    for (size_t i = 0; i < r->nextra_codes; i++)
        if (r->extra_codes[i] == code)
            return true;
    return false;
}

static bool req_idempotent(const struct kc_http_req *req)
{
    switch (req->method) {
    case KC_HTTP_GET:
    case KC_HTTP_HEAD:
    case KC_HTTP_PUT:
    case KC_HTTP_DELETE:
    case KC_HTTP_OPTIONS:
        return true;
    default:
        return req->safe;
    }
}

int64_t kc_http_parse_retry_after(const char *value, int64_t now)
{
    const char *p = value;
    int64_t secs = 0;
    time_t t;

    if (!value)
        return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (isdigit((unsigned char)*p)) {
        while (isdigit((unsigned char)*p)) {
            if (secs > 86400 * 365)
                return -1;
            secs = secs * 10 + (*p - '0');
            p++;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0')
            return -1;
        return secs * 1000;
    }
    t = curl_getdate(p, NULL);
    if (t == (time_t)-1)
        return -1;
    if ((int64_t)t <= now)
        return 0;
    return ((int64_t)t - now) * 1000;
}

char *kc_http_escape(const char *s)
{
    struct kc_buf b = { 0 };

    /* Unbounded: it only fails by aborting on out of memory. */
    (void)kc_hex_pct_encode(&b, s, strlen(s));
    return kc_buf_detach(&b, NULL);
}

/* ---- requests ---- */

void kc_http_req_init(struct kc_http_req *req, enum kc_http_method method,
                      const char *url)
{
    void *data = req->data;

    memset(req, 0, sizeof(*req));
    req->data = data;
    req->method = method;
    req->url = kc_xstrdup(url ? url : "");
    req->upload_fd = -1;
    req->download_fd = -1;
}

static void headers_free(struct kc_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        if (h[i].value)
            kc_memzero(h[i].value, strlen(h[i].value));
        free(h[i].value);
    }
    free(h);
}

void kc_http_req_release(struct kc_http_req *req)
{
    void *data;

    if (!req)
        return;
    if (req->priv)
        KC_BUG("kc_http_req_release on a live request");
    data = req->data;
    free(req->url);
    kc_buf_release(&req->body);
    kc_buf_release_wipe(&req->req_body);
    headers_free(req->req_headers, req->nreq_headers);
    headers_free(req->resp_headers, req->nresp_headers);
    for (size_t i = 0; i < req->nredact; i++)
        free(req->redact[i]);
    free(req->redact);
    memset(req, 0, sizeof(*req));
    req->data = data;
    req->upload_fd = -1;
    req->download_fd = -1;
}

static bool has_crlf(const char *s)
{
    return strchr(s, '\r') || strchr(s, '\n');
}

int kc_http_req_add_header(struct kc_http_req *req, const char *name,
                           const char *value, struct kc_err *err)
{
    if (!name || !*name || has_crlf(name) || strchr(name, ':') ||
        strchr(name, ' '))
        return kc_err_set(err, KC_EINVAL, "invalid header name '%s'",
                          name ? name : "(null)");
    if (!value || has_crlf(value))
        return kc_err_set(err, KC_EINVAL,
                          "invalid value for header '%s' (line break)", name);
    kc_xgrow(&req->req_headers, &req->capreq_headers, req->nreq_headers + 1,
             sizeof(*req->req_headers));
    req->req_headers[req->nreq_headers].name = kc_xstrdup(name);
    req->req_headers[req->nreq_headers].value = kc_xstrdup(value);
    req->nreq_headers++;
    return 0;
}

static void req_del_header(struct kc_http_req *req, const char *name)
{
    size_t j = 0;

    for (size_t i = 0; i < req->nreq_headers; i++) {
        if (strcasecmp(req->req_headers[i].name, name) == 0) {
            free(req->req_headers[i].name);
            kc_memzero(req->req_headers[i].value,
                       strlen(req->req_headers[i].value));
            free(req->req_headers[i].value);
            continue;
        }
        req->req_headers[j++] = req->req_headers[i];
    }
    req->nreq_headers = j;
}

int kc_http_req_set_header(struct kc_http_req *req, const char *name,
                           const char *value, struct kc_err *err)
{
    if (value && has_crlf(value))
        return kc_err_set(err, KC_EINVAL,
                          "invalid value for header '%s' (line break)", name);
    req_del_header(req, name);
    if (!value)
        return 0;
    return kc_http_req_add_header(req, name, value, err);
}

int kc_http_req_set_header_secret(struct kc_http_req *req, const char *name,
                                  const char *prefix,
                                  const struct kc_secret *value,
                                  struct kc_err *err)
{
    struct kc_buf b = { 0 };
    size_t len = 0;
    const char *bytes = kc_secret_reveal(value, &len);
    int ret;

    if (memchr(bytes, '\r', len) || memchr(bytes, '\n', len) ||
        strlen(bytes) != len)
        return kc_err_set(err, KC_EINVAL,
                          "invalid secret value for header '%s'", name);
    kc_buf_addstr(&b, prefix ? prefix : "");
    kc_buf_add(&b, bytes, len);
    ret = kc_http_req_set_header(req, name, kc_buf_str(&b), err);
    kc_buf_release_wipe(&b);
    if (ret == 0)
        kc_http_req_redact(req, name);
    return ret;
}

const char *kc_http_req_header(const struct kc_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nreq_headers; i++)
        if (strcasecmp(req->req_headers[i].name, name) == 0)
            return req->req_headers[i].value;
    return NULL;
}

const struct kc_http_header *kc_http_req_headers(const struct kc_http_req *req,
                                                 size_t *n)
{
    *n = req->nreq_headers;
    return req->req_headers;
}

int kc_http_req_add_query(struct kc_http_req *req, const char *key,
                          const char *value, struct kc_err *err)
{
    char *k = kc_http_escape(key), *v = kc_http_escape(value ? value : "");
    char *url;

    (void)err;
    url = kc_xasprintf("%s%c%s=%s", req->url, strchr(req->url, '?') ? '&' : '?',
                       k, v);
    free(req->url);
    req->url = url;
    free(k);
    free(v);
    return 0;
}

int kc_http_req_set_body(struct kc_http_req *req, const void *data, size_t len,
                         const char *content_type, struct kc_err *err)
{
    int ret;

    req->has_upload_fd = false;
    req->upload_fd = -1;
    kc_buf_release_wipe(&req->req_body);
    if (len && kc_buf_add(&req->req_body, data, len) < 0)
        return kc_err_set(err, KC_ERANGE, "request body too large");
    if (content_type) {
        ret = kc_http_req_set_header(req, "Content-Type", content_type, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int kc_http_req_take_json(struct kc_http_req *req, struct json_object *body,
                          struct kc_err *err)
{
    const char *text;
    size_t len = 0;
    int ret;

    if (!body)
        return kc_err_set(err, KC_EINVAL, "no JSON body");
    text =
        json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN, &len);
    if (!text) {
        json_object_put(body);
        return kc_err_set(err, KC_EINVAL, "cannot serialise the JSON body");
    }
    ret = kc_http_req_set_body(req, text, len, "application/json", err);
    json_object_put(body);
    return ret;
}

int kc_http_req_add_form(struct kc_http_req *req, const char *key,
                         const char *value, struct kc_err *err)
{
    char *k = kc_http_escape(key), *v = kc_http_escape(value ? value : "");
    int ret = 0;

    req->has_upload_fd = false;
    if (kc_buf_addf(&req->req_body, "%s%s=%s", req->req_body.len ? "&" : "", k,
                    v) < 0)
        ret = kc_err_set(err, KC_ERANGE, "form body too large");
    free(k);
    free(v);
    if (ret == 0 && !kc_http_req_header(req, "Content-Type"))
        ret = kc_http_req_set_header(req, "Content-Type",
                                     "application/x-www-form-urlencoded", err);
    return ret;
}

const struct kc_buf *kc_http_req_body(const struct kc_http_req *req)
{
    return &req->req_body;
}

int kc_http_req_upload_fd(struct kc_http_req *req, int fd, uint64_t offset,
                          uint64_t length, struct kc_err *err)
{
    if (fd < 0)
        return kc_err_set(err, KC_EINVAL, "invalid upload fd %d", fd);
    kc_buf_release_wipe(&req->req_body);
    req->has_upload_fd = true;
    req->upload_fd = fd;
    req->upload_offset = offset;
    req->upload_length = length;
    return 0;
}

int kc_http_req_download_fd(struct kc_http_req *req, int fd, uint64_t offset,
                            struct kc_err *err)
{
    if (fd < 0)
        return kc_err_set(err, KC_EINVAL, "invalid download fd %d", fd);
    req->has_download_fd = true;
    req->download_fd = fd;
    req->download_offset = offset;
    return 0;
}

void kc_http_req_set_safe(struct kc_http_req *req, bool safe)
{
    req->safe = safe;
}

void kc_http_req_redact(struct kc_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nredact; i++)
        if (strcasecmp(req->redact[i], name) == 0)
            return;
    kc_xgrow(&req->redact, &req->capredact, req->nredact + 1,
             sizeof(*req->redact));
    req->redact[req->nredact++] = kc_xstrdup(name);
}

void kc_http_req_trace_bodies(struct kc_http_req *req, bool on)
{
    req->trace_bodies_off = !on;
}

const char *kc_http_resp_header(const struct kc_http_req *req, const char *name)
{
    for (size_t i = req->nresp_headers; i-- > 0;)
        if (strcasecmp(req->resp_headers[i].name, name) == 0)
            return req->resp_headers[i].value;
    return NULL;
}

bool kc_http_req_ok(const struct kc_http_req *req)
{
    return req->code >= 200 && req->code < 300;
}

/* The URL without its query and fragment, for error messages. */
static char *url_noquery(const char *url)
{
    size_t n = strcspn(url, "?#");

    return kc_xstrndup(url, n);
}

int kc_http_resp_json(const struct kc_http_req *req, struct json_object **out,
                      struct kc_err *err)
{
    char *u = url_noquery(req->url);
    char *what =
        kc_xasprintf("%s %s response", kc_http_method_name(req->method), u);
    int ret;

    ret = kc_json_parse(kc_buf_str(&req->body), req->body.len, what, out, err);
    free(what);
    free(u);
    return ret;
}

/* ---- tracing and redaction ---- */

static bool name_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool req_redacts(const struct kc_http_req *req, const char *name)
{
    if (name_in(name, redact_names, KC_ARRAY_SIZE(redact_names)) ||
        name_in(name, redact_headers, KC_ARRAY_SIZE(redact_headers)))
        return true;
    for (size_t i = 0; i < req->nredact; i++)
        if (strcasecmp(req->redact[i], name) == 0)
            return true;
    return false;
}

static bool header_redacted(const struct kc_http_req *req, const char *name)
{
    return name_in(name, redact_headers, KC_ARRAY_SIZE(redact_headers)) ||
           req_redacts(req, name);
}

/* Appends "k=v&k=v" with sensitive values replaced. */
static void redact_pairs(const struct kc_http_req *req, const char *s,
                         size_t len, struct kc_buf *out)
{
    size_t i = 0;

    while (i < len) {
        size_t end = i, eq;
        char *key;

        while (end < len && s[end] != '&')
            end++;
        eq = i;
        while (eq < end && s[eq] != '=')
            eq++;
        key = kc_xstrndup(s + i, eq - i);
        if (eq < end && req_redacts(req, key)) {
            kc_buf_add(out, s + i, eq - i);
            kc_buf_addstr(out, "=[redacted]");
        } else {
            kc_buf_add(out, s + i, end - i);
        }
        free(key);
        if (end < len)
            kc_buf_addch(out, '&');
        i = end + 1;
    }
}

static void redact_url(const struct kc_http_req *req, struct kc_buf *out)
{
    const char *q = strchr(req->url, '?');

    if (!q) {
        kc_buf_addstr(out, req->url);
        return;
    }
    kc_buf_add(out, req->url, (size_t)(q - req->url) + 1);
    redact_pairs(req, q + 1, strlen(q + 1), out);
}

static void redact_json(const struct kc_http_req *req, struct json_object *o);

/* A string member that holds JSON itself (an echoed or embedded document)
 * is redacted inside too. */
static void redact_json_string(const struct kc_http_req *req,
                               struct json_object *parent, const char *key,
                               struct json_object *v)
{
    const char *s = json_object_get_string(v);
    int len = json_object_get_string_len(v);
    struct json_tokener *tok;
    struct json_object *inner;

    if (len < 2 || (s[0] != '{' && s[0] != '['))
        return;
    tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
    if (!tok)
        return;
    inner = json_tokener_parse_ex(tok, s, len);
    if (json_tokener_get_error(tok) == json_tokener_success && inner) {
        redact_json(req, inner);
        json_object_object_add(
            parent, key,
            json_object_new_string(
                json_object_to_json_string_ext(inner, JSON_C_TO_STRING_PLAIN)));
    }
    json_object_put(inner);
    json_tokener_free(tok);
}

static void redact_json(const struct kc_http_req *req, struct json_object *o)
{
    if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);

        for (size_t i = 0; i < n; i++)
            redact_json(req, json_object_array_get_idx(o, i));
        return;
    }
    if (!json_object_is_type(o, json_type_object))
        return;
    json_object_object_foreach (o, k, v) {
        if (req_redacts(req, k) && !json_object_is_type(v, json_type_object) &&
            !json_object_is_type(v, json_type_array) &&
            !json_object_is_type(v, json_type_null)) {
            /* Replacing the value of an existing key keeps the iteration
             * valid (json-c replaces in place). */
            json_object_object_add(o, k, json_object_new_string("[redacted]"));
        } else if (json_object_is_type(v, json_type_string)) {
            redact_json_string(req, o, k, v);
        } else {
            redact_json(req, v);
        }
    }
}

/* Appends a traceable rendering of BODY (LEN bytes) to OUT. */
static void trace_body(const struct kc_http_req *req, const char *body,
                       size_t len, const char *ctype, struct kc_buf *out)
{
    struct kc_buf tmp = { 0 };
    struct json_object *j = NULL;

    if (len == 0)
        return;
    if (req->trace_bodies_off) {
        kc_buf_addf(out, "<%zu bytes>", len);
        return;
    }
    if ((len && (body[0] == '{' || body[0] == '[')) ||
        (ctype && strstr(ctype, "json"))) {
        struct json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);

        if (tok) {
            j = json_tokener_parse_ex(tok, body,
                                      (int)(len > INT32_MAX ? 0 : len));
            if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(j);
                j = NULL;
            }
            json_tokener_free(tok);
        }
    }
    if (j) {
        redact_json(req, j);
        kc_buf_addstr(
            &tmp, json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
    } else if (ctype && strstr(ctype, "x-www-form-urlencoded")) {
        redact_pairs(req, body, len, &tmp);
    } else {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)body[i];

            kc_buf_addch(&tmp,
                         (c >= 0x20 && c < 0x7f) || c == '\n' ? (char)c : '.');
        }
    }
    if (tmp.len > KC_HTTP_TRACE_MAX) {
        kc_buf_add(out, tmp.data, KC_HTTP_TRACE_MAX);
        kc_buf_addf(out, "... (%zu bytes)", len);
    } else {
        kc_buf_add(out, kc_buf_str(&tmp), tmp.len);
    }
    kc_buf_release_wipe(&tmp);
}

static void trace_headers(const struct kc_http_req *req,
                          const struct kc_http_header *h, size_t n,
                          struct kc_buf *out)
{
    for (size_t i = 0; i < n; i++)
        kc_buf_addf(out, "\n  %s: %s", h[i].name,
                    header_redacted(req, h[i].name) ? "[redacted]"
                                                    : h[i].value);
}

static bool tracing(const struct kc_http *http)
{
    return http->log && kc_log_enabled(http->log, KC_LOG_DEBUG);
}

/* Ends a trace LINE with the headers H[N] and then, when FD_DIR is set
 * ("from", "to"), the FD_BYTES that went through a file descriptor, else
 * BODY (of type CTYPE); logs the line and wipes it. */
static void trace_end(struct kc_http_priv *priv, struct kc_buf *line,
                      const struct kc_http_header *h, size_t n,
                      const char *fd_dir, uint64_t fd_bytes,
                      const struct kc_buf *body, const char *ctype)
{
    struct kc_http_req *req = priv->req;

    trace_headers(req, h, n, line);
    if (fd_dir) {
        kc_buf_addf(line, "\n  <%llu bytes %s fd>",
                    (unsigned long long)fd_bytes, fd_dir);
    } else if (body->len) {
        kc_buf_addstr(line, "\n  ");
        trace_body(req, body->data, body->len, ctype, line);
    }
    kc_log(priv->http->log, KC_LOG_DEBUG, "http", "%s", kc_buf_str(line));
    kc_buf_release_wipe(line);
}

static void trace_request(struct kc_http_priv *priv)
{
    struct kc_http_req *req = priv->req;
    struct kc_buf line = { 0 };

    kc_buf_addf(&line, "> %s ", kc_http_method_name(req->method));
    redact_url(req, &line);
    kc_buf_addf(&line, " (attempt %u)", req->attempts);
    trace_end(priv, &line, req->req_headers, req->nreq_headers,
              req->has_upload_fd ? "from" : NULL, req->upload_length,
              &req->req_body, kc_http_req_header(req, "Content-Type"));
}

static void trace_response(struct kc_http_priv *priv, int result)
{
    struct kc_http_req *req = priv->req;
    struct kc_buf line = { 0 };

    kc_buf_addf(&line, "< %s ", kc_http_method_name(req->method));
    redact_url(req, &line);
    if (result != CURLE_OK)
        kc_buf_addf(&line, " -> error: %s",
                    priv->errbuf[0] ? priv->errbuf
                                    : curl_easy_strerror((CURLcode)result));
    else
        kc_buf_addf(&line, " -> %ld", req->code);
    kc_buf_addf(&line, " in %.1f ms (attempt %u)", req->attempt_ms,
                req->attempts);
    trace_end(
        priv, &line, req->resp_headers, req->nresp_headers,
        req->has_download_fd && req->code >= 200 && req->code < 300 ? "to"
                                                                    : NULL,
        req->downloaded, &req->body, kc_http_resp_header(req, "Content-Type"));
}

int kc_http_req_check(const struct kc_http_req *req, int status,
                      struct kc_err *err)
{
    struct kc_buf snippet = { 0 };
    char *u;
    int ret;

    if (status < 0) {
        if (err && err != &req->err)
            *err = req->err;
        return req->err.code ? req->err.code : status;
    }
    if (kc_http_req_ok(req))
        return 0;
    u = url_noquery(req->url);
    if (req->body.len) {
        struct kc_http_req tmp = *req;

        tmp.trace_bodies_off = false;
        trace_body(&tmp, req->body.data,
                   req->body.len < 2048 ? req->body.len : 2048,
                   kc_http_resp_header(req, "Content-Type"), &snippet);
    }
    for (size_t i = 0; i < snippet.len; i++)
        if (snippet.data[i] == '\n')
            snippet.data[i] = ' ';
    ret = kc_err_set(err, KC_EREMOTE, "%s %s: %ld%s%.200s",
                     kc_http_method_name(req->method), u, req->code,
                     snippet.len ? " " : "", kc_buf_str(&snippet));
    free(u);
    kc_buf_release(&snippet);
    return ret;
}

/* ---- the client ---- */

static void on_handle_close(uv_handle_t *h)
{
    struct kc_http *http = h->data;

    http->nhandles--;
    if (http->closing && http->nhandles == 0) {
        free(http->user_agent);
        free(http);
    }
}

static void on_sock_close(uv_handle_t *h)
{
    struct http_sock *hs = kc_container_of(h, struct http_sock, poll);
    struct kc_http *http = hs->http;

    free(hs);
    http->nhandles--;
    if (http->closing && http->nhandles == 0) {
        free(http->user_agent);
        free(http);
    }
}

static void sock_close(struct kc_http *http, struct http_sock *hs)
{
    int rc = uv_poll_stop(&hs->poll);

    if (rc < 0)
        kc_log(http->log, KC_LOG_WARN, "http", "uv_poll_stop: %s",
               uv_strerror(rc));
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        http->socks = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    uv_close((uv_handle_t *)&hs->poll, on_sock_close);
}

static void drain_done(struct kc_http *http)
{
    CURLMsg *msg;
    int left = 0;

    while ((msg = curl_multi_info_read(http->multi, &left))) {
        struct kc_http_priv *priv = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        CURLMcode mc;

        if (msg->msg != CURLMSG_DONE)
            continue;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&priv) !=
                CURLE_OK ||
            !priv)
            KC_BUG("curl easy handle without its request");
        mc = curl_multi_remove_handle(http->multi, easy);
        if (mc != CURLM_OK)
            kc_log(http->log, KC_LOG_WARN, "http",
                   "curl_multi_remove_handle: %s", curl_multi_strerror(mc));
        attempt_classify(priv, (int)result);
    }
}

static void socket_action(struct kc_http *http, curl_socket_t fd, int flags)
{
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(http->multi, fd, flags, &running);

    if (mc != CURLM_OK)
        kc_log(http->log, KC_LOG_ERROR, "http", "curl_multi_socket_action: %s",
               curl_multi_strerror(mc));
    drain_done(http);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct http_sock *hs = kc_container_of(h, struct http_sock, poll);
    int flags = 0;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    socket_action(hs->http, hs->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
    socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                          void *socketp)
{
    struct kc_http *http = userp;
    struct http_sock *hs = socketp;
    int events = 0, rc;
    CURLMcode mc;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (hs) {
            mc = curl_multi_assign(http->multi, s, NULL);
            if (mc != CURLM_OK)
                kc_log(http->log, KC_LOG_WARN, "http", "curl_multi_assign: %s",
                       curl_multi_strerror(mc));
            sock_close(http, hs);
        }
        return 0;
    }
    if (!hs) {
        hs = kc_xcalloc(1, sizeof(*hs));
        hs->http = http;
        hs->fd = s;
        rc = uv_poll_init_socket(http->loop, &hs->poll, s);
        if (rc < 0) {
            kc_log(http->log, KC_LOG_ERROR, "http", "uv_poll_init_socket: %s",
                   uv_strerror(rc));
            free(hs);
            return -1;
        }
        hs->poll.data = http;
        http->nhandles++;
        hs->next = http->socks;
        if (hs->next)
            hs->next->prev = hs;
        http->socks = hs;
        mc = curl_multi_assign(http->multi, s, hs);
        if (mc != CURLM_OK) {
            kc_log(http->log, KC_LOG_ERROR, "http", "curl_multi_assign: %s",
                   curl_multi_strerror(mc));
            sock_close(http, hs);
            return -1;
        }
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    rc = uv_poll_start(&hs->poll, events, on_poll);
    if (rc < 0) {
        kc_log(http->log, KC_LOG_ERROR, "http", "uv_poll_start: %s",
               uv_strerror(rc));
        return -1;
    }
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct kc_http *http = userp;
    int rc;

    (void)multi;
    if (timeout_ms < 0)
        rc = uv_timer_stop(&http->timer);
    else
        rc = uv_timer_start(&http->timer, on_timer, (uint64_t)timeout_ms, 0);
    if (rc < 0) {
        kc_log(http->log, KC_LOG_ERROR, "http", "uv_timer: %s",
               uv_strerror(rc));
        return -1;
    }
    return 0;
}

#define MSET(opt, val)                                               \
    do {                                                             \
        CURLMcode mc_ = curl_multi_setopt(http->multi, opt, val);    \
        if (mc_ != CURLM_OK) {                                       \
            ret = kc_err_set(err, KC_EHTTP, "curl_multi_setopt: %s", \
                             curl_multi_strerror(mc_));              \
            goto out;                                                \
        }                                                            \
    } while (0)

int kc_http_new(const struct kc_http_config *cfg, struct kc_http **out,
                struct kc_err *err)
{
    struct kc_http *http;
    int ret = 0, rc;

    *out = NULL;
    if (!cfg || !cfg->loop)
        return kc_err_set(err, KC_EINVAL, "http: no loop");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return kc_err_set(err, KC_EHTTP, "curl_global_init failed");
    http = kc_xcalloc(1, sizeof(*http));
    http->loop = cfg->loop;
    http->log = cfg->log;
    http->user_agent = cfg->user_agent ? kc_xstrdup(cfg->user_agent)
                                       : kc_xstrdup("kmsctl/" KC_VERSION);
    http->rng =
        cfg->seed ? cfg->seed : (uv_hrtime() ^ ((uint64_t)getpid() << 32));
    http->max_host = cfg->max_host_connections > 0 ? cfg->max_host_connections
                                                   : HTTP_DEFAULT_HOST;
    http->multi = curl_multi_init();
    http->share = curl_share_init();
    if (!http->multi || !http->share) {
        ret = kc_err_set(err, KC_EHTTP, "curl_multi_init failed");
        goto out;
    }
    /* One loop thread: the share needs no lock callbacks. */
    if (curl_share_setopt(http->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) !=
            CURLSHE_OK) {
        ret = kc_err_set(err, KC_EHTTP, "curl_share_setopt failed");
        goto out;
    }
    MSET(CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    MSET(CURLMOPT_SOCKETDATA, http);
    MSET(CURLMOPT_TIMERFUNCTION, on_curl_timer);
    MSET(CURLMOPT_TIMERDATA, http);
    MSET(CURLMOPT_MAX_HOST_CONNECTIONS, http->max_host);
    rc = uv_timer_init(http->loop, &http->timer);
    if (rc < 0) {
        ret = kc_err_from_uv(err, rc, "http: uv_timer_init");
        goto out;
    }
    http->timer.data = http;
    http->nhandles++;
    rc = uv_timer_init(http->loop, &http->sched);
    if (rc < 0) {
        ret = kc_err_from_uv(err, rc, "http: uv_timer_init");
        goto out;
    }
    http->sched.data = http;
    http->nhandles++;
out:
    if (ret < 0) {
        if (http->share)
            curl_share_cleanup(http->share);
        if (http->multi)
            curl_multi_cleanup(http->multi);
        http->closing = true;
        if (http->nhandles == 0) {
            free(http->user_agent);
            free(http);
        } else {
            /* Handles close on the loop; the struct goes with the last. */
            if (http->nhandles >= 1)
                uv_close((uv_handle_t *)&http->timer, on_handle_close);
            if (http->nhandles >= 2)
                uv_close((uv_handle_t *)&http->sched, on_handle_close);
        }
        return ret;
    }
    *out = http;
    return 0;
}

void kc_http_get_stats(const struct kc_http *http, struct kc_http_stats *out)
{
    *out = http->stats;
}

/* ---- scheduling: backoff waits and deferred callbacks ---- */

static void live_unlink(struct kc_http_priv *priv)
{
    struct kc_http *http = priv->http;

    if (priv->prev)
        priv->prev->next = priv->next;
    else if (http->live == priv)
        http->live = priv->next;
    if (priv->next)
        priv->next->prev = priv->prev;
    priv->next = priv->prev = NULL;
}

static void waiting_remove(struct kc_http_priv *priv)
{
    struct kc_http_priv **pp = &priv->http->waiting;

    while (*pp && *pp != priv)
        pp = &(*pp)->qnext;
    if (*pp)
        *pp = priv->qnext;
    priv->qnext = NULL;
}

static void priv_free(struct kc_http_priv *priv)
{
    free(priv->ca_file);
    free(priv->ca_pem);
    free(priv->pinned);
    curl_slist_free_all(priv->connect_to);
    curl_slist_free_all(priv->headers);
    free(priv->iobuf);
    free(priv);
}

/* Queues the callback with STATUS. Frees the easy handle if any. */
static void finish(struct kc_http_priv *priv, int status)
{
    struct kc_http *http = priv->http;
    struct kc_http_req *req = priv->req;

    if (priv->easy) {
        curl_easy_cleanup(priv->easy);
        priv->easy = NULL;
    }
    priv->final_status = status;
    if (status < 0 && req->err.code == 0)
        kc_err_set(&req->err, status, "%s", kc_strerror(status));
    priv->state = ST_DONE;
    priv->qnext = NULL;
    if (http->done_tail)
        http->done_tail->qnext = priv;
    else
        http->done_head = priv;
    http->done_tail = priv;
    http_arm_sched(http);
}

static void on_sched(uv_timer_t *t);

static void http_arm_sched(struct kc_http *http)
{
    uint64_t now = now_ms(), wake = UINT64_MAX;
    int rc;

    if (http->in_sched || http->torn_down)
        return; /* on_sched re-arms when it is done */
    if (http->done_head || (http->closing && !http->live))
        wake = now;
    for (struct kc_http_priv *p = http->waiting; p; p = p->qnext)
        if (p->wake_ms < wake)
            wake = p->wake_ms;
    if (wake == UINT64_MAX)
        rc = uv_timer_stop(&http->sched);
    else
        rc = uv_timer_start(&http->sched, on_sched, wake > now ? wake - now : 0,
                            0);
    if (rc < 0)
        KC_BUG("http: uv_timer on the scheduler: %s", uv_strerror(rc));
}

static void deliver(struct kc_http_priv *priv)
{
    struct kc_http *http = priv->http;
    struct kc_http_req *req = priv->req;
    kc_http_cb cb = priv->cb;
    int status = priv->final_status;

    live_unlink(priv);
    req->total_ms = now_ms_f() - (double)priv->start_ms;
    req->priv = NULL;
    http->stats.live--;
    if (status < 0)
        http->stats.failures++;
    if (tracing(http) && status < 0)
        kc_log(http->log, KC_LOG_DEBUG, "http", "%s", req->err.msg);
    priv_free(priv);
    cb(req, status);
}

static void on_sched(uv_timer_t *t)
{
    struct kc_http *http = t->data;
    uint64_t now = now_ms();
    struct kc_http_priv *due = NULL, **pp, *p, *done;

    http->in_sched = true;
    /* Due retries start now (in the order they were queued). */
    pp = &http->waiting;
    while ((p = *pp)) {
        if (p->wake_ms <= now) {
            *pp = p->qnext;
            p->qnext = due;
            due = p;
        } else {
            pp = &p->qnext;
        }
    }
    while (due) {
        p = due;
        due = p->qnext;
        p->qnext = NULL;
        attempt_start(p);
    }
    /* Callbacks queued so far (new ones wait for the next round). */
    done = http->done_head;
    http->done_head = http->done_tail = NULL;
    while (done) {
        p = done;
        done = p->qnext;
        deliver(p);
    }
    http->in_sched = false;
    if (http->closing && !http->live && !http->done_head) {
        http_check_teardown(http);
        return;
    }
    http_arm_sched(http);
}

/* ---- fd streaming (uv_fs on the thread pool; curl paused meanwhile) ---- */

static void io_resume(struct kc_http_priv *priv)
{
    CURLcode rc;

    if (!priv->paused || !priv->easy || priv->state != ST_RUNNING)
        return;
    priv->paused = false;
    rc = curl_easy_pause(priv->easy, CURLPAUSE_CONT);
    if (rc != CURLE_OK)
        kc_log(priv->http->log, KC_LOG_WARN, "http", "curl_easy_pause: %s",
               curl_easy_strerror(rc));
}

/* A file read or write finished: if the transfer already ended and waited
 * for it, classify the attempt now; else let curl go on. */
static void io_settled(struct kc_http_priv *priv)
{
    if (priv->state == ST_IOWAIT) {
        attempt_classify(priv, priv->pending_result);
        return;
    }
    io_resume(priv);
}

static void on_fs_read(uv_fs_t *fs)
{
    struct kc_http_priv *priv = fs->data;
    ssize_t n = fs->result;

    uv_fs_req_cleanup(fs);
    priv->fs_busy = false;
    if (n < 0) {
        priv->io_error = (int)n;
    } else if (n == 0 && priv->io_left > 0) {
        priv->io_error = UV_EOF;
    } else {
        priv->io_len = (size_t)n;
        priv->io_pos = 0;
        priv->io_off += (uint64_t)n;
        priv->io_left -= (uint64_t)n;
    }
    io_settled(priv);
}

static int io_start_read(struct kc_http_priv *priv)
{
    size_t want =
        priv->io_left < HTTP_IOBUF ? (size_t)priv->io_left : HTTP_IOBUF;
    uv_buf_t b;
    int rc;

    if (!priv->iobuf) {
        priv->iobuf = kc_xmalloc(HTTP_IOBUF);
        priv->io_cap = HTTP_IOBUF;
    }
    b = uv_buf_init(priv->iobuf, (unsigned)want);
    priv->fsreq.data = priv;
    rc = uv_fs_read(priv->http->loop, &priv->fsreq, priv->req->upload_fd, &b, 1,
                    (int64_t)priv->io_off, on_fs_read);
    if (rc < 0) {
        priv->io_error = rc;
        return rc;
    }
    priv->fs_busy = true;
    return 0;
}

static size_t on_curl_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct kc_http_priv *priv = ud;
    size_t want = size * nitems, n;

    if (priv->io_error)
        return CURL_READFUNC_ABORT;
    if (priv->io_pos < priv->io_len) {
        n = priv->io_len - priv->io_pos;
        if (n > want)
            n = want;
        memcpy(buf, priv->iobuf + priv->io_pos, n);
        priv->io_pos += n;
        priv->req->uploaded += n;
        return n;
    }
    if (priv->io_left == 0)
        return 0;
    if (!priv->fs_busy && io_start_read(priv) < 0)
        return CURL_READFUNC_ABORT;
    priv->paused = true;
    return CURL_READFUNC_PAUSE;
}

static void on_fs_write(uv_fs_t *fs)
{
    struct kc_http_priv *priv = fs->data;
    ssize_t n = fs->result;

    uv_fs_req_cleanup(fs);
    priv->fs_busy = false;
    if (n < 0) {
        priv->io_error = (int)n;
    } else {
        priv->io_pos += (size_t)n;
        priv->req->downloaded += (uint64_t)n;
        if (priv->io_pos < priv->io_len && n > 0) {
            uv_buf_t b = uv_buf_init(priv->iobuf + priv->io_pos,
                                     (unsigned)(priv->io_len - priv->io_pos));
            int rc;

            priv->fsreq.data = priv;
            rc = uv_fs_write(
                priv->http->loop, &priv->fsreq, priv->req->download_fd, &b, 1,
                (int64_t)(priv->req->download_offset + priv->req->downloaded),
                on_fs_write);
            if (rc == 0) {
                priv->fs_busy = true;
                return;
            }
            priv->io_error = rc;
        } else if (n == 0 && priv->io_pos < priv->io_len) {
            priv->io_error = UV_EIO;
        }
    }
    io_settled(priv);
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct kc_http_priv *priv = ud;
    struct kc_http_req *req = priv->req;
    size_t len = size * nmemb;

    if (req->has_download_fd && priv->cur_code >= 200 && priv->cur_code < 300) {
        uv_buf_t b;
        int rc;

        if (priv->io_error)
            return 0;
        if (priv->fs_busy) {
            priv->paused = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (len > priv->io_cap) {
            priv->iobuf = kc_xrealloc(priv->iobuf, len);
            priv->io_cap = len;
        }
        memcpy(priv->iobuf, ptr, len);
        priv->io_len = len;
        priv->io_pos = 0;
        b = uv_buf_init(priv->iobuf, (unsigned)len);
        priv->fsreq.data = priv;
        rc = uv_fs_write(priv->http->loop, &priv->fsreq, req->download_fd, &b,
                         1, (int64_t)(req->download_offset + req->downloaded),
                         on_fs_write);
        if (rc < 0) {
            priv->io_error = rc;
            return 0;
        }
        priv->fs_busy = true;
        return len;
    }
    if (kc_buf_add(&req->body, ptr, len) < 0) {
        priv->too_big = true;
        return 0;
    }
    return len;
}

static size_t on_curl_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct kc_http_priv *priv = ud;
    struct kc_http_req *req = priv->req;
    size_t len = size * nitems, n = len;
    const char *colon;

    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);

        headers_free(req->resp_headers, req->nresp_headers);
        req->resp_headers = NULL;
        req->nresp_headers = req->capresp_headers = 0;
        priv->header_bytes = 0;
        priv->cur_code = 0;
        if (sp && (size_t)(sp - buf) + 4 <= len &&
            isdigit((unsigned char)sp[1]) && isdigit((unsigned char)sp[2]) &&
            isdigit((unsigned char)sp[3]))
            priv->cur_code =
                (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        return len;
    }
    priv->header_bytes += len;
    if (priv->header_bytes > HTTP_HEADER_BYTES ||
        req->nresp_headers >= HTTP_MAX_HEADERS)
        return len; /* over the bound: ignored, not fatal */
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n'))
        n--;
    colon = memchr(buf, ':', n);
    if (!colon || colon == buf)
        return len;
    {
        size_t nl = (size_t)(colon - buf);
        const char *v = colon + 1, *end = buf + n;

        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        kc_xgrow(&req->resp_headers, &req->capresp_headers,
                 req->nresp_headers + 1, sizeof(*req->resp_headers));
        req->resp_headers[req->nresp_headers].name = kc_xstrndup(buf, nl);
        req->resp_headers[req->nresp_headers].value =
            kc_xstrndup(v, (size_t)(end - v));
        req->nresp_headers++;
    }
    return len;
}

/* ---- attempts ---- */

#define ESET(opt, val)                                                        \
    do {                                                                      \
        CURLcode ec_ = curl_easy_setopt(easy, opt, val);                      \
        if (ec_ != CURLE_OK) {                                                \
            ret = kc_err_set(&req->err, KC_EHTTP, "curl_easy_setopt(%s): %s", \
                             #opt, curl_easy_strerror(ec_));                  \
            goto out;                                                         \
        }                                                                     \
    } while (0)

static int attempt_setup(struct kc_http_priv *priv)
{
    struct kc_http *http = priv->http;
    struct kc_http_req *req = priv->req;
    CURL *easy = curl_easy_init();
    long timeout = priv->opts.timeout_ms;
    uint64_t now = now_ms();
    int ret = 0;

    if (!easy)
        return kc_err_set(&req->err, KC_EHTTP, "curl_easy_init failed");
    priv->easy = easy;
    curl_slist_free_all(priv->headers);
    priv->headers = NULL;
    for (size_t i = 0; i < req->nreq_headers; i++) {
        char *line = req->req_headers[i].value[0]
                         ? kc_xasprintf("%s: %s", req->req_headers[i].name,
                                        req->req_headers[i].value)
                         : kc_xasprintf("%s;", req->req_headers[i].name);
        struct curl_slist *nl = curl_slist_append(priv->headers, line);

        kc_memzero(line, strlen(line));
        free(line);
        if (!nl)
            return kc_err_set(&req->err, KC_EHTTP, "curl_slist_append failed");
        priv->headers = nl;
    }
    {
        /* curl waits up to 1 s for "100 Continue" on large bodies; none of
         * our servers needs the handshake. */
        struct curl_slist *nl = curl_slist_append(priv->headers, "Expect:");

        if (!nl)
            return kc_err_set(&req->err, KC_EHTTP, "curl_slist_append failed");
        priv->headers = nl;
    }
    if (timeout == 0)
        timeout = KC_HTTP_TIMEOUT_MS;
    {
        /* No attempt outlives the retry deadline. */
        uint64_t left = priv->deadline_ms > now ? priv->deadline_ms - now : 1;

        if (timeout < 0 || (uint64_t)timeout > left)
            timeout = (long)left;
    }
    ESET(CURLOPT_PRIVATE, priv);
    ESET(CURLOPT_URL, req->url);
    ESET(CURLOPT_SHARE, http->share);
    ESET(CURLOPT_NOSIGNAL, 1L);
    ESET(CURLOPT_ERRORBUFFER, priv->errbuf);
    ESET(CURLOPT_USERAGENT, http->user_agent);
    ESET(CURLOPT_HTTPHEADER, priv->headers);
    ESET(CURLOPT_HEADERFUNCTION, on_curl_header);
    ESET(CURLOPT_HEADERDATA, priv);
    ESET(CURLOPT_WRITEFUNCTION, on_curl_write);
    ESET(CURLOPT_WRITEDATA, priv);
    ESET(CURLOPT_PROTOCOLS_STR, "http,https");
    ESET(CURLOPT_SSL_VERIFYPEER, 1L);
    ESET(CURLOPT_SSL_VERIFYHOST, 2L);
    ESET(CURLOPT_ACCEPT_ENCODING, "");
    ESET(CURLOPT_CONNECTTIMEOUT_MS, priv->opts.connect_timeout_ms > 0
                                        ? priv->opts.connect_timeout_ms
                                        : (long)KC_HTTP_CONNECT_MS);
    if (timeout > 0)
        ESET(CURLOPT_TIMEOUT_MS, timeout);
    if (priv->opts.follow_redirects) {
        ESET(CURLOPT_FOLLOWLOCATION, 1L);
        ESET(CURLOPT_MAXREDIRS, 5L);
        ESET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    }
    if (priv->ca_file)
        ESET(CURLOPT_CAINFO, priv->ca_file);
    if (priv->ca_pem) {
        struct curl_blob blob = { .data = priv->ca_pem,
                                  .len = strlen(priv->ca_pem),
                                  .flags = CURL_BLOB_COPY };

        ESET(CURLOPT_CAINFO_BLOB, &blob);
    }
    if (priv->pinned)
        ESET(CURLOPT_PINNEDPUBLICKEY, priv->pinned);
    if (priv->connect_to)
        ESET(CURLOPT_CONNECT_TO, priv->connect_to);

    switch (req->method) {
    case KC_HTTP_GET:
        break;
    case KC_HTTP_HEAD:
        ESET(CURLOPT_NOBODY, 1L);
        break;
    default:
        ESET(CURLOPT_CUSTOMREQUEST, kc_http_method_name(req->method));
        break;
    }
    if (req->has_upload_fd) {
        ESET(CURLOPT_UPLOAD, 1L);
        ESET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_length);
        ESET(CURLOPT_READFUNCTION, on_curl_read);
        ESET(CURLOPT_READDATA, priv);
        if (req->method != KC_HTTP_PUT)
            ESET(CURLOPT_CUSTOMREQUEST, kc_http_method_name(req->method));
    } else if (req->req_body.len || req->method == KC_HTTP_POST ||
               req->method == KC_HTTP_PUT || req->method == KC_HTTP_PATCH) {
        ESET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->req_body.len);
        ESET(CURLOPT_POSTFIELDS, req->req_body.data ? req->req_body.data : "");
        if (req->method != KC_HTTP_POST)
            ESET(CURLOPT_CUSTOMREQUEST, kc_http_method_name(req->method));
    }
out:
    return ret;
}

static void attempt_start(struct kc_http_priv *priv)
{
    struct kc_http *http = priv->http;
    struct kc_http_req *req = priv->req;
    CURLMcode mc;
    int ret;

    if (priv->opts.prepare) {
        struct kc_err perr = { 0 };

        ret = priv->opts.prepare(req, priv->opts.prepare_arg, &perr);
        if (ret < 0) {
            req->err = perr;
            if (req->err.code == 0)
                kc_err_set(&req->err, ret, "prepare hook failed");
            finish(priv, ret);
            return;
        }
    }
    req->attempts++;
    req->code = 0;
    req->curl_code = 0;
    req->uploaded = req->downloaded = 0;
    kc_buf_reset(&req->body);
    headers_free(req->resp_headers, req->nresp_headers);
    req->resp_headers = NULL;
    req->nresp_headers = req->capresp_headers = 0;
    priv->errbuf[0] = '\0';
    priv->cur_code = 0;
    priv->too_big = false;
    priv->io_error = 0;
    priv->io_len = priv->io_pos = 0;
    priv->io_off = req->upload_offset;
    priv->io_left = req->has_upload_fd ? req->upload_length : 0;
    priv->paused = false;
    kc_err_clear(&req->err);
    ret = attempt_setup(priv);
    if (ret < 0) {
        finish(priv, ret);
        return;
    }
    if (tracing(http))
        trace_request(priv);
    priv->attempt_start_ms = (uint64_t)now_ms_f();
    priv->state = ST_RUNNING;
    mc = curl_multi_add_handle(http->multi, priv->easy);
    if (mc != CURLM_OK) {
        kc_err_set(&req->err, KC_EHTTP, "curl_multi_add_handle: %s",
                   curl_multi_strerror(mc));
        finish(priv, KC_EHTTP);
        return;
    }
    http->stats.attempts++;
    http->stats.by_method[req->method]++;
    if (req->attempts > 1)
        http->stats.retries++;
}

static uint64_t backoff_ms(struct kc_http_priv *priv)
{
    const struct kc_http_retry *r = &priv->opts.retry;
    uint64_t cap = r->base_ms, limit = r->max_backoff_ms;
    unsigned n = priv->req->attempts;

    for (unsigned i = 1; i < n && cap < limit; i++)
        cap *= 2;
    if (cap > limit)
        cap = limit;
    /* Full jitter (AWS architecture blog, "Exponential Backoff And
     * Jitter"): uniform in [0, cap]. */
    return http_rand(priv->http) % (cap + 1);
}

static void attempt_classify(struct kc_http_priv *priv, int result)
{
    struct kc_http *http = priv->http;
    struct kc_http_req *req = priv->req;
    const struct kc_http_retry *r = &priv->opts.retry;
    char *u = NULL, *what = NULL;
    bool retryable = false, allowed;
    int status = 0;
    uint64_t now, wait;
    curl_off_t up = 0, down = 0;
    long conns = 0;

    if (priv->fs_busy) {
        /* The attempt is over but our file I/O is not: wait for it. */
        priv->state = ST_IOWAIT;
        priv->pending_result = result;
        return;
    }
    if (priv->canceled) {
        finish(priv, KC_ECANCELED);
        return;
    }
    req->attempt_ms = now_ms_f() - (double)priv->attempt_start_ms;
    req->curl_code = result;
    if (priv->easy) {
        long code = 0;

        if (curl_easy_getinfo(priv->easy, CURLINFO_RESPONSE_CODE, &code) ==
            CURLE_OK)
            req->code = code;
        if (curl_easy_getinfo(priv->easy, CURLINFO_SIZE_UPLOAD_T, &up) ==
            CURLE_OK)
            http->stats.bytes_up += (uint64_t)up;
        if (curl_easy_getinfo(priv->easy, CURLINFO_SIZE_DOWNLOAD_T, &down) ==
            CURLE_OK)
            http->stats.bytes_down += (uint64_t)down;
        if (curl_easy_getinfo(priv->easy, CURLINFO_NUM_CONNECTS, &conns) ==
            CURLE_OK)
            http->stats.connects += (uint64_t)conns;
        curl_easy_cleanup(priv->easy);
        priv->easy = NULL;
    }
    if (tracing(http))
        trace_response(priv, result);
    u = url_noquery(req->url);
    what = kc_xasprintf("%s %s", kc_http_method_name(req->method), u);
    if (priv->io_error) {
        status = kc_err_set(&req->err, KC_EIO, "%s: %s the fd: %s", what,
                            req->has_upload_fd ? "reading" : "writing",
                            uv_strerror(priv->io_error));
        goto done;
    }
    if (priv->too_big) {
        status =
            kc_err_set(&req->err, KC_ERANGE, "%s: response body over %zu bytes",
                       what, priv->opts.max_body);
        goto done;
    }
    if (result != CURLE_OK) {
        status = kc_err_from_curl(&req->err, result, priv->errbuf, what);
        retryable = curl_retryable(result);
        allowed = req_idempotent(req) || curl_never_sent(result);
    } else {
        enum kc_http_verdict v = KC_HTTP_DEFAULT;

        if (r->classify)
            v = r->classify(req, r->classify_arg);
        if (v == KC_HTTP_DONE || v == KC_HTTP_FAIL)
            goto done;
        retryable = v == KC_HTTP_RETRY || status_retryable(req->code, r);
        allowed = req_idempotent(req);
    }
    if (!retryable || !allowed)
        goto done;
    if (req->attempts >= r->max_attempts) {
        req->gave_up = true;
        if (status < 0)
            kc_err_prefix(&req->err, "gave up after %u attempts",
                          req->attempts);
        goto done;
    }
    wait = backoff_ms(priv);
    if (result == CURLE_OK && !r->ignore_retry_after) {
        int64_t ra = kc_http_parse_retry_after(
            kc_http_resp_header(req, "Retry-After"), (int64_t)time(NULL));

        if (ra >= 0)
            wait = (uint64_t)ra < r->max_retry_after_ms ? (uint64_t)ra
                                                        : r->max_retry_after_ms;
    }
    now = now_ms();
    if (now + wait > priv->deadline_ms) {
        req->gave_up = true;
        if (status < 0)
            kc_err_prefix(&req->err, "gave up after %u attempts and %.0f ms",
                          req->attempts, now_ms_f() - (double)priv->start_ms);
        goto done;
    }
    if (tracing(http))
        kc_log(http->log, KC_LOG_DEBUG, "http",
               "retrying %s in %llu ms (attempt %u of %u)", what,
               (unsigned long long)wait, req->attempts + 1, r->max_attempts);
    priv->state = ST_WAITING;
    priv->wake_ms = now + wait;
    priv->qnext = http->waiting;
    http->waiting = priv;
    http_arm_sched(http);
    free(what);
    free(u);
    return;
done:
    free(what);
    free(u);
    finish(priv, status);
}

int kc_http_send(struct kc_http *http, struct kc_http_req *req,
                 const struct kc_http_opts *opts, kc_http_cb cb,
                 struct kc_err *err)
{
    static const struct kc_http_opts none = { 0 };
    struct kc_http_priv *priv;
    struct kc_http_retry *r;

    if (!http || !req || !cb)
        return kc_err_set(err, KC_EINVAL,
                          "http: missing client, request or callback");
    if (http->closing)
        return kc_err_set(err, KC_ECANCELED, "http: client is closing");
    if (req->priv)
        return kc_err_set(err, KC_EINVAL, "http: request already live");
    if (!req->url || !*req->url)
        return kc_err_set(err, KC_EINVAL, "http: request without a URL");
    if ((unsigned)req->method >= KC_HTTP_METHOD_COUNT)
        return kc_err_set(err, KC_EINVAL, "http: invalid method");
    if (!opts)
        opts = &none;
    priv = kc_xcalloc(1, sizeof(*priv));
    priv->http = http;
    priv->req = req;
    priv->cb = cb;
    priv->opts = *opts;
    priv->opts.ca_file = priv->opts.ca_pem = priv->opts.pinned_pubkey = NULL;
    priv->opts.resolve = NULL;
    if (opts->ca_file)
        priv->ca_file = kc_xstrdup(opts->ca_file);
    if (opts->ca_pem)
        priv->ca_pem = kc_xstrdup(opts->ca_pem);
    if (opts->pinned_pubkey)
        priv->pinned = kc_xstrdup(opts->pinned_pubkey);
    for (size_t i = 0; i < opts->nresolve; i++) {
        /* "HOST:PORT:ADDRESS" becomes CURLOPT_CONNECT_TO
         * "HOST:PORT:ADDRESS:PORT": same effect as CURLOPT_RESOLVE for this
         * request, but it does not leak into the DNS cache the multi handle
         * shares with every other request, and curl does not reuse the
         * connection for requests without the mapping. */
        const char *e = opts->resolve[i], *c1 = strchr(e, ':'), *c2;
        char *entry;
        struct curl_slist *nl;

        c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2 || c1 == e || c2 == c1 + 1 || !c2[1]) {
            kc_err_set(err, KC_EINVAL,
                       "invalid resolve entry '%s' (want HOST:PORT:ADDRESS)",
                       e);
            priv_free(priv);
            return KC_EINVAL;
        }
        if (strchr(c2 + 1, ':') && c2[1] != '[')
            entry = kc_xasprintf("%.*s:[%s]:%.*s", (int)(c2 - e), e, c2 + 1,
                                 (int)(c2 - c1 - 1), c1 + 1);
        else
            entry = kc_xasprintf("%.*s:%s:%.*s", (int)(c2 - e), e, c2 + 1,
                                 (int)(c2 - c1 - 1), c1 + 1);
        nl = curl_slist_append(priv->connect_to, entry);
        free(entry);
        if (!nl) {
            priv_free(priv);
            return kc_err_set(err, KC_EHTTP, "curl_slist_append failed");
        }
        priv->connect_to = nl;
    }
    r = &priv->opts.retry;
    if (r->max_attempts == 0)
        r->max_attempts = KC_HTTP_MAX_ATTEMPTS;
    if (r->base_ms == 0)
        r->base_ms = KC_HTTP_BASE_MS;
    if (r->max_backoff_ms == 0)
        r->max_backoff_ms = KC_HTTP_MAX_BACKOFF_MS;
    if (r->max_elapsed_ms == 0)
        r->max_elapsed_ms = KC_HTTP_MAX_ELAPSED_MS;
    if (r->max_retry_after_ms == 0)
        r->max_retry_after_ms = KC_HTTP_MAX_RETRY_AFTER;
    if (priv->opts.max_body == 0)
        priv->opts.max_body = KC_HTTP_BODY_MAX;
    kc_buf_release(&req->body);
    kc_buf_init(&req->body, priv->opts.max_body);
    req->attempts = 0;
    req->gave_up = false;
    req->code = 0;
    kc_err_clear(&req->err);
    req->priv = priv;
    priv->start_ms = (uint64_t)now_ms_f();
    priv->deadline_ms = now_ms() + r->max_elapsed_ms;
    priv->next = http->live;
    if (http->live)
        http->live->prev = priv;
    http->live = priv;
    http->stats.sends++;
    http->stats.live++;
    /* The first attempt starts from the loop, so that even a failure to
     * start calls back later, never inside this call. */
    priv->state = ST_WAITING;
    priv->wake_ms = 0;
    priv->qnext = http->waiting;
    http->waiting = priv;
    http_arm_sched(http);
    return 0;
}

void kc_http_cancel(struct kc_http *http, struct kc_http_req *req)
{
    struct kc_http_priv *priv = req ? req->priv : NULL;
    CURLMcode mc;

    if (!priv || priv->http != http || priv->state == ST_DONE || priv->canceled)
        return;
    priv->canceled = true;
    kc_err_set(&req->err, KC_ECANCELED, "%s: canceled",
               kc_http_method_name(req->method));
    switch (priv->state) {
    case ST_RUNNING:
        mc = curl_multi_remove_handle(http->multi, priv->easy);
        if (mc != CURLM_OK)
            kc_log(http->log, KC_LOG_WARN, "http",
                   "curl_multi_remove_handle: %s", curl_multi_strerror(mc));
        curl_easy_cleanup(priv->easy);
        priv->easy = NULL;
        if (priv->fs_busy) {
            /* on_fs_* finishes it. */
            priv->state = ST_IOWAIT;
            priv->pending_result = CURLE_ABORTED_BY_CALLBACK;
            return;
        }
        finish(priv, KC_ECANCELED);
        break;
    case ST_WAITING:
        waiting_remove(priv);
        finish(priv, KC_ECANCELED);
        break;
    case ST_IOWAIT:
        break; /* the fs callback sees ->canceled */
    case ST_DONE:
        break;
    }
}

void kc_http_cancel_all(struct kc_http *http)
{
    struct kc_http_priv *p, *next;

    if (!http)
        return;
    for (p = http->live; p; p = next) {
        next = p->next;
        kc_http_cancel(http, p->req);
    }
}

static void http_check_teardown(struct kc_http *http)
{
    CURLMcode mc;

    if (http->torn_down || http->live || http->done_head)
        return;
    http->torn_down = true;
    /* curl_multi_cleanup may call the socket callback (REMOVE) for sockets
     * it closes; the polls left after it are ours to close. */
    mc = curl_multi_cleanup(http->multi);
    if (mc != CURLM_OK)
        kc_log(http->log, KC_LOG_WARN, "http", "curl_multi_cleanup: %s",
               curl_multi_strerror(mc));
    http->multi = NULL;
    if (curl_share_cleanup(http->share) != CURLSHE_OK)
        kc_log(http->log, KC_LOG_WARN, "http", "curl_share_cleanup failed");
    http->share = NULL;
    while (http->socks)
        sock_close(http, http->socks);
    uv_close((uv_handle_t *)&http->timer, on_handle_close);
    uv_close((uv_handle_t *)&http->sched, on_handle_close);
}

void kc_http_close(struct kc_http *http)
{
    if (!http || http->closing)
        return;
    kc_http_cancel_all(http);
    http->closing = true;
    http_arm_sched(http);
}
