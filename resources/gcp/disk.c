/* resources/gcp/disk.c: gcp.disk, a zonal persistent disk made from an
 * image: the KMS VM's data disk. dstack-cloud creates it inside `instances
 * create` with auto-delete=yes, so `deploy --delete` throws the KMS's keys
 * away (reference dstack.md §5.2, §7 "instance replacement"); here it is a
 * resource of its own, attached with autoDelete false, and replacing or
 * deleting it needs consent (allow_identity_loss or --allow-identity-loss).
 *
 * Wire: disks.insert/get/delete (https://cloud.google.com/compute/docs/
 * reference/rest/v1/disks): name, sizeGb (int64 as a string), type
 * "zones/Z/diskTypes/T", sourceImage, labels.
 */
#include "reconcile/resource.h"

#include "reconcile/json.h"
#include "resources/gcp/gcp.h"
#include "resources/gcp/gcp_kinds.h"
#include "resources/gcp/list.h"
#include "resources/gcp/mutate.h"

static const struct kc_field disk_fields[] = {
    { "zone", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "size_gb", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "type", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "image", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "allow_identity_loss", KC_VALUE_BOOL, KC_FIELD_IGNORE_DRIFT },
    { "self_link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

struct disk_job {
    struct kc_op *op;
    struct gcp *g;
    struct gcp_call call;
    struct gcp_mut mut;
    bool adopting;
};

static const char *zone_of(struct kc_op *op, const struct gcp *g)
{
    const char *z = kc_value_str(kc_op_desired(op, "zone"));

    if (!z)
        z = kc_value_str(kc_op_prior(op, "zone"));
    return z ? z : g->cfg.zone;
}

static const char *last_seg(const char *s)
{
    const char *p = s ? strrchr(s, '/') : NULL;

    return p ? p + 1 : (s ? s : "");
}

static void disk_end(struct disk_job *j, int status)
{
    struct kc_op *op = j->op;

    gcp_call_release(&j->call);
    gcp_mut_release(&j->mut);
    free(j);
    kc_op_done(op, status);
}

static int disk_observed(struct kc_op *op, struct gcp *g, struct json_object *o,
                         bool check_owner)
{
    struct kc_value *m = kc_value_new_map();
    struct json_object *labels = NULL;
    const char *self = kc_json_opt_str(o, "selfLink");
    int64_t size = 0;
    int ret;

    json_object_object_get_ex(o, "labels", &labels);
    if (check_owner) {
        char *what = kc_xasprintf("disk '%s'", kc_op_name(op));

        ret =
            gcp_owner_check(g, labels, kc_op_address(op), what, kc_op_err(op));
        free(what);
        if (ret < 0) {
            kc_value_free(m);
            return ret;
        }
    }
    {
        char *what = kc_xasprintf("disk '%s'", kc_op_name(op));

        ret = gcp_answer_int(o, "sizeGb", 1, INT32_MAX, what, &size,
                             kc_op_err(op));
        free(what);
        if (ret < 0) {
            kc_value_free(m);
            return ret;
        }
    }
    kc_value_map_set(m, "zone",
                     kc_value_new_str(last_seg(kc_json_opt_str(o, "zone"))));
    kc_value_map_set(m, "size_gb", kc_value_new_int(size));
    kc_value_map_set(m, "type",
                     kc_value_new_str(last_seg(kc_json_opt_str(o, "type"))));
    kc_value_map_set(
        m, "image",
        kc_value_new_str(last_seg(kc_json_opt_str(o, "sourceImage"))));
    kc_value_map_set(m, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_observed(op, m);
    kc_op_set_id(op, kc_op_name(op));
    kc_op_set_output(op, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_output(op, "name", kc_value_new_str(kc_op_name(op)));
    return 0;
}

static void on_disk_get(struct gcp_call *c, int status)
{
    struct disk_job *j = kc_container_of(c, struct disk_job, call);

    disk_end(j, gcp_get_done(j->g, j->op, c, status, "disk", j->adopting,
                             disk_observed));
}

static char *disk_url(struct disk_job *j)
{
    return gcp_compute_url(j->g, "projects/%s/zones/%s/disks/%s",
                           j->g->cfg.project, zone_of(j->op, j->g),
                           kc_op_name(j->op));
}

static int disk_get(struct disk_job *j)
{
    char *url = disk_url(j);
    int ret;

    ret = gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL, on_disk_get,
                           kc_op_err(j->op));
    free(url);
    return ret;
}

static struct disk_job *disk_job_new(struct kc_op *op)
{
    struct disk_job *j = kc_xcalloc(1, sizeof(*j));

    j->op = op;
    j->g = kc_op_provider_data(op);
    return j;
}

static int disk_observe(struct kc_op *op)
{
    struct disk_job *j = disk_job_new(op);
    int ret = disk_get(j);

    if (ret < 0)
        free(j);
    return ret;
}

static void on_disk_mut(struct gcp_mut *m, int status)
{
    struct disk_job *j = kc_container_of(m, struct disk_job, mut);
    int ret = gcp_mut_next(m, status, j->op, &j->adopting);

    if (ret > 0 && (ret = disk_get(j)) == 0)
        return;
    disk_end(j, ret);
}

static int disk_create(struct kc_op *op)
{
    struct disk_job *j = disk_job_new(op);
    struct json_object *b = json_object_new_object();
    const char *zone = zone_of(op, j->g);
    const char *image = kc_value_str(kc_op_desired(op, "image"));
    const char *type = kc_value_str(kc_op_desired(op, "type"));
    char size[24], *s, *url;
    int ret;

    snprintf(size, sizeof(size), "%lld",
             (long long)kc_value_int(kc_op_desired(op, "size_gb"), 20));
    json_object_object_add(b, "name", json_object_new_string(kc_op_name(op)));
    json_object_object_add(b, "sizeGb", json_object_new_string(size));
    s = kc_xasprintf("zones/%s/diskTypes/%s", zone,
                     type ? type : "pd-balanced");
    json_object_object_add(b, "type", json_object_new_string(s));
    free(s);
    if (image) {
        s = kc_xasprintf("projects/%s/global/images/%s", j->g->cfg.project,
                         image);
        json_object_object_add(b, "sourceImage", json_object_new_string(s));
        free(s);
    }
    json_object_object_add(b, "labels",
                           gcp_owner_labels(j->g, kc_op_address(op)));
    url = gcp_compute_url(j->g, "projects/%s/zones/%s/disks", j->g->cfg.project,
                          zone);
    ret = gcp_mut_start(j->g, &j->mut, op, KC_HTTP_POST, url, "insert", b,
                        on_disk_mut, kc_op_err(op));
    free(url);
    if (ret < 0)
        free(j);
    return ret;
}

static int disk_delete(struct kc_op *op)
{
    struct disk_job *j = disk_job_new(op);
    char *url = disk_url(j);
    int ret = gcp_mut_start(j->g, &j->mut, op, KC_HTTP_DELETE, url, "delete",
                            NULL, on_disk_mut, kc_op_err(op));

    free(url);
    if (ret < 0)
        free(j);
    return ret;
}

static void disk_review(struct kc_op *op)
{
    enum kc_action a = kc_op_action(op);

    if ((a == KC_ACTION_REPLACE || a == KC_ACTION_DELETE) &&
        !kc_value_bool(kc_op_desired(op, "allow_identity_loss"), false))
        kc_op_require_consent(op,
                              "the data disk holds the KMS's keys: to %s it "
                              "destroys the KMS identity",
                              a == KC_ACTION_DELETE ? "delete" : "replace");
}

static int disk_list(struct kc_op *op)
{
    return gcp_list_start(op, true, "disks", true);
}

const struct kc_resource_type kc_gcp_disk = {
    .kind = "gcp.disk",
    .fields = disk_fields,
    .observe = disk_observe,
    .create = disk_create,
    .update = NULL,
    .delete = disk_delete,
    .review = disk_review,
    .list = disk_list,
};
