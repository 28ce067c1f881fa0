/* resources/aws/provider.c: the aws provider (providers.aws of the manifest)
 * and the machinery its kinds share. */
#include "resources/aws/kinds.h"

#include <libxml/tree.h>

static const char *cfg_str(const struct kc_value *cfg, const char *key)
{
    const struct kc_value *v = cfg ? kc_value_map_get(cfg, key) : NULL;

    /* Values from ${env:...} are marked sensitive; endpoints and paths are
     * not secrets, and are used only where they are needed. */
    return v && v->type == KC_VALUE_STRING ? kc_value_reveal(v, NULL) : NULL;
}

/* A path from the manifest: relative to the manifest's folder (the working
 * folder when there is none). NULL stays NULL. Caller frees. */
static char *cfg_path(const struct kc_provider *p, const char *key)
{
    const char *s = cfg_str(p->config, key);

    if (!s)
        return NULL;
    if (s[0] == '/' || s[0] == '~' || !p->manifest_dir || !*p->manifest_dir)
        return kc_xstrdup(s);
    return kc_xasprintf("%s/%s", p->manifest_dir, s);
}

static int aws_init(struct kc_provider *p, struct kc_err *err)
{
    struct aws_provider *prov = kc_xcalloc(1, sizeof(*prov));
    struct aws_ec2_config c = { 0 };
    char *cred_file = cfg_path(p, "credentials_file");
    char *conf_file = cfg_path(p, "config_file");
    int ret;

    c.http = p->http;
    c.log = p->log;
    c.endpoint = cfg_str(p->config, "endpoint");
    c.profile = cfg_str(p->config, "profile");
    c.region = cfg_str(p->config, "region");
    c.credentials_file = cred_file;
    c.config_file = conf_file;
    c.imds_endpoint = cfg_str(p->config, "imds_endpoint");
    if (!p->http) {
        free(prov);
        free(cred_file);
        free(conf_file);
        return kc_err_set(err, KC_EINVAL, "aws: no http client");
    }
    ret = aws_ec2_new(&c, &prov->ec2, err);
    free(cred_file); /* read (and copied) by aws_ec2_new */
    free(conf_file);
    if (ret < 0) {
        free(prov);
        return kc_err_prefix(err, "providers.aws");
    }
    (void)kc_snprintf(prov->deployment, sizeof(prov->deployment), "%s",
                      p->deployment ? p->deployment : "");
    p->data = prov;
    return 0;
}

static void aws_cleanup(struct kc_provider *p)
{
    struct aws_provider *prov = p->data;

    if (!prov)
        return;
    aws_ec2_free(prov->ec2);
    free(prov);
    p->data = NULL;
}

static const struct kc_resource_type *const aws_kinds[] = {
    &kc_aws_ami, &kc_aws_key_pair, &kc_aws_security_group, &kc_aws_instance,
    NULL,
};

const struct kc_provider_type kc_provider_aws = {
    .name = "aws",
    .kinds = aws_kinds,
    /* EC2 throttles per account and region; a few calls at once is plenty. */
    .concurrency = 8,
    .init = aws_init,
    .cleanup = aws_cleanup,
};

/* ------------------------------------------------------------------ */
/* Jobs. */

struct aws_job *aws_job_new(struct kc_op *op)
{
    struct aws_job *j = kc_xcalloc(1, sizeof(*j));

    j->op = op;
    j->prov = kc_op_provider_data(op);
    j->started_ms = uv_now(kc_op_loop(op));
    j->next_live = j->prov->live;
    j->prov->live = j;
    return j;
}

uint64_t aws_job_elapsed(const struct aws_job *j)
{
    return uv_now(kc_op_loop(j->op)) - j->started_ms;
}

static void on_job_call(struct aws_ec2_call *call, int status)
{
    struct aws_job *j = call->data;

    j->next(j, status);
}

static void on_job_timer(uv_timer_t *t)
{
    struct aws_job *j = t->data;

    j->next(j, j->status);
}

static void on_sync_fail(uv_timer_t *t)
{
    struct aws_job *j = t->data;

    j->next(j, j->call.err.code ? j->call.err.code : KC_EIO);
}

static void arm(struct aws_job *j, uint64_t ms, uv_timer_cb cb)
{
    int ret;

    if (!j->timer_open) {
        ret = uv_timer_init(kc_op_loop(j->op), &j->timer);
        if (ret < 0)
            KC_BUG("uv_timer_init: %s", uv_strerror(ret));
        j->timer.data = j;
        j->timer_open = true;
    }
    ret = uv_timer_start(&j->timer, cb, ms, 0);
    if (ret < 0)
        KC_BUG("uv_timer_start: %s", uv_strerror(ret));
}

void aws_job_send(struct aws_job *j, unsigned flags, aws_job_fn next)
{
    j->next = next;
    j->call.data = j;
    if (aws_ec2_send(j->prov->ec2, &j->call, flags, on_job_call, &j->call.err) <
        0)
        arm(j, 0, on_sync_fail); /* from the loop, as promised */
}

