/* resources/gcp/firewall.c: gcp.firewall, one VPC firewall rule
 * "<instance>-allow-<proto>-<port>" (or -deny-) targeting the instance's tag
 * fw-<instance>, as dstack-cloud's `fw allow/deny` makes it (reference
 * dstack.md §5.4), but owned: patched when the manifest changes and deleted
 * on destroy.
 *
 * Compute Engine v1 firewalls (https://cloud.google.com/compute/docs/
 * reference/rest/v1/firewalls): insert, get, patch (PATCH semantics: the
 * fields sent replace theirs), delete. Firewall rules have no labels, so
 * kmsctl's ownership mark goes at the end of the description:
 * " [kmsctl:<deployment>:<address>]"; a rule with the same name and without
 * this deployment's mark is never adopted (KC_ECONFLICT).
 */
#include "reconcile/resource.h"

#include "reconcile/json.h"
#include "resources/gcp/gcp.h"
#include "resources/gcp/gcp_kinds.h"
#include "resources/gcp/list.h"
#include "resources/gcp/mutate.h"

static const struct kc_field firewall_fields[] = {
    { "network", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "protocol", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "port", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "action", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "priority", KC_VALUE_INT, 0 },
    { "source_ranges", KC_VALUE_LIST, 0 },
    { "target_tag", KC_VALUE_STRING, 0 },
    { "description", KC_VALUE_STRING, 0 },
    { "self_link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

struct fw_job {
    struct kc_op *op;
    struct gcp *g;
    struct gcp_call call;
    struct gcp_mut mut;
    bool adopting;
};

static char *fw_mark(const struct gcp *g, const char *address)
{
    return kc_xasprintf(" [kmsctl:%s:%s]", g->deployment, address);
}

static const char *d_str(struct kc_op *op, const char *f, const char *dflt)
{
    const char *s = kc_value_str(kc_op_desired(op, f));

    return s ? s : dflt;
}

static int64_t d_int(struct kc_op *op, const char *f, int64_t dflt)
{
    return kc_value_int(kc_op_desired(op, f), dflt);
}

/* The rule's JSON from the desired attributes (a full one for insert). */
static struct json_object *fw_body(struct kc_op *op, const struct gcp *g,
                                   bool full)
{
    struct json_object *b = json_object_new_object();
    struct json_object *rules = json_object_new_array();
    struct json_object *rule = json_object_new_object();
    struct json_object *ports = json_object_new_array();
    struct json_object *ranges = json_object_new_array();
    struct json_object *tags = json_object_new_array();
    const struct kc_value *sr = kc_op_desired(op, "source_ranges");
    const char *action = d_str(op, "action", "allow");
    char port[16], *desc, *mark, *net;

    snprintf(port, sizeof(port), "%lld", (long long)d_int(op, "port", 0));
    json_object_object_add(
        rule, "IPProtocol",
        json_object_new_string(d_str(op, "protocol", "tcp")));
    json_object_array_add(ports, json_object_new_string(port));
    json_object_object_add(rule, "ports", ports);
    json_object_array_add(rules, rule);
    if (full) {
        net = kc_xasprintf("projects/%s/global/networks/%s", g->cfg.project,
                           d_str(op, "network", "default"));
        json_object_object_add(b, "name",
                               json_object_new_string(kc_op_name(op)));
        json_object_object_add(b, "network", json_object_new_string(net));
        json_object_object_add(b, "direction",
                               json_object_new_string("INGRESS"));
        json_object_object_add(
            b, strcmp(action, "deny") == 0 ? "denied" : "allowed", rules);
        free(net);
    } else {
        json_object_put(rules);
    }
    for (size_t i = 0; sr && i < kc_value_list_len(sr); i++) {
        const char *s = kc_value_str(kc_value_list_get(sr, i));

        if (s)
            json_object_array_add(ranges, json_object_new_string(s));
    }
    json_object_object_add(b, "sourceRanges", ranges);
    json_object_array_add(tags,
                          json_object_new_string(d_str(op, "target_tag", "")));
    json_object_object_add(b, "targetTags", tags);
    json_object_object_add(
        b, "priority",
        json_object_new_int64(
            d_int(op, "priority", strcmp(action, "deny") == 0 ? 900 : 1000)));
    mark = fw_mark(g, kc_op_address(op));
    desc = kc_xasprintf("%s%s", d_str(op, "description", ""), mark);
    json_object_object_add(b, "description", json_object_new_string(desc));
    free(desc);
    free(mark);
    return b;
}

/* Reads a live rule into the op (observed, id, outputs). KC_ECONFLICT when
 * it is not this deployment's and the state does not know it. */
static int fw_observed(struct kc_op *op, struct gcp *g, struct json_object *o,
                       bool check_owner)
{
    struct kc_value *m = kc_value_new_map(), *ranges = kc_value_new_list();
    struct json_object *rules, *rule, *sr, *tt;
    const char *desc = kc_json_opt_str(o, "description");
    const char *net = kc_json_opt_str(o, "network");
    const char *self = kc_json_opt_str(o, "selfLink");
    char *mark = fw_mark(g, kc_op_address(op));
    size_t dl = desc ? strlen(desc) : 0, ml = strlen(mark);
    bool ours = dl >= ml && strcmp(desc + dl - ml, mark) == 0;
    int64_t prio = 0;
    const char *action = "allow";
    char *what;
    int ret;

    if (check_owner && !ours) {
        kc_err_set(kc_op_err(op), KC_ECONFLICT,
                   "firewall rule '%s' exists but is not this deployment's "
                   "(no '%s' mark in its description): refusing to take it "
                   "over",
                   kc_op_name(op), mark + 1);
        kc_value_free(m);
        kc_value_free(ranges);
        free(mark);
        return KC_ECONFLICT;
    }
    if (!json_object_object_get_ex(o, "allowed", &rules)) {
        json_object_object_get_ex(o, "denied", &rules);
        action = "deny";
    }
    what = kc_xasprintf("firewall rule '%s'", kc_op_name(op));
    rule = kc_json_array_idx(rules, 0);
    if (rule) {
        int64_t port = 0;

        /* A range ("8000-8100") is not what kmsctl makes: an error too. */
        if (gcp_answer_int(rule, "ports[0]", 0, 65535, what, &port,
                           kc_op_err(op)) < 0) {
            free(what);
            kc_value_free(m);
            kc_value_free(ranges);
            free(mark);
            return KC_EPARSE;
        }
        kc_value_map_set(
            m, "protocol",
            kc_value_new_str(kc_json_opt_str(rule, "IPProtocol")
                                 ? kc_json_opt_str(rule, "IPProtocol")
                                 : ""));
        kc_value_map_set(m, "port", kc_value_new_int(port));
    }
    kc_value_map_set(m, "action", kc_value_new_str(action));
    kc_value_map_set(m, "network",
                     kc_value_new_str(net && strrchr(net, '/')
                                          ? strrchr(net, '/') + 1
                                          : (net ? net : "")));
    ret = gcp_answer_int(o, "priority", 0, 65535, what, &prio, kc_op_err(op));
    free(what);
    if (ret < 0) {
        kc_value_free(m);
        kc_value_free(ranges);
        free(mark);
        return ret;
    }
    kc_value_map_set(m, "priority", kc_value_new_int(prio));
    /* An element that is not a string is left out (and shows as drift). */
    if (json_object_object_get_ex(o, "sourceRanges", &sr))
        for (size_t i = 0; i < kc_json_array_len(sr); i++)
            if (kc_json_array_str(sr, i))
                kc_value_list_push(ranges,
                                   kc_value_new_str(kc_json_array_str(sr, i)));
    kc_value_map_set(m, "source_ranges", ranges);
    if (json_object_object_get_ex(o, "targetTags", &tt) &&
        kc_json_array_str(tt, 0))
        kc_value_map_set(m, "target_tag",
                         kc_value_new_str(kc_json_array_str(tt, 0)));
    kc_value_map_set(m, "description",
                     kc_value_new_strn(desc ? desc : "", ours ? dl - ml : dl));
    kc_value_map_set(m, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_observed(op, m);
    kc_op_set_id(op, kc_op_name(op));
    kc_op_set_output(op, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_output(op, "name", kc_value_new_str(kc_op_name(op)));
    free(mark);
    return 0;
}

static char *fw_url(struct gcp *g, struct kc_op *op)
{
    return gcp_compute_url(g, "projects/%s/global/firewalls/%s", g->cfg.project,
                           kc_op_name(op));
}

static void fw_end(struct fw_job *j, int status)
{
    struct kc_op *op = j->op;

    gcp_call_release(&j->call);
    gcp_mut_release(&j->mut);
    free(j);
    kc_op_done(op, status);
}

/* GET the rule; then observed (or absent). */
static void on_fw_get(struct gcp_call *c, int status)
{
    struct fw_job *j = kc_container_of(c, struct fw_job, call);

    fw_end(j, gcp_get_done(j->g, j->op, c, status, "firewall", j->adopting,
                           fw_observed));
}

static int fw_get(struct fw_job *j)
{
    char *url = fw_url(j->g, j->op);
    int ret;

    ret = gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL, on_fw_get,
                           kc_op_err(j->op));
    free(url);
    return ret;
}

static struct fw_job *fw_job_new(struct kc_op *op)
{
    struct fw_job *j = kc_xcalloc(1, sizeof(*j));

    j->op = op;
    j->g = kc_op_provider_data(op);
    return j;
}

static int firewall_observe(struct kc_op *op)
{
    struct fw_job *j = fw_job_new(op);
    int ret = fw_get(j);

    if (ret < 0)
        free(j);
    return ret;
}

static void on_fw_mut(struct gcp_mut *m, int status)
{
    struct fw_job *j = kc_container_of(m, struct fw_job, mut);
    int ret = gcp_mut_next(m, status, j->op, &j->adopting);

    if (ret > 0 && (ret = fw_get(j)) == 0)
        return;
    fw_end(j, ret);
}

static int fw_mutate(struct kc_op *op, enum kc_http_method m, const char *what,
                     struct json_object *body, bool list)
{
    struct fw_job *j = fw_job_new(op);
    char *url = list ? gcp_compute_url(j->g, "projects/%s/global/firewalls",
                                       j->g->cfg.project)
                     : fw_url(j->g, op);
    int ret = gcp_mut_start(j->g, &j->mut, op, m, url, what, body, on_fw_mut,
                            kc_op_err(op));

    free(url);
    if (ret < 0)
        free(j);
    return ret;
}

static int firewall_create(struct kc_op *op)
{
    return fw_mutate(op, KC_HTTP_POST, "insert",
                     fw_body(op, kc_op_provider_data(op), true), true);
}

static int firewall_update(struct kc_op *op)
{
    return fw_mutate(op, KC_HTTP_PATCH, "patch",
                     fw_body(op, kc_op_provider_data(op), false), false);
}

static int firewall_delete(struct kc_op *op)
{
    return fw_mutate(op, KC_HTTP_DELETE, "delete", NULL, false);
}

static int firewall_list(struct kc_op *op)
{
    return gcp_list_start(op, false, "firewalls", false);
}

const struct kc_resource_type kc_gcp_firewall = {
    .kind = "gcp.firewall",
    .fields = firewall_fields,
    .observe = firewall_observe,
    .create = firewall_create,
    .update = firewall_update,
    .delete = firewall_delete,
    .list = firewall_list,
};
