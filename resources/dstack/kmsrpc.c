/* resources/dstack/kmsrpc.c: GetAppEnvEncryptPubKey over pRPC. */
#include "resources/dstack/kmsrpc.h"

#include <ctype.h>
#include <errno.h>
#include <time.h>

#include "reconcile/json.h"
#include "resources/dstack/envcrypt.h"

#define ENV_KEY_PATH "/prpc/KMS.GetAppEnvEncryptPubKey?json"

char *dstack_url_shown(const char *url)
{
    const char *auth = strstr(url, "://");
    const char *host = auth ? auth + 3 : url;
    size_t alen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', alen);
    struct kc_buf b = { 0 };

    if (auth)
        kc_buf_add(&b, url, (size_t)(host - url));
    if (at) {
        alen -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    kc_buf_add(&b, host, alen);
    kc_buf_add(&b, host + alen, strcspn(host + alen, "?#"));
    return kc_buf_detach(&b, NULL);
}

/* The "error" of a pRPC failure, printable bytes only, at most 200. */
static void remote_error(const struct kc_http_req *req, struct kc_buf *out)
{
    struct json_object *o = NULL;
    struct kc_err e = { 0 };
    const char *msg = NULL;

    if (kc_http_resp_json(req, &o, &e) == 0)
        msg = kc_json_opt_str(o, "error");
    if (!msg)
        msg = "(no error message)";
    for (size_t i = 0; msg[i] && i < 200; i++)
        kc_buf_addf(out, "%c", isprint((unsigned char)msg[i]) ? msg[i] : '?');
    json_object_put(o);
}

static void utc_text(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&tt, &tm) ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        kc_snprintf(out, 32, "%lld", (long long)t);
}

/* The answer is fresh: signature_v1 verifies over its timestamp (the
 * legacy signature alone, which dstack_env_pubkey_from_json accepts, does
 * not cover it), and that timestamp is within the skew of local time. */
static int check_fresh(struct dstack_kms_env_key *c, struct json_object *o)
{
    const int64_t skew = DSTACK_KMSRPC_MAX_SKEW_S;
    const char *sig1 = kc_json_opt_str(o, "signature_v1");
    unsigned char s1[65];
    char at[32], now_s[32];
    struct timespec now;
    int64_t d;
    int ret;

    if (!sig1 || !*sig1)
        return kc_err_set(&c->err, KC_ECRYPTO,
                          "GetAppEnvEncryptPubKey: the answer has no "
                          "signature_v1, so its age cannot be checked "
                          "(a replay could bring back an old key)");
    if ((ret = kc_json_get_int(o, "timestamp", &c->timestamp, &c->err)) < 0 ||
        (ret = dstack_hex_decode(sig1, s1, 65, "signature_v1", &c->err)) < 0)
        return kc_err_prefix(&c->err, "GetAppEnvEncryptPubKey");
    if (c->timestamp < 0)
        return kc_err_set(&c->err, KC_EPARSE,
                          "GetAppEnvEncryptPubKey: negative timestamp %lld",
                          (long long)c->timestamp);
    if ((ret = dstack_env_pubkey_verify(c->app_id, c->pubkey, NULL, s1,
                                        (uint64_t)c->timestamp, c->pinned,
                                        &c->err)) < 0)
        return kc_err_prefix(&c->err, "GetAppEnvEncryptPubKey: signature_v1");
    if (clock_gettime(CLOCK_REALTIME, &now) < 0)
        return kc_err_set(&c->err, KC_EIO, "clock_gettime: %s",
                          strerror(errno));
    d = c->timestamp - (int64_t)now.tv_sec;
    if (d <= skew && d >= -skew)
        return 0;
    utc_text(c->timestamp, at);
    utc_text((int64_t)now.tv_sec, now_s);
    return kc_err_set(&c->err, KC_ECRYPTO,
                      "GetAppEnvEncryptPubKey: the answer was signed at %s, "
                      "%lld s %s local time %s, more than the %lld s allowed: "
                      "a stale or replayed answer, or a wrong clock on the "
                      "KMS or here",
                      at, (long long)(d < 0 ? -d : d),
                      d < 0 ? "before" : "after", now_s, (long long)skew);
}

