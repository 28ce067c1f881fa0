/* resources/gcp/list.c: list(op) of the GCP kinds (reconcile/resource.h):
 * every object carrying this deployment's ownership mark, so plan and drift
 * can report those in neither the manifest nor the state.
 *
 * Compute Engine v1 list methods (images.list, disks.list, instances.list,
 * firewalls.list: https://cloud.google.com/compute/docs/reference/rest/v1/
 * images/list and its siblings): GET the collection with
 * filter=labels.kmsctl-deployment=<deployment> where objects have labels,
 * then nextPageToken -> pageToken until a page has none. Firewall rules have
 * no labels: every rule is read and kept when its description ends with
 * this deployment's mark " [kmsctl:<deployment>:<address>]" (firewall.c).
 *
 * An object's address: the labelled ones carry kmsctl-address (the label
 * value of their address, gcp_owner_labels); one whose address label names
 * another kind (the boot and shared disks an instance makes carry the
 * instance's) belongs to that resource and is not reported here; the
 * others are reported under their name, the address kmsctl gives them.
 */
#include "resources/gcp/list.h"

#include "reconcile/json.h"
#include "resources/gcp/gcp.h"

#define LIST_MAX_PAGES 1000

struct list_job {
    struct kc_op *op;
    struct gcp *g;
    struct gcp_call call;
    char *base; /* the collection's URL with the filter, if any */
    char *kind; /* "gcp.disk" */
    bool labelled;
    int pages;
};

static void list_end(struct list_job *j, int status)
{
    struct kc_op *op = j->op;

    gcp_call_release(&j->call);
    free(j->base);
    free(j->kind);
    free(j);
    kc_op_done(op, status);
}

/* A firewall rule: its address from the mark at the end of DESC. */
static void found_fw(struct list_job *j, const char *name, const char *desc)
{
    char *pre = kc_xasprintf(" [kmsctl:%s:", j->g->deployment);
    const char *p = desc, *hit = NULL, *addr;
    size_t dl = strlen(desc), kl = strlen(j->kind);

    while ((p = strstr(p, pre)) != NULL) {
        hit = p;
        p++;
    }
    if (hit && dl > 0 && desc[dl - 1] == ']') {
        addr = hit + strlen(pre);
        /* "<kind>.<name>]" at the very end, with no ']' inside. */
        if (strncmp(addr, j->kind, kl) == 0 && addr[kl] == '.' &&
            !memchr(addr, ']', (size_t)(desc + dl - 1 - addr))) {
            char *n = kc_xstrndup(addr + kl + 1,
                                  (size_t)(desc + dl - 1 - (addr + kl + 1)));

            if (*n)
                kc_op_found(j->op, n, name);
            free(n);
        }
    }
    free(pre);
}

/* A labelled object (the filter already kept this deployment's only; its
 * labels are checked again: an answer is not trusted). */
static void found_labelled(struct list_job *j, struct json_object *o,
                           const char *name)
{
    struct json_object *labels = NULL;
    const char *dep, *adr;
    char want[64], prefix[64];
    size_t pl;
    char *kd = kc_xasprintf("%s.", j->kind);

    json_object_object_get_ex(o, "labels", &labels);
    dep = labels ? kc_json_opt_str(labels, GCP_LABEL_DEPLOY) : NULL;
    adr = labels ? kc_json_opt_str(labels, GCP_LABEL_ADDRESS) : NULL;
    gcp_label_value(j->g->deployment, want);
    gcp_label_value(kd, prefix);
    free(kd);
    pl = strlen(prefix);
    if (!dep || strcmp(dep, want) != 0)
        return;
    if (adr && strncmp(adr, prefix, pl) != 0)
        return; /* part of another kind's resource */
    kc_op_found(j->op, name, name);
}

static int list_page(struct list_job *j, const char *token);

static void on_list(struct gcp_call *c, int status)
{
    struct list_job *j = kc_container_of(c, struct list_job, call);
    struct json_object *items = NULL;
    const char *next;
    char *what = kc_xasprintf("list %s", j->kind);
    size_t n;
    int ret;

    ret = gcp_call_check(c, status, what, kc_op_err(j->op));
    free(what);
    if (ret < 0) {
        list_end(j, ret);
        return;
    }
    if (!json_object_is_type(c->resp, json_type_object)) {
        list_end(j, kc_err_set(kc_op_err(j->op), KC_EPARSE,
                               "list %s: the answer is not a JSON object",
                               j->kind));
        return;
    }
    if (json_object_object_get_ex(c->resp, "items", &items) &&
        !json_object_is_type(items, json_type_array)) {
        list_end(j, kc_err_set(kc_op_err(j->op), KC_EPARSE,
                               "list %s: 'items' is not an array", j->kind));
        return;
    }
    n = kc_json_array_len(items);
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = kc_json_array_idx(items, i);
        const char *name = kc_json_opt_str(o, "name");

        if (!name || !*name)
            continue; /* not an object of ours to name */
        if (j->labelled) {
            found_labelled(j, o, name);
        } else {
            const char *desc = kc_json_opt_str(o, "description");

            if (desc)
                found_fw(j, name, desc);
        }
    }
    next = kc_json_opt_str(c->resp, "nextPageToken");
    if (!next || !*next) {
        list_end(j, 0);
        return;
    }
    if (++j->pages >= LIST_MAX_PAGES) {
        list_end(j, kc_err_set(kc_op_err(j->op), KC_EPARSE,
                               "list %s: more than %d pages", j->kind,
                               LIST_MAX_PAGES));
        return;
    }
    {
        char *tok = kc_xstrdup(next); /* c->resp goes with the restart */

        ret = list_page(j, tok);
        free(tok);
    }
    if (ret < 0)
        list_end(j, ret);
}

static int list_page(struct list_job *j, const char *token)
{
    char *url, *esc = token ? kc_http_escape(token) : NULL;
    int ret;

    url = esc ? kc_xasprintf("%s%spageToken=%s", j->base,
                             strchr(j->base, '?') ? "&" : "?", esc)
              : kc_xstrdup(j->base);
    ret = gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL, on_list,
                           kc_op_err(j->op));
    free(url);
    free(esc);
    return ret;
}

int gcp_list_start(struct kc_op *op, bool zonal, const char *coll,
                   bool labelled)
{
    struct list_job *j = kc_xcalloc(1, sizeof(*j));
    char *url;
    int ret;

    j->op = op;
    j->g = kc_op_provider_data(op);
    j->kind = kc_xstrdup(kc_op_address(op));
    j->labelled = labelled;
    url = zonal ? gcp_compute_url(j->g, "projects/%s/zones/%s/%s",
                                  j->g->cfg.project, j->g->cfg.zone, coll)
                : gcp_compute_url(j->g, "projects/%s/global/%s",
                                  j->g->cfg.project, coll);
    if (labelled) {
        char v[64], *f, *esc;

        gcp_label_value(j->g->deployment, v);
        f = kc_xasprintf("labels.%s=%s", GCP_LABEL_DEPLOY, v);
        esc = kc_http_escape(f);
        j->base = kc_xasprintf("%s?filter=%s", url, esc);
        free(esc);
        free(f);
        free(url);
    } else {
        j->base = url;
    }
    ret = list_page(j, NULL);
    if (ret < 0) {
        gcp_call_release(&j->call);
        free(j->base);
        free(j->kind);
        free(j);
    }
    return ret;
}
