/* resources/aws/ec2.c: EC2 Query API calls over the HTTP runtime: SigV4 on
 * every attempt, error mapping, and instance-profile credentials from
 * IMDSv2.
 *
 * Errors: "Error codes for the Amazon EC2 API"
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html)
 * lists RequestLimitExceeded (throttling), and server errors InternalError,
 * Unavailable and ServiceUnavailable: all are retried with backoff. Its
 * "Eventual consistency" section says a resource just created may not be
 * visible yet (InvalidInstanceID.NotFound, InvalidGroup.NotFound...): reads
 * flagged AWS_EC2_EVENTUAL retry those for a bounded time.
 *
 * IMDSv2 ("Use the Instance Metadata Service to access instance metadata",
 * EC2 user guide): PUT /latest/api/token with
 * X-aws-ec2-metadata-token-ttl-seconds, then GETs with
 * X-aws-ec2-metadata-token: /latest/meta-data/iam/security-credentials/
 * names the role, .../<role> returns the credentials document.
 */
#include "resources/aws/ec2.h"

#include <curl/curl.h>
#include <libxml/tree.h>

#define IMDS_TOKEN_TTL  "21600"
#define IMDS_TIMEOUT_MS 2000

enum imds_step {
    IMDS_TOKEN = 0,
    IMDS_ROLE,
    IMDS_CREDS,
};

struct aws_ec2 {
    struct kc_http *http;
    struct kc_log *log;
    char endpoint[256]; /* no trailing slash */
    char host[256];     /* the Host header curl sends for ENDPOINT */
    char path[256];     /* the request path: "/" for EC2 itself */
    struct aws_chain chain;
    struct aws_creds creds;
    /* IMDS fetch in flight and the calls waiting for it */
    bool imds_busy;
    enum imds_step imds_step;
    struct kc_http_req imds_req;
    char imds_token[256];
    char imds_role[128];
    unsigned imds_fetches;
    struct aws_ec2_call *waiting, **waiting_tail;
};

static const char *const THROTTLE_CODES[] = {
    "RequestLimitExceeded", "Unavailable", "InternalError",
    "ServiceUnavailable",   "Throttling",  "ThrottlingException",
};

bool aws_ec2_code_is_throttle(const char *code)
{
    for (size_t i = 0; code && i < KC_ARRAY_SIZE(THROTTLE_CODES); i++)
        if (strcmp(code, THROTTLE_CODES[i]) == 0)
            return true;
    return false;
}

static bool code_is_not_found(const char *code)
{
    size_t n = strlen(code), s = strlen(".NotFound");

    return n > s && strcmp(code + n - s, ".NotFound") == 0;
}

/* The Host header libcurl sends for URL: host, plus ":port" unless it is the
 * scheme's default; and the path to POST to ("/" for EC2 itself; a prefix
 * such as "/ec2/" behind the simulator or a proxy). */