void aws_job_sleep(struct aws_job *j, uint64_t ms, aws_job_fn next)
{
    j->next = next;
    j->status = 0;
    arm(j, ms, on_job_timer);
}

static void on_persisted(struct kc_op *op, int status)
{
    struct aws_provider *prov = kc_op_provider_data(op);
    struct aws_job *j = prov->live;

    while (j && j->op != op)
        j = j->next_live;
    if (!j)
        KC_BUG("persist callback for an op without a job");
    if (status < 0)
        j->call.err = *kc_op_err(op);
    j->next(j, status);
}

void aws_job_persist(struct aws_job *j, aws_job_fn next)
{
    j->next = next;
    if (kc_op_persist(j->op, on_persisted) < 0) {
        j->call.err = *kc_op_err(j->op);
        arm(j, 0, on_sync_fail);
    }
}

static void on_job_closed(uv_handle_t *h)
{
    struct aws_job *j = h->data;
    struct kc_op *op = j->op;
    int status = j->status;
    struct aws_job **pp = &j->prov->live;

    while (*pp && *pp != j)
        pp = &(*pp)->next_live;
    if (*pp)
        *pp = j->next_live;

    kc_value_free(j->values);
    free(j);
    kc_op_done(op, status);
}

void aws_job_finish(struct aws_job *j, int status)
{
    aws_ec2_call_release(&j->call);
    j->status = status;
    if (j->timer_open) {
        uv_close((uv_handle_t *)&j->timer, on_job_closed);
        return;
    }
    j->timer.data = j;
    on_job_closed((uv_handle_t *)&j->timer);
}

void aws_job_fail(struct aws_job *j, int code, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof(kc_op_err(j->op)->msg)];

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap); /* as kc_err_set cuts it */
    va_end(ap);
    kc_err_set(kc_op_err(j->op), code, "%s", msg);
    aws_job_finish(j, code);
}

void aws_job_fail_call(struct aws_job *j, int status)
{
    struct kc_err *err = kc_op_err(j->op);

    *err = j->call.err;
    if (!err->code)
        kc_err_set(err, status < 0 ? status : KC_EIO, "ec2 %s failed",
                   j->call.action);
    aws_job_finish(j, err->code);
}

/* ------------------------------------------------------------------ */
/* Tags. */

struct kc_value *aws_tags_from_xml(struct _xmlNode *item)
{
    struct kc_value *m = kc_value_new_map();

    for (xmlNode *t = aws_xml_child(item, "tagSet/item"); t;
         t = aws_xml_next(t)) {
        const char *k = aws_xml_text(t, "key"), *v = aws_xml_text(t, "value");

        if (k)
            kc_value_map_set(m, k, kc_value_new_str(v ? v : ""));
    }
    return m;
}

const char *aws_tag(struct _xmlNode *item, const char *key)
{
    for (xmlNode *t = aws_xml_child(item, "tagSet/item"); t;
         t = aws_xml_next(t)) {
        const char *k = aws_xml_text(t, "key");

        if (k && strcmp(k, key) == 0)
            return aws_xml_text(t, "value");
    }
    return NULL;
}

void aws_query_tag_spec(struct aws_query *q, int n, const char *resource_type,
                        const struct kc_value *tags)
{
    aws_query_addf(q, resource_type, "TagSpecification.%d.ResourceType", n);
    for (size_t i = 0; tags && i < kc_value_map_len(tags); i++) {
        const struct kc_value *v = kc_value_map_val(tags, i);

        aws_query_addf(q, kc_value_map_key(tags, i),
                       "TagSpecification.%d.Tag.%zu.Key", n, i + 1);
        aws_query_addf(q,
                       kc_value_reveal(v, NULL) ? kc_value_reveal(v, NULL) : "",
                       "TagSpecification.%d.Tag.%zu.Value", n, i + 1);
    }
}

struct kc_value *aws_tags_managed(const struct kc_value *observed,
                                  const struct kc_value *desired)
{
    struct kc_value *m = kc_value_new_map();

    for (size_t i = 0; desired && i < kc_value_map_len(desired); i++) {
        const char *k = kc_value_map_key(desired, i);
        const struct kc_value *v = kc_value_map_get(observed, k);

        if (v)
            kc_value_map_set(m, k, kc_value_dup(v));
    }
    return m;
}

bool aws_owned(struct aws_job *j, struct _xmlNode *item)
{
    const char *dep = aws_tag(item, AWS_TAG_DEPLOYMENT);
    const char *addr = aws_tag(item, AWS_TAG_ADDRESS);

    return dep && addr && strcmp(dep, j->prov->deployment) == 0 &&
           strcmp(addr, kc_op_address(j->op)) == 0;
}

const char *aws_desired_str(struct kc_op *op, const char *field)
{
    const struct kc_value *v = kc_op_desired(op, field);

    return v && v->type == KC_VALUE_STRING ? kc_value_reveal(v, NULL) : NULL;
}

