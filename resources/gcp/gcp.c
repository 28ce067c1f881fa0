/* resources/gcp/gcp.c: the GCP provider's client: config, authenticated
 * calls with one 401 refresh, Google errors, operation polling, labels. */
#include "resources/gcp/gcp.h"

#include "reconcile/json.h"
#include "resources/gcp/codec.h"

/* ---- configuration ---- */

static int cfg_str(const struct kc_value *map, const char *key, bool required,
                   char **out, struct kc_err *err)
{
    const struct kc_value *v = kc_value_map_get(map, key);
    const char *s;

    *out = NULL;
    if (!v || v->type == KC_VALUE_NULL) {
        if (required)
            return kc_err_set(err, KC_EINVAL, "providers.gcp.%s: missing", key);
        return 0;
    }
    if (v->type != KC_VALUE_STRING)
        return kc_err_set(err, KC_EINVAL, "providers.gcp.%s: expected a string",
                          key);
    s = kc_value_reveal(v, NULL);
    if (!*s)
        return kc_err_set(err, KC_EINVAL, "providers.gcp.%s: empty", key);
    *out = kc_xstrdup(s);
    return 0;
}

/* A base URL without its trailing slashes. */
static void trim_slash(char *s)
{
    size_t n = s ? strlen(s) : 0;

    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

int gcp_config_parse(const struct kc_value *v, const char *base_dir,
                     struct gcp_config *out, struct kc_err *err)
{
    const struct kc_value *ep, *cred, *labels;
    int ret;

    memset(out, 0, sizeof(*out));
    if (!v || v->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL, "providers.gcp: missing");
    if ((ret = cfg_str(v, "project", true, &out->project, err)) < 0 ||
        (ret = cfg_str(v, "zone", true, &out->zone, err)) < 0 ||
        (ret = cfg_str(v, "bucket", true, &out->bucket, err)) < 0)
        goto fail;
    cred = kc_value_map_get(v, "credentials");
    if (cred && cred->type == KC_VALUE_STRING) {
        size_t n;
        const char *s = kc_value_reveal(cred, &n);

        out->credentials = kc_secret_new(s, n);
    }
    ep = kc_value_map_get(v, "endpoints");
    if (ep && ep->type == KC_VALUE_MAP) {
        if ((ret = cfg_str(ep, "oauth", false, &out->oauth_url, err)) < 0 ||
            (ret = cfg_str(ep, "compute", false, &out->compute_url, err)) < 0 ||
            (ret = cfg_str(ep, "storage", false, &out->storage_url, err)) < 0 ||
            (ret = cfg_str(ep, "metadata", false, &out->metadata_url, err)) <
                0) {
            kc_err_prefix(err, "endpoints");
            goto fail;
        }
    }
    if (!out->compute_url)
        out->compute_url = kc_xstrdup(GCP_COMPUTE_URL);
    if (!out->storage_url)
        out->storage_url = kc_xstrdup(GCP_STORAGE_URL);
    trim_slash(out->compute_url);
    trim_slash(out->storage_url);
    trim_slash(out->metadata_url);
    labels = kc_value_map_get(v, "labels");
    if (labels && labels->type == KC_VALUE_MAP)
        out->labels = kc_value_dup(labels);
    out->base_dir = base_dir ? kc_xstrdup(base_dir) : NULL;
    return 0;
fail:
    gcp_config_release(out);
    return ret;
}

void gcp_config_release(struct gcp_config *c)
{
    free(c->project);
    free(c->zone);
    free(c->bucket);
    kc_secret_free(c->credentials);
    free(c->base_dir);
    free(c->oauth_url);
    free(c->compute_url);
    free(c->storage_url);
    free(c->metadata_url);
    kc_value_free(c->labels);
    memset(c, 0, sizeof(*c));
}

/* ---- token transport on reconcile/http.h ---- */

static void on_token_http(struct kc_http_req *req, int status)
{
    struct gcp *g = req->data;
    struct gcp_token_fetch *f = g->token_fetch;
    struct kc_err err = { 0 };

    g->token_fetch = NULL;
    if (status < 0) {
        err = req->err;
    } else {
        f->code = req->code;
        if (kc_buf_add(&f->resp, kc_buf_str(&req->body), req->body.len) < 0)
            status = kc_err_set(&err, KC_ERANGE, "token answer too large");
    }
    kc_buf_release_wipe(&req->body);
    kc_http_req_release(req);
    gcp_token_fetch_done(f, status, &err);
}

static int token_send(void *arg, struct gcp_token_fetch *f, struct kc_err *err)
{
    struct gcp *g = arg;
    struct kc_http_req *req = &g->token_req;
    struct kc_http_opts opts = { 0 };
    int ret = 0;

    kc_http_req_init(req,
                     strcmp(f->method, "GET") == 0 ? KC_HTTP_GET : KC_HTTP_POST,
                     f->url);
    req->data = g;
    /* The form holds the JWT or refresh token: never traced. */
    kc_http_req_trace_bodies(req, false);
    if (f->header_name)
        ret = kc_http_req_set_header(req, f->header_name, f->header_value, err);
    if (ret == 0 && f->body) {
        size_t n;
        const char *b = kc_secret_reveal(f->body, &n);

        ret = kc_http_req_set_body(req, b, n, f->content_type, err);
    }
    /* A token request may be repeated safely: it changes nothing. */
    kc_http_req_set_safe(req, true);
    if (ret == 0) {
        g->token_fetch = f;
        ret = kc_http_send(g->http, req, &opts, on_token_http, err);
    }
    if (ret < 0) {
        g->token_fetch = NULL;
        kc_http_req_release(req);
    }
    return ret;
}

int gcp_new(uv_loop_t *loop, struct kc_http *http, struct kc_log *log,
            struct gcp_config *cfg, const char *deployment,
            const struct gcp_creds_env *env, struct gcp **out,
            struct kc_err *err)
{
    struct gcp *g = kc_xcalloc(1, sizeof(*g));
    struct gcp_creds_env local;
    struct gcp_auth_config ac = { 0 };
    struct gcp_creds *creds = NULL;
    int ret;

    g->loop = loop;
    g->http = http;
    g->log = log;
    g->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    g->deployment = kc_xstrdup(deployment ? deployment : "");
    g->poll_min_ms = GCP_POLL_MIN_MS;
    g->poll_max_ms = GCP_POLL_MAX_MS;
    g->op_timeout_ms = GCP_OP_TIMEOUT_MS;
    if (!env) {
        gcp_creds_env_from_process(&local, g->cfg.credentials, g->cfg.base_dir);
        env = &local;
    }
    ret = gcp_creds_find(env, &creds, err);
    if (ret < 0)
        goto fail;
    ac.creds = creds;
    ac.token_url = g->cfg.oauth_url;
    ac.metadata_url = g->cfg.metadata_url;
    ac.send = token_send;
    ac.send_arg = g;
    ac.log = log;
    ret = gcp_auth_new(&ac, &g->auth, err);
    if (ret < 0)
        goto fail;
    *out = g;
    return 0;
fail:
    gcp_free(g);
    return ret;
}

void gcp_free(struct gcp *g)
{
    if (!g)
        return;
    gcp_auth_free(g->auth);
    gcp_config_release(&g->cfg);
    free(g->deployment);
    free(g);
}

void gcp_job_put(struct gcp *g, struct gcp_job *j, const void *op)
{
    j->op = op;
    j->next = g->jobs;
    g->jobs = j;
}

struct gcp_job *gcp_job_take(struct gcp *g, const void *op)
{
    for (struct gcp_job **p = &g->jobs; *p; p = &(*p)->next)
        if ((*p)->op == op) {
            struct gcp_job *j = *p;

            *p = j->next;
            j->next = NULL;
            return j;
        }
    return NULL;
}

char *gcp_compute_url(const struct gcp *g, const char *fmt, ...)
{
    struct kc_buf b = { 0 };
    va_list ap;

    if (kc_buf_addstr(&b, g->cfg.compute_url) < 0 || kc_buf_addch(&b, '/'))
        KC_BUG("url");
    va_start(ap, fmt);
    if (kc_buf_vaddf(&b, fmt, ap) < 0)
        KC_BUG("url");
    va_end(ap);
    return kc_buf_detach(&b, NULL);
}

/* ---- calls ---- */

static void call_finish(struct gcp_call *c, int status)
{
    const char *body = kc_buf_str(&c->req.body);

    c->code = c->req.code;
    json_object_put(c->resp);
    c->resp = NULL;
    if (status == 0 && c->req.body.len > 0 && body[0] == '{') {
        struct kc_err perr = { 0 };

        /* A non-JSON error page stays NULL: check() uses the code. */
        if (kc_json_parse(body, c->req.body.len, "answer", &c->resp, &perr) < 0)
            c->resp = NULL;
    }
    if (status < 0 && !c->err.msg[0])
        c->err = c->req.err;
    c->cb(c, status);
}

static void on_call_http(struct kc_http_req *req, int status);
static void on_call_token(struct gcp_auth_req *areq, int status);

static int call_send(struct gcp_call *c, struct kc_err *err)
{
    const struct kc_secret *tok = gcp_auth_token(c->g->auth);
    struct kc_http_opts opts = { 0 };
    int ret;

    if (!tok)
        return gcp_auth_refresh(c->g->auth, &c->areq, on_call_token, err);
    kc_secret_free(c->token);
    c->token = kc_secret_dup(tok);
    kc_http_req_release(&c->req);
    kc_http_req_init(&c->req, c->method, c->url);
    ret = kc_http_req_set_header_secret(&c->req, "Authorization", "Bearer ",
                                        c->token, err);
    if (ret == 0 && c->body) {
        const char *s = json_object_to_json_string_ext(
            c->body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        ret = kc_http_req_set_body(&c->req, s, strlen(s), "application/json",
                                   err);
    }
    if (ret == 0 && c->setup)
        ret = c->setup(c, &c->req, err);
    if (ret < 0)
        return ret;
    kc_http_req_set_safe(&c->req, c->safe);
    if (c->retry)
        opts.retry = *c->retry;
    return kc_http_send(c->g->http, &c->req, &opts, on_call_http, err);
}

static void on_call_token(struct gcp_auth_req *areq, int status)
{
    struct gcp_call *c = kc_container_of(areq, struct gcp_call, areq);

    if (status < 0) {
        c->err = areq->err;
        call_finish(c, status);
        return;
    }
    status = call_send(c, &c->err);
    if (status < 0)
        call_finish(c, status);
}

static void on_call_http(struct kc_http_req *req, int status)
{
    struct gcp_call *c = kc_container_of(req, struct gcp_call, req);

    if (status == 0 && req->code == 401 && !c->resent &&
        gcp_auth_creds(c->g->auth)->kind != GCP_CRED_ACCESS_TOKEN) {
        /* The token was refused (revoked, clock skew): one refresh, one
         * resend. */
        c->resent = true;
        gcp_auth_invalidate(c->g->auth, c->token);
        kc_log(c->g->log, KC_LOG_DEBUG, "gcp",
               "401 from %s: refreshing the token and sending again", c->url);
        status = call_send(c, &c->err);
        if (status < 0)
            call_finish(c, status);
        return;
    }
    call_finish(c, status);
}

int gcp_call_start(struct gcp *g, struct gcp_call *c, enum kc_http_method m,
                   const char *url, struct json_object *body, gcp_call_cb cb,
                   struct kc_err *err)
{
    int ret;

    c->g = g;
    c->cb = cb;
    c->method = m;
    free(c->url);
    c->url = kc_xstrdup(url);
    json_object_put(c->body);
    c->body = body;
    json_object_put(c->resp);
    c->resp = NULL;
    c->code = 0;
    c->resent = false;
    kc_err_clear(&c->err);
    ret = call_send(c, err);
    if (ret < 0)
        kc_err_prefix(err, "%s %s", kc_http_method_name(m), url);
    return ret;
}

int gcp_call_restart(struct gcp *g, struct gcp_call *c, enum kc_http_method m,
                     const char *url, struct json_object *body, gcp_call_cb cb,
                     struct kc_err *err)
{
    gcp_call_release(c);
    memset(c, 0, sizeof(*c));
    return gcp_call_start(g, c, m, url, body, cb, err);
}

void gcp_call_release(struct gcp_call *c)
{
    kc_http_req_release(&c->req);
    free(c->url);
    json_object_put(c->body);
    json_object_put(c->resp);
    kc_secret_free(c->token);
    c->url = NULL;
    c->body = c->resp = NULL;
    c->token = NULL;
}

const char *gcp_call_reason(const struct gcp_call *c)
{
    return c->resp ? kc_json_opt_str(c->resp, "error.errors[0].reason") : NULL;
}

int gcp_call_check(const struct gcp_call *c, int status, const char *what,
                   struct kc_err *err)
{
    const char *msg, *reason;
    int code;

    if (status < 0) {
        *err = c->err;
        if (!err->code)
            err->code = status;
        return kc_err_prefix(err, "%s", what);
    }
    if (c->code >= 200 && c->code <= 299)
        return 0;
    msg = c->resp ? kc_json_opt_str(c->resp, "error.message") : NULL;
    reason = gcp_call_reason(c);
    switch (c->code) {
    case 404:
        code = KC_ENOENT;
        break;
    case 409:
        code = KC_EEXIST;
        break;
    case 412:
        code = KC_ECONFLICT;
        break;
    case 401:
    case 403:
        code = KC_EPERM;
        break;
    default:
        code = KC_EREMOTE;
    }
    return kc_err_set(err, code, "%s: %ld %s%s%.300s", what, c->code,
                      reason ? reason : "", reason ? ": " : "",
                      msg ? msg : "(no error message)");
}

/* ---- operations ---- */

static void on_wait_closed(uv_handle_t *h)
{
    struct gcp_wait *w =
        kc_container_of((uv_timer_t *)(void *)h, struct gcp_wait, timer);

    w->timer_live = false;
    w->cb(w, w->status);
}

static void wait_finish(struct gcp_wait *w, int status)
{
    w->status = status;
    uv_close((uv_handle_t *)&w->timer, on_wait_closed);
}

static void on_wait_timer(uv_timer_t *t);

static void on_wait_poll(struct gcp_call *c, int status)
{
    struct gcp_wait *w = kc_container_of(c, struct gcp_wait, call);
    const char *st, *name;
    int ret;

    ret = gcp_call_check(c, status, w->what, &w->err);
    if (ret < 0) {
        wait_finish(w, ret);
        return;
    }
    st = kc_json_opt_str(c->resp, "status");
    if (st && strcmp(st, "DONE") == 0) {
        json_object_put(w->op);
        w->op = json_object_get(c->resp);
        if (kc_json_opt_str(c->resp, "error.errors[0].code")) {
            name = kc_json_opt_str(c->resp, "name");
            ret = kc_err_set(
                &w->err, KC_EREMOTE, "%s: operation %s failed: %s: %.300s",
                w->what, name ? name : "?",
                kc_json_opt_str(c->resp, "error.errors[0].code"),
                kc_json_opt_str(c->resp, "error.errors[0].message")
                    ? kc_json_opt_str(c->resp, "error.errors[0].message")
                    : "");
            wait_finish(w, ret);
            return;
        }
        wait_finish(w, 0);
        return;
    }
    if (uv_now(w->g->loop) >= w->deadline) {
        wait_finish(
            w, kc_err_set(&w->err, KC_ETIMEDOUT,
                          "%s: operation not done after %llu s", w->what,
                          (unsigned long long)(w->g->op_timeout_ms / 1000)));
        return;
    }
    ret = uv_timer_start(&w->timer, on_wait_timer, w->delay_ms, 0);
    if (ret < 0) {
        wait_finish(w, kc_err_from_uv(&w->err, ret, "operation poll timer"));
        return;
    }
    w->delay_ms = w->delay_ms * 2 > w->g->poll_max_ms ? w->g->poll_max_ms
                                                      : w->delay_ms * 2;
}

static void on_wait_timer(uv_timer_t *t)
{
    struct gcp_wait *w = kc_container_of(t, struct gcp_wait, timer);
    int ret;

    ret = gcp_call_start(w->g, &w->call, KC_HTTP_GET, w->url, NULL,
                         on_wait_poll, &w->err);
    if (ret < 0)
        wait_finish(w, ret);
}

int gcp_op_wait(struct gcp *g, struct gcp_wait *w, struct json_object *op,
                const char *what, gcp_wait_cb cb, struct kc_err *err)
{
    const char *name = kc_json_opt_str(op, "name");
    const char *zone = kc_json_opt_str(op, "zone");
    const char *st = kc_json_opt_str(op, "status");
    int ret;

    if (!name)
        return kc_err_set(err, KC_EPARSE, "%s: answer is not an operation",
                          what);
    memset(w, 0, sizeof(*w));
    w->g = g;
    w->cb = cb;
    w->what = kc_xstrdup(what);
    if (zone) {
        const char *z = strrchr(zone, '/');

        w->url = gcp_compute_url(g, "projects/%s/zones/%s/operations/%s",
                                 g->cfg.project, z ? z + 1 : zone, name);
    } else {
        w->url = gcp_compute_url(g, "projects/%s/global/operations/%s",
                                 g->cfg.project, name);
    }
    ret = uv_timer_init(g->loop, &w->timer);
    if (ret < 0) {
        gcp_wait_release(w);
        return kc_err_from_uv(err, ret, "operation poll timer");
    }
    w->timer_live = true;
    w->delay_ms = g->poll_min_ms;
    w->deadline = uv_now(g->loop) + g->op_timeout_ms;
    /* Poll at once when the answer is already DONE (to read its error). */
    ret = uv_timer_start(&w->timer, on_wait_timer,
                         st && strcmp(st, "DONE") == 0 ? 0 : w->delay_ms, 0);
    if (ret < 0) {
        kc_err_from_uv(err, ret, "operation poll timer");
        /* The handle must still be closed; the caller's callback is not
         * called (nothing started), so close it without one. */
        uv_close((uv_handle_t *)&w->timer, NULL);
        w->timer_live = false;
        free(w->url);
        free(w->what);
        w->url = w->what = NULL;
        return KC_EIO;
    }
    return 0;
}

void gcp_wait_release(struct gcp_wait *w)
{
    if (w->timer_live)
        KC_BUG("gcp_wait_release on a live wait");
    gcp_call_release(&w->call);
    json_object_put(w->op);
    free(w->url);
    free(w->what);
    w->op = NULL;
    w->url = w->what = NULL;
}

/* ---- labels and ownership ---- */

void gcp_label_value(const char *s, char out[64])
{
    size_t n = strlen(s), i;

    for (i = 0; i < n && i < 63; i++) {
        char ch = s[i];

        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            ch = '_';
        out[i] = ch;
    }
    out[i] = '\0';
    if (n > 63) /* cut, with a hash of the whole so distinct ones stay so */
        snprintf(out + 54, 10, "-%08x", gcp_crc32c_update(0, s, n));
}

struct json_object *gcp_owner_labels(const struct gcp *g, const char *address)
{
    struct json_object *l = json_object_new_object();
    char v[64];
    size_t n = g->cfg.labels ? kc_value_map_len(g->cfg.labels) : 0;

    for (size_t i = 0; i < n; i++) {
        const char *s = kc_value_str(kc_value_map_val(g->cfg.labels, i));

        if (s)
            json_object_object_add(l, kc_value_map_key(g->cfg.labels, i),
                                   json_object_new_string(s));
    }
    gcp_label_value(g->deployment, v);
    json_object_object_add(l, GCP_LABEL_DEPLOY, json_object_new_string(v));
    gcp_label_value(address, v);
    json_object_object_add(l, GCP_LABEL_ADDRESS, json_object_new_string(v));
    return l;
}

int gcp_owner_check(const struct gcp *g, struct json_object *labels,
                    const char *address, const char *what, struct kc_err *err)
{
    const char *dep = labels ? kc_json_opt_str(labels, GCP_LABEL_DEPLOY) : NULL;
    const char *adr =
        labels ? kc_json_opt_str(labels, GCP_LABEL_ADDRESS) : NULL;
    char want_dep[64], want_adr[64];

    gcp_label_value(g->deployment, want_dep);
    gcp_label_value(address, want_adr);
    if (!dep)
        return kc_err_set(err, KC_ECONFLICT,
                          "%s exists but was not created by kmsctl (no %s "
                          "label): refusing to take it over; delete or "
                          "rename it",
                          what, GCP_LABEL_DEPLOY);
    if (strcmp(dep, want_dep) != 0)
        return kc_err_set(err, KC_ECONFLICT,
                          "%s exists and belongs to deployment '%.63s', not "
                          "'%s': refusing to take it over",
                          what, dep, want_dep);
    if (!adr || strcmp(adr, want_adr) != 0)
        return kc_err_set(err, KC_ECONFLICT,
                          "%s exists and belongs to '%.63s' of this "
                          "deployment, not '%s'",
                          what, adr ? adr : "(none)", want_adr);
    return 0;
}

int gcp_answer_int(struct json_object *o, const char *path, int64_t min,
                   int64_t max, const char *what, int64_t *out,
                   struct kc_err *err)
{
    struct json_object *v = NULL;
    int ret;

    *out = 0;
    ret = kc_json_get(o, path, &v, NULL);
    if (ret == KC_ENOENT)
        return 0;
    if (ret < 0 || kc_json_get_int(o, path, out, NULL) < 0 || *out < min ||
        *out > max) {
        *out = 0;
        /* The value itself is not echoed: it is outside input. */
        return kc_err_set(err, KC_EPARSE,
                          "%s: '%s' in the API answer is not an integer from "
                          "%lld to %lld",
                          what, path, (long long)min, (long long)max);
    }
    return 0;
}
