/* resources/gcp/mutate.c: requestId intent, call, operation wait. */
#include "resources/gcp/mutate.h"

#include "reconcile/json.h"
#include "resources/gcp/codec.h"

static void mut_finish(struct gcp_mut *m, int status)
{
    if (m->op && (status == 0 || m->code != 0))
        kc_op_intent_clear(m->op); /* the answer is known */
    m->cb(m, status);
}

static void on_mut_wait(struct gcp_wait *w, int status)
{
    struct gcp_mut *m = kc_container_of(w, struct gcp_mut, wait);

    if (status < 0)
        m->err = w->err;
    mut_finish(m, status);
}

static void on_mut_call(struct gcp_call *c, int status)
{
    struct gcp_mut *m = kc_container_of(c, struct gcp_mut, call);
    const char *reason;
    int ret;

    m->code = c->code;
    json_object_put(m->answer);
    m->answer = c->resp ? json_object_get(c->resp) : NULL;
    reason = gcp_call_reason(c);
    kc_snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
    ret = gcp_call_check(c, status, m->what, &m->err);
    if (ret < 0) {
        mut_finish(m, ret);
        return;
    }
    ret = gcp_op_wait(m->g, &m->wait, c->resp, m->what, on_mut_wait, &m->err);
    if (ret < 0) {
        mut_finish(m, ret);
        return;
    }
    m->waiting = true;
}

static int mut_send(struct gcp_mut *m, const char *rid, struct kc_err *err)
{
    char *url = kc_xasprintf("%s%crequestId=%s", m->url,
                             strchr(m->url, '?') ? '&' : '?', rid);
    int ret;

    m->call.safe = true; /* the requestId makes a resend harmless */
    ret = gcp_call_start(m->g, &m->call, m->method, url,
                         m->body ? json_object_get(m->body) : NULL, on_mut_call,
                         err);
    free(url);
    return ret;
}

static void on_mut_persisted(struct kc_op *op, int status)
{
    struct gcp *g = kc_op_provider_data(op);
    struct gcp_job *j = gcp_job_take(g, op);
    struct gcp_mut *m;
    const struct kc_state_intent *in = kc_op_intent(op);
    const char *rid;
    int ret;

    if (!j)
        KC_BUG("persist callback without its mutation");
    m = kc_container_of(j, struct gcp_mut, job);
    if (status < 0) {
        m->err = *kc_op_err(op);
        m->cb(m, status);
        return;
    }
    rid = in ? kc_value_str(kc_value_map_get(in->data, "request_id")) : NULL;
    ret = mut_send(m, rid ? rid : "", &m->err);
    if (ret < 0)
        mut_finish(m, ret);
}

/* The requestId of an earlier run's intent for the same mutation. */
static const char *intent_request_id(struct kc_op *op, const char *what,
                                     const char *url)
{
    const struct kc_state_intent *in = kc_op_intent(op);
    const char *u;

    if (!in || !in->op || strcmp(in->op, what) != 0)
        return NULL;
    u = kc_value_str(kc_value_map_get(in->data, "url"));
    if (!u || strcmp(u, url) != 0)
        return NULL;
    return kc_value_str(kc_value_map_get(in->data, "request_id"));
}

int gcp_mut_start(struct gcp *g, struct gcp_mut *m, struct kc_op *op,
                  enum kc_http_method method, const char *url, const char *what,
                  struct json_object *body, gcp_mut_cb cb, struct kc_err *err)
{
    char uuid[GCP_UUID_LEN];
    const char *old;
    struct kc_value *data;
    int ret;

    memset(m, 0, sizeof(*m));
    m->g = g;
    m->op = op;
    m->cb = cb;
    m->method = method;
    m->url = kc_xstrdup(url);
    m->what =
        op ? kc_xasprintf("%s %s", what, kc_op_address(op)) : kc_xstrdup(what);
    m->body = body;
    old = op ? intent_request_id(op, what, url) : NULL;
    if (old) {
        kc_snprintf(uuid, sizeof(uuid), "%s", old);
        kc_log(g->log, KC_LOG_INFO, "gcp",
               "%s: sending the requestId %s of an earlier run again", m->what,
               uuid);
    } else if ((ret = gcp_uuid4(uuid, err)) < 0) {
        gcp_mut_release(m);
        return ret;
    }
    if (!op) {
        ret = mut_send(m, uuid, err);
        if (ret < 0)
            gcp_mut_release(m);
        return ret;
    }
    data = kc_value_new_map();
    kc_value_map_set(data, "request_id", kc_value_new_str(uuid));
    kc_value_map_set(data, "url", kc_value_new_str(url));
    ret = kc_op_intent_put(op, what, data, err);
    kc_value_free(data);
    if (ret == 0) {
        gcp_job_put(g, &m->job, op);
        ret = kc_op_persist(op, on_mut_persisted);
        if (ret < 0) {
            gcp_job_take(g, op);
            *err = *kc_op_err(op);
        }
    }
    if (ret < 0)
        gcp_mut_release(m);
    return ret;
}

void gcp_mut_release(struct gcp_mut *m)
{
    gcp_call_release(&m->call);
    if (m->waiting)
        gcp_wait_release(&m->wait);
    json_object_put(m->answer);
    json_object_put(m->body);
    free(m->url);
    free(m->what);
    m->answer = m->body = NULL;
    m->url = m->what = NULL;
    m->waiting = false;
}

int gcp_mut_next(struct gcp_mut *m, int status, struct kc_op *op,
                 bool *adopting)
{
    if (status < 0 && m->code == 409 && kc_op_phase(op) == KC_PHASE_CREATE) {
        *adopting = true;
        kc_err_clear(kc_op_err(op));
        return 1;
    }
    if (status < 0 && m->code == 404 && kc_op_phase(op) == KC_PHASE_DELETE)
        return 0;
    if (status < 0) {
        *kc_op_err(op) = m->err;
        return status;
    }
    return kc_op_phase(op) == KC_PHASE_DELETE ? 0 : 1;
}

int gcp_get_done(struct gcp *g, struct kc_op *op, const struct gcp_call *c,
                 int status, const char *what, bool adopting,
                 gcp_observed_fn observed)
{
    bool observing = kc_op_phase(op) == KC_PHASE_OBSERVE;
    char *get;
    int ret;

    if (status == 0 && c->code == 404)
        return observing ? 0
                         : kc_err_set(kc_op_err(op), KC_ENOENT,
                                      "%s '%s' missing after its operation",
                                      what, kc_op_name(op));
    get = kc_xasprintf("get %s", what);
    ret = gcp_call_check(c, status, get, kc_op_err(op));
    free(get);
    if (ret == 0)
        ret =
            observed(op, g, c->resp, adopting || (observing && !kc_op_id(op)));
    return ret;
}