/* ------------------------------------------------------------------ */
/* list: the objects of a kind carrying this deployment's tag. */

struct list_spec {
    const char *kind;
    const char *action;
    const char *set;   /* from the answer's root to the items */
    const char *inner; /* from an item to the objects, or NULL */
    const char *id;    /* the id element of an object */
    bool paginated;    /* NextToken / MaxResults */
    const char *filter;
    const char *const *values; /* of FILTER (NULL-terminated) */
};

/* Every state but terminated (EC2 filters cannot say "not"). */
static const char *const live_states[] = { "pending",       "running",
                                           "stopping",      "stopped",
                                           "shutting-down", NULL };

static const struct list_spec list_specs[] = {
    { "aws.instance", "DescribeInstances", "reservationSet/item",
      "instancesSet/item", "instanceId", true, "instance-state-name",
      live_states },
    { "aws.security_group", "DescribeSecurityGroups", "securityGroupInfo/item",
      NULL, "groupId", true, NULL, NULL },
    { "aws.key_pair", "DescribeKeyPairs", "keySet/item", NULL, "keyPairId",
      false, NULL, NULL },
};

/* Pages followed at most (a guard against an endpoint that never ends). */
#define AWS_LIST_MAX_PAGES 1000

static const struct list_spec *list_spec_of(const char *kind)
{
    for (size_t i = 0; i < KC_ARRAY_SIZE(list_specs); i++)
        if (strcmp(list_specs[i].kind, kind) == 0)
            return &list_specs[i];
    return NULL;
}

static void list_found(struct aws_job *j, const struct list_spec *s,
                       struct _xmlNode *obj)
{
    const char *addr = aws_tag(obj, AWS_TAG_ADDRESS);
    const char *dep = aws_tag(obj, AWS_TAG_DEPLOYMENT);
    size_t klen = strlen(s->kind);

    /* EC2 filtered on the tag; check again (the answer is outside input). */
    if (!dep || strcmp(dep, j->prov->deployment) != 0)
        return;
    if (!addr || strncmp(addr, s->kind, klen) != 0 || addr[klen] != '.' ||
        !addr[klen + 1]) {
        kc_op_progress(
            j->op,
            "%s %s carries the deployment tag but no %s tag "
            "naming a %s: ignored",
            s->kind, aws_xml_text(obj, s->id) ? aws_xml_text(obj, s->id) : "?",
            AWS_TAG_ADDRESS, s->kind);
        return;
    }
    kc_op_found(j->op, addr + klen + 1, aws_xml_text(obj, s->id));
}

static void list_page(struct aws_job *j, const char *token);

static void on_list(struct aws_job *j, int status)
{
    const struct list_spec *s = list_spec_of(kc_op_address(j->op));
    const char *token;
    char *next = NULL;

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    for (xmlNode *it = aws_xml_child(j->call.root, s->set); it;
         it = aws_xml_next(it)) {
        if (!s->inner) {
            list_found(j, s, it);
            continue;
        }
        for (xmlNode *o = aws_xml_child(it, s->inner); o; o = aws_xml_next(o))
            list_found(j, s, o);
    }
    token = s->paginated ? aws_xml_text(j->call.root, "nextToken") : NULL;
    if (!token || !*token) {
        aws_job_finish(j, 0);
        return;
    }
    if (++j->step >= AWS_LIST_MAX_PAGES) {
        aws_job_fail(j, KC_EREMOTE, "ec2 %s: still a nextToken after %d pages",
                     s->action, AWS_LIST_MAX_PAGES);
        return;
    }
    next = kc_xstrdup(token); /* the answer is released by the next call */
    aws_ec2_call_release(&j->call);
    list_page(j, next);
    free(next);
}

static void list_page(struct aws_job *j, const char *token)
{
    const struct list_spec *s = list_spec_of(kc_op_address(j->op));

    aws_ec2_call_init(&j->call, s->action);
    aws_query_add(&j->call.q, "Filter.1.Name", "tag:" AWS_TAG_DEPLOYMENT);
    aws_query_add(&j->call.q, "Filter.1.Value.1", j->prov->deployment);
    for (int i = 0; s->filter && s->values[i]; i++) {
        if (i == 0)
            aws_query_add(&j->call.q, "Filter.2.Name", s->filter);
        aws_query_addf(&j->call.q, s->values[i], "Filter.2.Value.%d", i + 1);
    }
    if (s->paginated)
        aws_query_add(&j->call.q, "MaxResults", "1000");
    if (token)
        aws_query_add(&j->call.q, "NextToken", token);
    aws_job_send(j, 0, on_list);
}

int aws_list(struct kc_op *op)
{
    struct aws_provider *prov = kc_op_provider_data(op);

    if (!list_spec_of(kc_op_address(op)))
        KC_BUG("aws_list for kind %s", kc_op_address(op));
    if (!prov->deployment[0])
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "%s: no deployment name to list by",
                          kc_op_address(op));
    list_page(aws_job_new(op), NULL);
    return 0;
}