static void on_http(struct kc_http_req *req, int status)
{
    struct dstack_kms_env_key *c = req->data;
    struct json_object *o = NULL;
    int ret = status;

    if (ret < 0) {
        kc_err_set(&c->err, ret, "KMS %s: GetAppEnvEncryptPubKey: %s", c->shown,
                   req->err.msg);
    } else if (req->code != 200) {
        struct kc_buf m = { 0 };

        remote_error(req, &m);
        ret = kc_err_set(&c->err, KC_EREMOTE,
                         "KMS %s: GetAppEnvEncryptPubKey: HTTP %ld: %s",
                         c->shown, req->code, kc_buf_str(&m));
        kc_buf_release(&m);
    } else if ((ret = kc_http_resp_json(req, &o, &c->err)) < 0 ||
               (ret = dstack_env_pubkey_from_json(o, c->app_id, c->pinned,
                                                  c->pubkey, &c->err)) < 0 ||
               (ret = check_fresh(c, o)) < 0) {
        kc_err_prefix(&c->err, "KMS %s", c->shown);
    }
    json_object_put(o);
    c->cb(c, ret);
}

int dstack_kms_env_key_fetch(struct kc_http *http, struct dstack_kms_env_key *c,
                             const char *kms_url, const char *app_id_hex,
                             const unsigned char pinned[33],
                             const char *ca_file, dstack_kms_env_key_cb cb,
                             struct kc_err *err)
{
    struct kc_http_opts opts = {
        .timeout_ms = DSTACK_KMSRPC_TIMEOUT_MS,
        .ca_file = ca_file,
        .max_body = DSTACK_KMSRPC_BODY_MAX,
        .retry = { .max_attempts = 3 },
    };
    struct json_object *body;
    size_t len = strlen(kms_url);
    char *url, *hex;
    int ret;

    c->shown = dstack_url_shown(kms_url);
    if (strncmp(kms_url, "https://", 8) != 0 || strpbrk(kms_url, "?#"))
        return kc_err_set(err, KC_EINVAL,
                          "KMS %s: expected an https:// URL without a query",
                          c->shown);
    {
        const char *host = kms_url + 8;

        /* A KMS takes no credentials; they would end up in messages. */
        if (memchr(host, '@', strcspn(host, "/")))
            return kc_err_set(err, KC_EINVAL,
                              "KMS %s: the URL carries credentials (user@); "
                              "a KMS takes none, remove them",
                              c->shown);
    }
    if ((ret = dstack_hex_decode(app_id_hex, c->app_id, 20, "app_id", err)) < 0)
        return ret;
    memcpy(c->pinned, pinned, 33);
    c->cb = cb;
    while (len > 8 && kms_url[len - 1] == '/')
        len--;
    url = kc_xasprintf("%.*s%s", (int)len, kms_url, ENV_KEY_PATH);
    kc_http_req_init(&c->req, KC_HTTP_POST, url);
    free(url);
    c->req.data = c;
    /* Read-only on the KMS: safe to send again. */
    kc_http_req_set_safe(&c->req, true);
    hex = kc_xasprintf("%.40s", app_id_hex[0] == '0' && app_id_hex[1] == 'x'
                                    ? app_id_hex + 2
                                    : app_id_hex);
    body = json_object_new_object();
    json_object_object_add(body, "app_id", json_object_new_string(hex));
    free(hex);
    if ((ret = kc_http_req_take_json(&c->req, body, err)) < 0 ||
        (ret = kc_http_send(http, &c->req, &opts, on_http, err)) < 0) {
        kc_err_prefix(err, "KMS %s: GetAppEnvEncryptPubKey", c->shown);
        kc_http_req_release(&c->req);
        return ret;
    }
    return 0;
}

void dstack_kms_env_key_release(struct dstack_kms_env_key *c)
{
    if (!c)
        return;
    kc_http_req_release(&c->req);
    free(c->shown);
    c->shown = NULL;
}