static int endpoint_host(const char *url, char *out, size_t size, char *opath,
                         size_t psize, struct kc_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int ret = 0;

    if (!u)
        KC_BUG("curl_url");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
        ret = kc_err_set(err, KC_EINVAL,
                         "providers.aws.endpoint '%.128s' is not an http(s) "
                         "url",
                         url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK || !path ||
        kc_snprintf(opath, psize, "%s%s", path,
                    path[0] && path[strlen(path) - 1] == '/' ? "" : "/") < 0 ||
        strpbrk(path, "?#%")) {
        ret = kc_err_set(err, KC_EINVAL,
                         "providers.aws.endpoint '%.128s': bad path", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL;
    if (port && ((strcmp(scheme, "https") == 0 && strcmp(port, "443") == 0) ||
                 (strcmp(scheme, "http") == 0 && strcmp(port, "80") == 0))) {
        curl_free(port);
        port = NULL;
    }
    if (kc_snprintf(out, size, "%s%s%s", host, port ? ":" : "",
                    port ? port : "") < 0)
        ret = kc_err_set(err, KC_ERANGE, "endpoint host too long");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return ret;
}

static void learn_secrets(struct aws_ec2 *ec2)
{
    size_t n;
    const char *s;

    if (!ec2->log)
        return;
    s = kc_secret_reveal(ec2->creds.secret_key, &n);
    if (s)
        kc_log_add_secret(ec2->log, s, n);
    s = kc_secret_reveal(ec2->creds.session_token, &n);
    if (s)
        kc_log_add_secret(ec2->log, s, n);
}

int aws_ec2_new(const struct aws_ec2_config *cfg, struct aws_ec2 **out,
                struct kc_err *err)
{
    struct aws_chain_opts o = { .profile = cfg->profile,
                                .region = cfg->region,
                                .credentials_file = cfg->credentials_file,
                                .config_file = cfg->config_file,
                                .imds_endpoint = cfg->imds_endpoint,
                                .env = cfg->env };
    struct aws_ec2 *ec2;
    int ret;

    *out = NULL;
    if (!cfg->http)
        return kc_err_set(err, KC_EINVAL, "aws: no http client");
    ec2 = kc_xcalloc(1, sizeof(*ec2));
    ec2->http = cfg->http;
    ec2->log = cfg->log;
    ec2->waiting_tail = &ec2->waiting;
    ret = aws_chain_resolve(&o, &ec2->chain, err);
    if (ret < 0)
        goto fail;
    if (!ec2->chain.region[0]) {
        ret = kc_err_set(err, KC_EINVAL,
                         "no aws region: set providers.aws.region, "
                         "AWS_REGION or a region in profile '%s'",
                         ec2->chain.profile);
        goto fail;
    }
    if (!ec2->chain.creds.access_key[0] && !ec2->chain.imds_allowed) {
        ret = kc_err_set(err, KC_ENOENT,
                         "no aws credentials: none in the environment nor "
                         "in profile '%s', and AWS_EC2_METADATA_DISABLED "
                         "rules out instance metadata",
                         ec2->chain.profile);
        goto fail;
    }
    aws_creds_copy(&ec2->creds, &ec2->chain.creds);
    learn_secrets(ec2);
    if (cfg->endpoint && *cfg->endpoint)
        ret = kc_snprintf(ec2->endpoint, sizeof(ec2->endpoint), "%s",
                          cfg->endpoint);
    else
        ret = kc_snprintf(ec2->endpoint, sizeof(ec2->endpoint),
                          "https://ec2.%s.amazonaws.com", ec2->chain.region);
    if (ret < 0) {
        ret = kc_err_set(err, KC_ERANGE, "aws endpoint too long");
        goto fail;
    }
    for (size_t n = strlen(ec2->endpoint); n && ec2->endpoint[n - 1] == '/';
         n--)
        ec2->endpoint[n - 1] = '\0';
    ret = endpoint_host(ec2->endpoint, ec2->host, sizeof(ec2->host), ec2->path,
                        sizeof(ec2->path), err);
    if (ret < 0)
        goto fail;
    *out = ec2;
    return 0;
fail:
    aws_ec2_free(ec2);
    return ret;
}

void aws_ec2_free(struct aws_ec2 *ec2)
{
    if (!ec2)
        return;
    if (ec2->imds_busy || ec2->waiting)
        KC_BUG("aws_ec2_free with calls in flight");
    kc_http_req_release(&ec2->imds_req);
    aws_creds_release(&ec2->creds);
    aws_chain_release(&ec2->chain);
    kc_memzero(ec2->imds_token, sizeof(ec2->imds_token));
    free(ec2);
}

const char *aws_ec2_region(const struct aws_ec2 *ec2)
{
    return ec2->chain.region;
}

const char *aws_ec2_endpoint(const struct aws_ec2 *ec2)
{
    return ec2->endpoint;
}

const char *aws_ec2_creds_source(const struct aws_ec2 *ec2)
{
    return ec2->creds.source;
}

unsigned aws_ec2_imds_fetches(const struct aws_ec2 *ec2)
{
    return ec2->imds_fetches;
}

/* ------------------------------------------------------------------ */
/* Calls. */

void aws_ec2_call_init(struct aws_ec2_call *call, const char *action)
{
    void *data = call->data;

    memset(call, 0, sizeof(*call));
    call->data = data;
    aws_query_init(&call->q, action);
    (void)kc_snprintf(call->action, sizeof(call->action), "%s", action);
}

void aws_ec2_call_release(struct aws_ec2_call *call)
{
    if (!call)
        return;
    aws_query_release(&call->q);
    aws_xml_free(call->doc);
    call->doc = NULL;
    call->root = NULL;
    if ((call->flags & AWS_EC2_SECRET_ANSWER) && call->http.body.data)
        kc_memzero(call->http.body.data, call->http.body.len);
    kc_http_req_release(&call->http);
}

/* Signs the request again before every attempt (fresh X-Amz-Date). */
static int sign_prepare(struct kc_http_req *req, void *arg, struct kc_err *err)
{
    struct aws_ec2_call *call = arg;
    struct aws_ec2 *ec2 = call->ec2;
    const struct kc_buf *body = kc_http_req_body(req);
    struct aws_header h[4];
    struct aws_sigv4_req sr = { 0 };
    struct kc_buf auth = { 0 };
    char date[17];
    size_t n = 0;
    int ret;

    aws_sigv4_amz_date(time(NULL), date);
    ret = kc_http_req_set_header(req, "X-Amz-Date", date, err);
    if (ret == 0)
        ret =
            ec2->creds.session_token
                ? kc_http_req_set_header_secret(req, "X-Amz-Security-Token", "",
                                                ec2->creds.session_token, err)
                : kc_http_req_set_header(req, "X-Amz-Security-Token", NULL,
                                         err);
    if (ret < 0)
        return ret;
    h[n++] = (struct aws_header){ "Content-Type",
                                  kc_http_req_header(req, "Content-Type") };
    h[n++] = (struct aws_header){ "Host", ec2->host };
    h[n++] = (struct aws_header){ "X-Amz-Date", date };
    sr.method = "POST";
    sr.path = ec2->path;
    sr.headers = h;
    sr.nheaders = n;
    sr.body = body->data;
    sr.body_len = body->len;
    sr.amz_date = date;
    sr.region = ec2->chain.region;
    sr.service = "ec2";
    ret = aws_sigv4_authorization(&sr, ec2->creds.access_key,
                                  ec2->creds.secret_key, &auth, err);
    if (ret == 0)
        ret = kc_http_req_set_header(req, "Authorization", kc_buf_str(&auth),
                                     err);
    kc_buf_release(&auth);
    return ret;
}

static enum kc_http_verdict classify(const struct kc_http_req *req, void *arg)
{
    struct aws_ec2_call *call = arg;
    struct aws_error e;

    if (req->code >= 200 && req->code < 300)
        return KC_HTTP_DONE;
    if (aws_xml_parse_error(req->body.data, req->body.len, &e, NULL) < 0)
        return KC_HTTP_DEFAULT; /* not EC2 talking: status rules apply */
    if (aws_ec2_code_is_throttle(e.code))
        return KC_HTTP_RETRY;
    if ((call->flags & AWS_EC2_EVENTUAL) && code_is_not_found(e.code))
        return KC_HTTP_RETRY;
    if ((call->flags & AWS_EC2_DEPENDENCY) &&
        strcmp(e.code, "DependencyViolation") == 0)
        return KC_HTTP_RETRY;
    return req->code >= 500 ? KC_HTTP_DEFAULT : KC_HTTP_DONE;
}

static void finish_call(struct aws_ec2_call *call, int status)
{
    call->cb(call, status);
}

static void on_call_done(struct kc_http_req *req, int status)
{
    struct aws_ec2_call *call = kc_container_of(req, struct aws_ec2_call, http);
    char root[96];

    if (status < 0) {
        call->err = req->err;
        kc_err_prefix(&call->err, "ec2 %s", call->action);
        finish_call(call, call->err.code ? call->err.code : status);
        return;
    }
    if (kc_http_req_ok(req)) {
        (void)kc_snprintf(root, sizeof(root), "%sResponse", call->action);
        status = aws_xml_parse(req->body.data, req->body.len, root, &call->doc,
                               &call->err);
        if (status < 0) {
            kc_err_prefix(&call->err, "ec2 %s", call->action);
        } else {
            call->root = aws_xml_root(call->doc);
        }
        finish_call(call, status);
        return;
    }
    if (aws_xml_parse_error(req->body.data, req->body.len, &call->error,
                            NULL) == 0) {
        status = kc_err_set(
            &call->err, KC_EREMOTE, "ec2 %s: %s: %s (request id %s)",
            call->action, call->error.code, call->error.message,
            call->error.request_id[0] ? call->error.request_id : "none");
    } else {
        status = kc_http_req_check(req, 0, &call->err);
        if (status == 0)
            status = kc_err_set(&call->err, KC_EHTTP, "unexpected answer");
        kc_err_prefix(&call->err, "ec2 %s", call->action);
    }
    finish_call(call, status);
}

static int start_call(struct aws_ec2 *ec2, struct aws_ec2_call *call,
                      struct kc_err *err)
{
    struct kc_http_opts opts = { 0 };
    struct kc_buf body = { 0 };
    /* ENDPOINT has no trailing slash; its path plus "/" is ec2->path. */
    char *url = kc_xasprintf("%s/", ec2->endpoint);
    int ret;

    kc_http_req_init(&call->http, KC_HTTP_POST, url);
    free(url);
    ret = aws_query_encode(&call->q, &body);
    if (ret < 0) {
        ret = kc_err_set(err, KC_ERANGE, "ec2 %s: request too large",
                         call->action);
        goto out;
    }
    ret =
        kc_http_req_set_body(&call->http, body.data ? body.data : "", body.len,
                             "application/x-www-form-urlencoded; "
                             "charset=utf-8",
                             err);
    if (ret < 0)
        goto out;
    kc_http_req_set_safe(&call->http, true);
    /* Describe* only reads: Ctrl-C may stop its retries. */
    kc_http_req_set_read(&call->http,
                         strncmp(call->action, "Describe", 8) == 0);
    if (call->flags & AWS_EC2_SECRET_ANSWER)
        kc_http_req_trace_bodies(&call->http, false);
    /* Key material, user-data and the like never reach a trace. */
    kc_http_req_redact(&call->http, "UserData");
    kc_http_req_redact(&call->http, "keyMaterial");
    kc_http_req_redact(&call->http, "PublicKeyMaterial");
    opts.prepare = sign_prepare;
    opts.prepare_arg = call;
    opts.retry.classify = classify;
    opts.retry.classify_arg = call;
    if (call->flags & AWS_EC2_EVENTUAL) {
        opts.retry.max_attempts = 12;
        opts.retry.base_ms = 200;
        opts.retry.max_backoff_ms = 3000;
        opts.retry.max_elapsed_ms = AWS_EC2_EVENTUAL_MS;
    }
    if (call->flags & AWS_EC2_DEPENDENCY) {
        opts.retry.max_attempts = 60;
        opts.retry.base_ms = 500;
        opts.retry.max_backoff_ms = 5000;
        opts.retry.max_elapsed_ms = AWS_EC2_DEPENDENCY_MS;
    }
    ret = kc_http_send(ec2->http, &call->http, &opts, on_call_done, err);
    if (ret < 0)
        kc_err_prefix(err, "ec2 %s", call->action);
out:
    kc_buf_release_wipe(&body);
    if (ret < 0)
        kc_http_req_release(&call->http);
    return ret;
}

/* ------------------------------------------------------------------ */
/* IMDSv2. */

static void imds_next(struct aws_ec2 *ec2);

static void flush_waiting(struct aws_ec2 *ec2, int status,
                          const struct kc_err *why)
{
    struct aws_ec2_call *list = ec2->waiting;

    ec2->waiting = NULL;
    ec2->waiting_tail = &ec2->waiting;
    while (list) {
        struct aws_ec2_call *call = list;

        list = call->next;
        call->next = NULL;
        if (status == 0 && start_call(ec2, call, &call->err) == 0)
            continue;
        if (status < 0)
            call->err = *why;
        finish_call(call, call->err.code ? call->err.code : KC_EIO);
    }
}

static void on_imds(struct kc_http_req *req, int status)
{
    struct aws_ec2 *ec2 = kc_container_of(req, struct aws_ec2, imds_req);
    struct kc_err err = { 0 };
    static const char *const what[] = { "token", "role name", "credentials" };

    if (status < 0) {
        err = req->err;
        goto fail;
    }
    if (!kc_http_req_ok(req)) {
        kc_err_set(&err, KC_EREMOTE, "HTTP %ld", req->code);
        goto fail;
    }
    switch (ec2->imds_step) {
    case IMDS_TOKEN:
        if (req->body.len == 0 ||
            kc_snprintf(ec2->imds_token, sizeof(ec2->imds_token), "%s",
                        req->body.data) < 0) {
            kc_err_set(&err, KC_EINVAL, "empty or oversized token");
            goto fail;
        }
        ec2->imds_step = IMDS_ROLE;
        break;
    case IMDS_ROLE: {
        const char *s = req->body.data ? req->body.data : "";
        size_t n = strcspn(s, "\r\n");

        if (n == 0 || n >= sizeof(ec2->imds_role) || strcspn(s, "/?#% ") < n) {
            kc_err_set(&err, KC_EINVAL, "no instance profile role attached");
            goto fail;
        }
        memcpy(ec2->imds_role, s, n);
        ec2->imds_role[n] = '\0';
        ec2->imds_step = IMDS_CREDS;
        break;
    }
    case IMDS_CREDS: {
        struct aws_creds c;

        if (aws_creds_from_imds_json(req->body.data, req->body.len, &c, &err) <
            0)
            goto fail;
        aws_creds_release(&ec2->creds);
        ec2->creds = c;
        ec2->imds_fetches++;
        learn_secrets(ec2);
        if (ec2->log)
            kc_log(ec2->log, KC_LOG_DEBUG, "aws",
                   "credentials of role '%s' from instance metadata, "
                   "expiring %lld",
                   ec2->imds_role, (long long)c.expiration);
        kc_http_req_release(req);
        ec2->imds_busy = false;
        flush_waiting(ec2, 0, NULL);
        return;
    }
    }
    kc_http_req_release(req);
    imds_next(ec2);
    return;
fail:
    kc_err_prefix(&err,
                  "aws credentials: none in the environment or profile "
                  "'%s', and instance metadata %s ('%s') failed",
                  ec2->chain.profile, what[ec2->imds_step],
                  ec2->chain.imds_endpoint);
    kc_http_req_release(req);
    ec2->imds_busy = false;
    flush_waiting(ec2, err.code ? err.code : KC_EIO, &err);
}

/* Starts the current IMDS step; on a synchronous failure fails the waiting
 * calls (we are on the loop, never inside aws_ec2_send, except for the first
 * step, which aws_ec2_send handles). */
static int imds_start(struct aws_ec2 *ec2, struct kc_err *err)
{
    struct kc_http_opts opts = { 0 };
    struct kc_http_req *req = &ec2->imds_req;
    char *url;
    int ret;

    switch (ec2->imds_step) {
    case IMDS_TOKEN:
        url = kc_xasprintf("%s/latest/api/token", ec2->chain.imds_endpoint);
        kc_http_req_init(req, KC_HTTP_PUT, url);
        ret = kc_http_req_set_header(
            req, "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL, err);
        break;
    case IMDS_ROLE:
        url = kc_xasprintf("%s/latest/meta-data/iam/security-credentials/",
                           ec2->chain.imds_endpoint);
        kc_http_req_init(req, KC_HTTP_GET, url);
        ret = kc_http_req_set_header(req, "X-aws-ec2-metadata-token",
                                     ec2->imds_token, err);
        break;
    default:
        url = kc_xasprintf("%s/latest/meta-data/iam/security-credentials/%s",
                           ec2->chain.imds_endpoint, ec2->imds_role);
        kc_http_req_init(req, KC_HTTP_GET, url);
        ret = kc_http_req_set_header(req, "X-aws-ec2-metadata-token",
                                     ec2->imds_token, err);
        break;
    }
    free(url);
    kc_http_req_redact(req, "X-aws-ec2-metadata-token");
    kc_http_req_redact(req, "SecretAccessKey");
    kc_http_req_redact(req, "Token");
    kc_http_req_trace_bodies(req, false);
    /* Off an instance nothing answers: fail fast, as the SDKs do. */
    opts.timeout_ms = IMDS_TIMEOUT_MS;
    opts.connect_timeout_ms = IMDS_TIMEOUT_MS;
    opts.retry.max_attempts = 2;
    if (ret == 0)
        ret = kc_http_send(ec2->http, req, &opts, on_imds, err);
    if (ret < 0)
        kc_http_req_release(req);
    return ret;
}

static void imds_next(struct aws_ec2 *ec2)
{
    struct kc_err err = { 0 };

    if (imds_start(ec2, &err) < 0) {
        ec2->imds_busy = false;
        flush_waiting(ec2, err.code ? err.code : KC_EIO, &err);
    }
}

int aws_ec2_send(struct aws_ec2 *ec2, struct aws_ec2_call *call, unsigned flags,
                 aws_ec2_cb cb, struct kc_err *err)
{
    int ret;

    if (!cb)
        return kc_err_set(err, KC_EINVAL, "ec2: no callback");
    call->ec2 = ec2;
    call->cb = cb;
    call->flags = flags;
    call->next = NULL;
    kc_err_clear(&call->err);
    memset(&call->error, 0, sizeof(call->error));
    if (ec2->creds.access_key[0] &&
        !aws_creds_expiring(&ec2->creds, time(NULL), AWS_EC2_REFRESH_MARGIN))
        return start_call(ec2, call, err);
    if (!ec2->chain.imds_allowed)
        return kc_err_set(err, KC_ENOENT, "ec2 %s: no aws credentials",
                          call->action);
    if (!ec2->imds_busy) {
        ec2->imds_step = IMDS_TOKEN;
        ret = imds_start(ec2, err);
        if (ret < 0)
            return kc_err_prefix(err, "aws instance metadata");
        ec2->imds_busy = true;
    }
    *ec2->waiting_tail = call;
    ec2->waiting_tail = &call->next;
    return 0;
}
