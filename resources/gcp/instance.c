/* resources/gcp/instance.c: gcp.instance, the KMS's TDX confidential VM as
 * dstack-cloud creates it (reference dstack.md §5.2 step 5): machine type,
 * confidentialInstanceConfig TDX, onHostMaintenance TERMINATE, a 10 GB boot
 * disk from the boot image, the data disk, the shared disk from the shared
 * image, one NIC with an external address, service account and scopes,
 * tags (fw-<instance> always), labels (kmsctl's ownership labels always).
 *
 * A KMS VM holds the KMS's keys on its data disk and in its vTPM (§5.2,
 * §7): so
 *   - the data disk is a gcp.disk of its own, attached with autoDelete
 *     false under device name "data";
 *   - a new shared image (compose, prelaunch, .user-config) is applied IN
 *     PLACE: stop, detach device "shared", insert a disk from the new image,
 *     attach it as "shared" (autoDelete true), start, delete the old disk;
 *     the instance, its vTPM, boot and data disks stay;
 *   - only boot image, machine type, zone, disks, network or name changes
 *     replace the VM (destroy, then create: the name is fixed), and review
 *     refuses that (and destroy) without allow_identity_loss or
 *     --allow-identity-loss;
 *   - drift: a stopped/terminated instance is started; labels and tags set
 *     outside are set back with their fingerprints (setLabels, setTags;
 *     412 conditionNotMet on a stale fingerprint).
 *
 * Wire: instances.insert/get/delete/stop/start/attachDisk/detachDisk/
 * setLabels/setTags and disks.insert/get/delete (https://cloud.google.com/
 * compute/docs/reference/rest/v1/instances); confidential VMs with TDX need
 * scheduling.onHostMaintenance TERMINATE ("Create a Confidential VM
 * instance", https://cloud.google.com/confidential-computing/confidential-
 * vm/docs/create-a-confidential-vm-instance).
 *
 * Outputs: external_ip (first access config's natIP), internal_ip (first
 * NIC's networkIP), self_link.
 */
#include "reconcile/resource.h"

#include "reconcile/json.h"
#include "resources/gcp/codec.h"
#include "resources/gcp/gcp.h"
#include "resources/gcp/gcp_kinds.h"
#include "resources/gcp/list.h"
#include "resources/gcp/mutate.h"

static const struct kc_field instance_fields[] = {
    { "zone", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "machine_type", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "boot_image", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    /* the boot image's kmsctl-source: a new OS image build is a new VM */
    { "boot_digest", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "boot_disk_size_gb", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "data_disk", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "shared_image", KC_VALUE_STRING, 0 },
    { "shared_digest", KC_VALUE_STRING, 0 },
    { "network", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "subnet", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "service_account", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "scopes", KC_VALUE_LIST, KC_FIELD_FORCE_NEW },
    { "tags", KC_VALUE_LIST, 0 },
    { "labels", KC_VALUE_MAP, 0 },
    { "running", KC_VALUE_BOOL, 0 },
    { "allow_identity_loss", KC_VALUE_BOOL, KC_FIELD_IGNORE_DRIFT },
    { "status", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "shared_disk", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "external_ip", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "internal_ip", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "self_link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

enum inst_step {
    IS_GET = 0,    /* GET instance */
    IS_GET_BOOT,   /* GET boot disk: its image */
    IS_GET_SHARED, /* GET shared disk: its image */
    IS_INSERT,     /* instances.insert */
    IS_UPD_START,  /* update: decide what to do */
    IS_STOP,
    IS_NEWDISK, /* disks.insert from the new shared image */
    IS_DETACH,
    IS_ATTACH,
    IS_START,
    IS_DELOLD, /* delete the old shared disk */
    IS_LABELS,
    IS_TAGS,
    IS_DELETE,
    IS_END,
};

struct inst_job {
    struct kc_op *op;
    struct gcp *g;
    enum inst_step step;
    bool adopting, observing;
    struct json_object *inst; /* last GET of the instance */
    char *boot_image, *shared_image, *shared_disk, *old_shared;
    char *shared_digest, *boot_digest;
    char *new_shared;
    bool do_swap, do_labels, do_tags, do_start;
    struct gcp_call call;
    struct gcp_mut mut;
};

static const char *last_seg(const char *s)
{
    const char *p = s ? strrchr(s, '/') : NULL;

    return p ? p + 1 : (s ? s : "");
}

static const char *d_str(struct kc_op *op, const char *f, const char *dflt)
{
    const char *s = kc_value_str(kc_op_desired(op, f));

    if (!s)
        s = kc_value_str(kc_op_prior(op, f));
    return s ? s : dflt;
}

static const char *zone_of(struct inst_job *j)
{
    return d_str(j->op, "zone", j->g->cfg.zone);
}

/* "<instance>-shared-<crc32c of the image name and digest>": new contents
 * get a new disk name, so both disks exist during the swap. */
static char *shared_disk_name(const char *inst, const char *image,
                              const char *digest)
{
    uint32_t c = gcp_crc32c_update(0, image, strlen(image));

    c = gcp_crc32c_update(c, "@", 1);
    if (digest)
        c = gcp_crc32c_update(c, digest, strlen(digest));
    return kc_xasprintf("%.40s-shared-%08x", inst, c);
}

static void inst_end(struct inst_job *j, int status)
{
    struct kc_op *op = j->op;

    json_object_put(j->inst);
    free(j->boot_image);
    free(j->shared_image);
    free(j->shared_digest);
    free(j->boot_digest);
    free(j->shared_disk);
    free(j->old_shared);
    free(j->new_shared);
    gcp_call_release(&j->call);
    gcp_mut_release(&j->mut);
    free(j);
    kc_op_done(op, status);
}

/* The attached disk with DEVICE name, or NULL. */
static struct json_object *attached(struct json_object *inst,
                                    const char *device)
{
    struct json_object *disks;

    if (!json_object_object_get_ex(inst, "disks", &disks))
        return NULL;
    for (size_t i = 0; i < kc_json_array_len(disks); i++) {
        struct json_object *d = kc_json_array_idx(disks, i);
        const char *dev = kc_json_opt_str(d, "deviceName");

        if (dev && strcmp(dev, device) == 0)
            return d;
    }
    return NULL;
}

static struct json_object *boot_disk(struct json_object *inst)
{
    struct json_object *disks;

    if (!json_object_object_get_ex(inst, "disks", &disks))
        return NULL;
    for (size_t i = 0; i < kc_json_array_len(disks); i++) {
        struct json_object *d = kc_json_array_idx(disks, i);
        struct json_object *b;

        if (json_object_object_get_ex(d, "boot", &b) &&
            json_object_get_boolean(b))
            return d;
    }
    return NULL;
}

static const char *scope_as_desired(const struct kc_value *want,
                                    const char *url);

/* Fills observed attributes and outputs from j->inst and the disk images. */
static int inst_observed(struct inst_job *j)
{
    struct kc_op *op = j->op;
    struct json_object *o = j->inst, *labels = NULL, *tags, *sa, *ad, *szv;
    struct kc_value *m = kc_value_new_map(), *lm = kc_value_new_map();
    struct kc_value *tl = kc_value_new_list(), *sc = kc_value_new_list();
    struct json_object *own = gcp_owner_labels(j->g, kc_op_address(op));
    const char *self = kc_json_opt_str(o, "selfLink");
    const char *st = kc_json_opt_str(o, "status");
    const char *nat = kc_json_opt_str(o, "networkInterfaces[0].accessConfigs"
                                         "[0].natIP");
    const char *nip = kc_json_opt_str(o, "networkInterfaces[0].networkIP");
    const char *sub = kc_json_opt_str(o, "networkInterfaces[0].subnetwork");
    int ret = 0;

    json_object_object_get_ex(o, "labels", &labels);
    if (j->adopting || (j->observing && !kc_op_id(op))) {
        char *what = kc_xasprintf("instance '%s'", kc_op_name(op));

        ret = gcp_owner_check(j->g, labels, kc_op_address(op), what,
                              kc_op_err(op));
        free(what);
        if (ret < 0)
            goto out;
    }
    kc_value_map_set(m, "zone",
                     kc_value_new_str(last_seg(kc_json_opt_str(o, "zone"))));
    kc_value_map_set(
        m, "machine_type",
        kc_value_new_str(last_seg(kc_json_opt_str(o, "machineType"))));
    kc_value_map_set(m, "boot_image",
                     kc_value_new_str(j->boot_image ? j->boot_image : ""));
    kc_value_map_set(m, "boot_digest",
                     kc_value_new_str(j->boot_digest ? j->boot_digest : ""));
    ad = boot_disk(o);
    if (ad && kc_json_get(ad, "diskSizeGb", &szv, NULL) != KC_ENOENT) {
        char *what = kc_xasprintf("instance '%s' (boot disk)", kc_op_name(op));
        int64_t size = 0;

        ret = gcp_answer_int(ad, "diskSizeGb", 1, INT32_MAX, what, &size,
                             kc_op_err(op));
        free(what);
        if (ret < 0)
            goto out;
        kc_value_map_set(m, "boot_disk_size_gb", kc_value_new_int(size));
    }
    ad = attached(o, "data");
    kc_value_map_set(
        m, "data_disk",
        kc_value_new_str(ad ? last_seg(kc_json_opt_str(ad, "source")) : ""));
    kc_value_map_set(m, "shared_image",
                     kc_value_new_str(j->shared_image ? j->shared_image : ""));
    kc_value_map_set(
        m, "shared_digest",
        kc_value_new_str(j->shared_digest ? j->shared_digest : ""));
    kc_value_map_set(m, "shared_disk",
                     kc_value_new_str(j->shared_disk ? j->shared_disk : ""));
    kc_value_map_set(m, "network",
                     kc_value_new_str(last_seg(
                         kc_json_opt_str(o, "networkInterfaces[0].network"))));
    if (sub)
        kc_value_map_set(m, "subnet", kc_value_new_str(last_seg(sub)));
    if (json_object_object_get_ex(o, "serviceAccounts", &sa) &&
        kc_json_array_idx(sa, 0)) {
        struct json_object *one = kc_json_array_idx(sa, 0), *s;

        if (kc_json_opt_str(one, "email"))
            kc_value_map_set(m, "service_account",
                             kc_value_new_str(kc_json_opt_str(one, "email")));
        if (json_object_object_get_ex(one, "scopes", &s))
            for (size_t i = 0; i < kc_json_array_len(s); i++)
                if (kc_json_array_str(s, i))
                    kc_value_list_push(sc, kc_value_new_str(scope_as_desired(
                                               kc_op_desired(op, "scopes"),
                                               kc_json_array_str(s, i))));
    }
    kc_value_map_set(m, "scopes", sc);
    sc = NULL;
    if (json_object_object_get_ex(o, "tags", &tags) &&
        json_object_object_get_ex(tags, "items", &tags))
        for (size_t i = 0; i < kc_json_array_len(tags); i++)
            if (kc_json_array_str(tags, i))
                kc_value_list_push(
                    tl, kc_value_new_str(kc_json_array_str(tags, i)));
    kc_value_map_set(m, "tags", tl);
    tl = NULL;
    /* Labels: the manifest's; kmsctl's own are left out while they are
     * right, and shown (as drift) when someone changed them. */
    /* json_object_object_foreach crashes on a value that is not an object. */
    if (json_object_is_type(labels, json_type_object)) {
        json_object_object_foreach (labels, k, v) {
            const char *want = kc_json_opt_str(own, k);
            const char *have = json_object_get_string(v);

            if ((strcmp(k, GCP_LABEL_DEPLOY) == 0 ||
                 strcmp(k, GCP_LABEL_ADDRESS) == 0) &&
                want && have && strcmp(want, have) == 0)
                continue;
            kc_value_map_set(lm, k, kc_value_new_str(have ? have : ""));
        }
    }
    kc_value_map_set(m, "labels", lm);
    lm = NULL;
    kc_value_map_set(m, "running",
                     kc_value_new_bool(st && strcmp(st, "RUNNING") == 0));
    kc_value_map_set(m, "status", kc_value_new_str(st ? st : ""));
    kc_value_map_set(m, "external_ip", kc_value_new_str(nat ? nat : ""));
    kc_value_map_set(m, "internal_ip", kc_value_new_str(nip ? nip : ""));
    kc_value_map_set(m, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_observed(op, m);
    m = NULL;
    kc_op_set_id(op, kc_op_name(op));
    kc_op_set_output(op, "external_ip", kc_value_new_str(nat ? nat : ""));
    kc_op_set_output(op, "internal_ip", kc_value_new_str(nip ? nip : ""));
    kc_op_set_output(op, "self_link", kc_value_new_str(self ? self : ""));
out:
    json_object_put(own);
    kc_value_free(m);
    kc_value_free(lm);
    kc_value_free(tl);
    kc_value_free(sc);
    return ret;
}

static void inst_next(struct inst_job *j);

static void on_inst_get(struct gcp_call *c, int status)
{
    struct inst_job *j = kc_container_of(c, struct inst_job, call);
    const char *img;
    int ret;

    if (j->step == IS_GET && status == 0 && c->code == 404) {
        ret = j->observing
                  ? 0
                  : kc_err_set(kc_op_err(j->op), KC_ENOENT,
                               "instance '%s' is gone", kc_op_name(j->op));
        inst_end(j, ret);
        return;
    }
    if (j->step != IS_GET && status == 0 && c->code == 404) {
        img = NULL; /* a disk deleted outside: no image to report */
    } else {
        ret = gcp_call_check(c, status, "get", kc_op_err(j->op));
        if (ret < 0) {
            inst_end(j, ret);
            return;
        }
        img = kc_json_opt_str(c->resp, "sourceImage");
    }
    switch (j->step) {
    case IS_GET:
        json_object_put(j->inst);
        j->inst = json_object_get(c->resp);
        j->step = IS_GET_BOOT;
        break;
    case IS_GET_BOOT:
        free(j->boot_image);
        j->boot_image = kc_xstrdup(last_seg(img));
        free(j->boot_digest);
        j->boot_digest =
            img && kc_json_opt_str(c->resp, "labels.kmsctl-source")
                ? kc_xstrdup(kc_json_opt_str(c->resp, "labels.kmsctl-source"))
                : NULL;
        j->step = IS_GET_SHARED;
        break;
    default: /* IS_GET_SHARED */
        free(j->shared_image);
        j->shared_image = img ? kc_xstrdup(last_seg(img)) : NULL;
        free(j->shared_digest);
        j->shared_digest = NULL;
        if (img && kc_json_opt_str(c->resp, "labels.kmsctl-source"))
            j->shared_digest =
                kc_xstrdup(kc_json_opt_str(c->resp, "labels.kmsctl-source"));
        j->step = IS_END;
        break;
    }
    inst_next(j);
}

static void on_inst_mut(struct gcp_mut *m, int status)
{
    struct inst_job *j = kc_container_of(m, struct inst_job, mut);

    if (j->step == IS_INSERT && status < 0 && m->code == 409) {
        j->adopting = true; /* ours only if labelled so (checked on GET) */
        kc_err_clear(kc_op_err(j->op));
    } else if ((j->step == IS_DELETE || j->step == IS_DELOLD) && status < 0 &&
               m->code == 404) {
        kc_err_clear(kc_op_err(j->op));
    } else if (status < 0) {
        *kc_op_err(j->op) = m->err;
        inst_end(j, status);
        return;
    }
    switch (j->step) {
    case IS_INSERT:
        j->step = IS_GET;
        break;
    case IS_DELETE:
        inst_end(j, 0);
        return;
    case IS_STOP:
        j->step = IS_NEWDISK;
        break;
    case IS_NEWDISK:
        j->step = IS_DETACH;
        break;
    case IS_DETACH:
        j->step = IS_ATTACH;
        break;
    case IS_ATTACH:
        j->do_start = true; /* it was stopped for the swap */
        j->step = IS_DELOLD;
        break;
    case IS_DELOLD:
        j->step = IS_LABELS;
        break;
    case IS_LABELS:
        j->step = IS_TAGS;
        break;
    case IS_TAGS:
        j->step = IS_START;
        break;
    case IS_START:
        j->do_start = false;
        j->step = IS_GET;
        j->observing = false;
        break;
    default:
        KC_BUG("instance step %d", j->step);
    }
    inst_next(j);
}

static struct json_object *jstr(const char *s)
{
    return json_object_new_string(s);
}

static struct json_object *list_json(const struct kc_value *l)
{
    struct json_object *a = json_object_new_array();

    for (size_t i = 0; l && i < kc_value_list_len(l); i++) {
        const char *s = kc_value_str(kc_value_list_get(l, i));

        if (s)
            json_object_array_add(a, jstr(s));
    }
    return a;
}

/* gcloud's scope aliases (`gcloud compute instances create --scopes`
 * help) to OAuth scope URLs; other names get the usual prefix. Caller
 * frees. */
static char *scope_url(const char *s)
{
    static const struct {
        const char *alias, *scope;
    } aliases[] = {
        { "cloud-platform", "cloud-platform" },
        { "compute-ro", "compute.readonly" },
        { "compute-rw", "compute" },
        { "storage-ro", "devstorage.read_only" },
        { "storage-rw", "devstorage.read_write" },
        { "storage-full", "devstorage.full_control" },
        { "logging-write", "logging.write" },
        { "monitoring-write", "monitoring.write" },
        { "monitoring", "monitoring" },
        { "pubsub", "pubsub" },
        { "service-control", "servicecontrol" },
        { "service-management", "service.management.readonly" },
        { "trace", "trace.append" },
        { "userinfo-email", "userinfo.email" },
    };

    if (strstr(s, "://"))
        return kc_xstrdup(s);
    for (size_t i = 0; i < KC_ARRAY_SIZE(aliases); i++)
        if (strcmp(s, aliases[i].alias) == 0)
            return kc_xasprintf("https://www.googleapis.com/auth/%s",
                                aliases[i].scope);
    return kc_xasprintf("https://www.googleapis.com/auth/%s", s);
}

/* The live scope URL as the manifest spells it (an alias), if it does. */
static const char *scope_as_desired(const struct kc_value *want,
                                    const char *url)
{
    for (size_t i = 0; want && i < kc_value_list_len(want); i++) {
        const char *s = kc_value_str(kc_value_list_get(want, i));
        char *u = s ? scope_url(s) : NULL;
        bool same = u && strcmp(u, url) == 0;

        free(u);
        if (same)
            return s;
    }
    return url;
}

static struct json_object *scopes_json(const struct kc_value *l)
{
    struct json_object *a = json_object_new_array();

    for (size_t i = 0; l && i < kc_value_list_len(l); i++) {
        const char *s = kc_value_str(kc_value_list_get(l, i));
        char *u = s ? scope_url(s) : NULL;

        if (u)
            json_object_array_add(a, jstr(u));
        free(u);
    }
    return a;
}

/* The manifest's labels plus kmsctl's ownership labels. */
static struct json_object *labels_json(struct inst_job *j)
{
    struct json_object *l = gcp_owner_labels(j->g, kc_op_address(j->op));
    const struct kc_value *m = kc_op_desired(j->op, "labels");

    for (size_t i = 0; m && i < kc_value_map_len(m); i++) {
        const char *v = kc_value_str(kc_value_map_val(m, i));

        if (v)
            json_object_object_add(l, kc_value_map_key(m, i), jstr(v));
    }
    return l;
}

/* The shared disk's labels: ownership and the digest of its contents. */
static struct json_object *shared_labels(struct inst_job *j)
{
    struct json_object *l = gcp_owner_labels(j->g, kc_op_address(j->op));
    const char *dg = kc_value_str(kc_op_desired(j->op, "shared_digest"));

    if (dg)
        json_object_object_add(l, "kmsctl-source", jstr(dg));
    return l;
}

static struct json_object *insert_body(struct inst_job *j)
{
    struct kc_op *op = j->op;
    struct gcp *g = j->g;
    const char *zone = zone_of(j), *name = kc_op_name(op);
    struct json_object *b = json_object_new_object(), *o, *disks, *d, *ip;
    struct json_object *nics, *nic, *acs, *ac;
    const char *sa = kc_value_str(kc_op_desired(op, "service_account"));
    const char *sub = kc_value_str(kc_op_desired(op, "subnet"));
    const char *shared = kc_value_str(kc_op_desired(op, "shared_image"));
    char *s, size[24];

    json_object_object_add(b, "name", jstr(name));
    s = kc_xasprintf("zones/%s/machineTypes/%s", zone,
                     d_str(op, "machine_type", "c3-standard-4"));
    json_object_object_add(b, "machineType", jstr(s));
    free(s);
    o = json_object_new_object();
    json_object_object_add(o, "confidentialInstanceType", jstr("TDX"));
    json_object_object_add(b, "confidentialInstanceConfig", o);
    o = json_object_new_object();
    json_object_object_add(o, "onHostMaintenance", jstr("TERMINATE"));
    json_object_object_add(b, "scheduling", o);
    disks = json_object_new_array();
    /* Boot disk: from the boot image, deleted with the instance. */
    d = json_object_new_object();
    ip = json_object_new_object();
    json_object_object_add(d, "boot", json_object_new_boolean(true));
    json_object_object_add(d, "autoDelete", json_object_new_boolean(true));
    json_object_object_add(d, "deviceName", jstr("boot"));
    json_object_object_add(ip, "diskName", jstr(name));
    s = kc_xasprintf("projects/%s/global/images/%s", g->cfg.project,
                     d_str(op, "boot_image", ""));
    json_object_object_add(ip, "sourceImage", jstr(s));
    free(s);
    snprintf(
        size, sizeof(size), "%lld",
        (long long)kc_value_int(kc_op_desired(op, "boot_disk_size_gb"), 10));
    json_object_object_add(ip, "diskSizeGb", jstr(size));
    s = kc_xasprintf("zones/%s/diskTypes/pd-balanced", zone);
    json_object_object_add(ip, "diskType", jstr(s));
    free(s);
    o = gcp_owner_labels(g, kc_op_address(op));
    if (kc_value_str(kc_op_desired(op, "boot_digest")))
        json_object_object_add(
            o, "kmsctl-source",
            jstr(kc_value_str(kc_op_desired(op, "boot_digest"))));
    json_object_object_add(ip, "labels", o);
    json_object_object_add(d, "initializeParams", ip);
    json_object_array_add(disks, d);
    /* Data disk: its own resource, kept when the instance goes. */
    if (kc_value_str(kc_op_desired(op, "data_disk"))) {
        d = json_object_new_object();
        s = kc_xasprintf("projects/%s/zones/%s/disks/%s", g->cfg.project, zone,
                         kc_value_str(kc_op_desired(op, "data_disk")));
        json_object_object_add(d, "source", jstr(s));
        free(s);
        json_object_object_add(d, "deviceName", jstr("data"));
        json_object_object_add(d, "autoDelete", json_object_new_boolean(false));
        json_object_array_add(disks, d);
    }
    /* Shared disk: from the shared image, replaced in place later. */
    if (shared) {
        d = json_object_new_object();
        ip = json_object_new_object();
        json_object_object_add(d, "deviceName", jstr("shared"));
        json_object_object_add(d, "autoDelete", json_object_new_boolean(true));
        s = shared_disk_name(name, shared,
                             kc_value_str(kc_op_desired(op, "shared_digest")));
        json_object_object_add(ip, "diskName", jstr(s));
        free(s);
        s = kc_xasprintf("projects/%s/global/images/%s", g->cfg.project,
                         shared);
        json_object_object_add(ip, "sourceImage", jstr(s));
        free(s);
        json_object_object_add(ip, "diskSizeGb", jstr("1"));
        s = kc_xasprintf("zones/%s/diskTypes/pd-balanced", zone);
        json_object_object_add(ip, "diskType", jstr(s));
        free(s);
        json_object_object_add(ip, "labels", shared_labels(j));
        json_object_object_add(d, "initializeParams", ip);
        json_object_array_add(disks, d);
    }
    json_object_object_add(b, "disks", disks);
    nics = json_object_new_array();
    nic = json_object_new_object();
    s = kc_xasprintf("projects/%s/global/networks/%s", g->cfg.project,
                     d_str(op, "network", "default"));
    json_object_object_add(nic, "network", jstr(s));
    free(s);
    if (sub) {
        s = kc_xasprintf("regions/%.*s/subnetworks/%s",
                         (int)(strrchr(zone, '-') ? strrchr(zone, '-') - zone
                                                  : (long)strlen(zone)),
                         zone, sub);
        json_object_object_add(nic, "subnetwork", jstr(s));
        free(s);
    }
    acs = json_object_new_array();
    ac = json_object_new_object();
    json_object_object_add(ac, "type", jstr("ONE_TO_ONE_NAT"));
    json_object_object_add(ac, "name", jstr("External NAT"));
    json_object_array_add(acs, ac);
    json_object_object_add(nic, "accessConfigs", acs);
    json_object_array_add(nics, nic);
    json_object_object_add(b, "networkInterfaces", nics);
    if (sa) {
        struct json_object *sas = json_object_new_array(), *one;

        one = json_object_new_object();
        json_object_object_add(one, "email", jstr(sa));
        json_object_object_add(one, "scopes",
                               scopes_json(kc_op_desired(op, "scopes")));
        json_object_array_add(sas, one);
        json_object_object_add(b, "serviceAccounts", sas);
    }
    o = json_object_new_object();
    json_object_object_add(o, "items", list_json(kc_op_desired(op, "tags")));
    json_object_object_add(b, "tags", o);
    json_object_object_add(b, "labels", labels_json(j));
    return b;
}

static int inst_get(struct inst_job *j, const char *url)
{
    return gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL, on_inst_get,
                            kc_op_err(j->op));
}

static char *inst_url(struct inst_job *j, const char *suffix)
{
    return gcp_compute_url(j->g, "projects/%s/zones/%s/instances/%s%s",
                           j->g->cfg.project, zone_of(j), kc_op_name(j->op),
                           suffix);
}

static char *disk_url(struct inst_job *j, const char *disk)
{
    return gcp_compute_url(j->g, "projects/%s/zones/%s/disks/%s",
                           j->g->cfg.project, zone_of(j), disk);
}

static int mut(struct inst_job *j, enum kc_http_method m, char *url,
               const char *what, struct json_object *body)
{
    int ret;

    gcp_mut_release(&j->mut); /* the previous step's */
    ret = gcp_mut_start(j->g, &j->mut, j->op, m, url, what, body, on_inst_mut,
                        kc_op_err(j->op));

    free(url);
    return ret;
}

/* Decides what an update does, from the last GET. */
static void plan_update(struct inst_job *j)
{
    struct kc_op *op = j->op;
    const char *st = kc_json_opt_str(j->inst, "status");
    const char *want = kc_value_str(kc_op_desired(op, "shared_image"));

    const char *dg = kc_value_str(kc_op_desired(op, "shared_digest"));

    j->do_swap =
        want &&
        (!j->shared_image || strcmp(want, j->shared_image) != 0 ||
         (dg && (!j->shared_digest || strcmp(dg, j->shared_digest) != 0)));
    j->do_labels = kc_op_changed(op, "labels");
    j->do_tags = kc_op_changed(op, "tags");
    j->do_start = kc_value_bool(kc_op_desired(op, "running"), true) &&
                  !(st && strcmp(st, "RUNNING") == 0);
    if (j->do_swap) {
        struct json_object *ad = attached(j->inst, "shared");

        free(j->old_shared);
        j->old_shared =
            ad ? kc_xstrdup(last_seg(kc_json_opt_str(ad, "source"))) : NULL;
        free(j->new_shared);
        j->new_shared =
            shared_disk_name(kc_op_name(op), want,
                             kc_value_str(kc_op_desired(op, "shared_digest")));
        if (j->old_shared && strcmp(j->old_shared, j->new_shared) == 0) {
            /* Same disk name (image recreated under its name): it must go
             * before the new one is made. Not expected: names follow the
             * image name, and image changes are new names. */
            j->new_shared = NULL;
        }
    }
}

static void inst_next(struct inst_job *j)
{
    struct kc_op *op = j->op;
    const char *st;
    struct json_object *b;
    struct json_object *ad;
    char *url;
    int ret = 0;

    for (;;) {
        switch (j->step) {
        case IS_GET:
            url = inst_url(j, "");
            ret = inst_get(j, url);
            free(url);
            goto started;
        case IS_GET_BOOT:
            ad = boot_disk(j->inst);
            if (!ad) {
                j->step = IS_GET_SHARED;
                continue;
            }
            url = disk_url(j, last_seg(kc_json_opt_str(ad, "source")));
            ret = inst_get(j, url);
            free(url);
            goto started;
        case IS_GET_SHARED:
            ad = attached(j->inst, "shared");
            free(j->shared_disk);
            j->shared_disk =
                ad ? kc_xstrdup(last_seg(kc_json_opt_str(ad, "source"))) : NULL;
            if (!ad) {
                free(j->shared_image);
                j->shared_image = NULL;
                j->step = IS_END;
                continue;
            }
            url = disk_url(j, j->shared_disk);
            ret = inst_get(j, url);
            free(url);
            goto started;
        case IS_END:
            if (kc_op_phase(op) == KC_PHASE_UPDATE && j->observing) {
                j->observing = false;
                plan_update(j);
                j->step = j->do_swap ? IS_STOP : IS_LABELS;
                continue;
            }
            ret = inst_observed(j);
            inst_end(j, ret);
            return;
        case IS_INSERT:
            url = gcp_compute_url(j->g, "projects/%s/zones/%s/instances",
                                  j->g->cfg.project, zone_of(j));
            ret = mut(j, KC_HTTP_POST, url, "insert", insert_body(j));
            goto started;
        case IS_STOP:
            st = kc_json_opt_str(j->inst, "status");
            if (st && strcmp(st, "TERMINATED") == 0) {
                j->step = IS_NEWDISK;
                continue;
            }
            kc_op_progress(op, "stopping to swap the shared disk");
            ret = mut(j, KC_HTTP_POST, inst_url(j, "/stop"), "stop", NULL);
            goto started;
        case IS_NEWDISK: {
            const char *img = kc_value_str(kc_op_desired(op, "shared_image"));
            char *s;

            if (!j->new_shared) {
                j->step = IS_DETACH;
                continue;
            }
            b = json_object_new_object();
            json_object_object_add(b, "name", jstr(j->new_shared));
            json_object_object_add(b, "sizeGb", jstr("1"));
            s = kc_xasprintf("zones/%s/diskTypes/pd-balanced", zone_of(j));
            json_object_object_add(b, "type", jstr(s));
            free(s);
            s = kc_xasprintf("projects/%s/global/images/%s", j->g->cfg.project,
                             img);
            json_object_object_add(b, "sourceImage", jstr(s));
            free(s);
            json_object_object_add(b, "labels", shared_labels(j));
            url = gcp_compute_url(j->g, "projects/%s/zones/%s/disks",
                                  j->g->cfg.project, zone_of(j));
            ret = mut(j, KC_HTTP_POST, url, "insert shared disk", b);
            goto started;
        }
        case IS_DETACH:
            if (!j->old_shared) {
                j->step = IS_ATTACH;
                continue;
            }
            ret = mut(j, KC_HTTP_POST,
                      inst_url(j, "/detachDisk?deviceName="
                                  "shared"),
                      "detachDisk", NULL);
            goto started;
        case IS_ATTACH: {
            char *s;

            if (!j->new_shared) {
                j->step = IS_DELOLD;
                continue;
            }
            b = json_object_new_object();
            s = kc_xasprintf("projects/%s/zones/%s/disks/%s", j->g->cfg.project,
                             zone_of(j), j->new_shared);
            json_object_object_add(b, "source", jstr(s));
            free(s);
            json_object_object_add(b, "deviceName", jstr("shared"));
            json_object_object_add(b, "autoDelete",
                                   json_object_new_boolean(true));
            ret = mut(j, KC_HTTP_POST, inst_url(j, "/attachDisk"), "attachDisk",
                      b);
            goto started;
        }
        case IS_DELOLD:
            if (!j->old_shared) {
                j->step = IS_LABELS;
                continue;
            }
            ret = mut(j, KC_HTTP_DELETE, disk_url(j, j->old_shared),
                      "delete old shared disk", NULL);
            free(j->old_shared);
            j->old_shared = NULL;
            goto started;
        case IS_LABELS:
            if (!j->do_labels) {
                j->step = IS_TAGS;
                continue;
            }
            b = json_object_new_object();
            json_object_object_add(b, "labels", labels_json(j));
            json_object_object_add(
                b, "labelFingerprint",
                jstr(kc_json_opt_str(j->inst, "labelFingerprint")
                         ? kc_json_opt_str(j->inst, "labelFingerprint")
                         : ""));
            ret =
                mut(j, KC_HTTP_POST, inst_url(j, "/setLabels"), "setLabels", b);
            goto started;
        case IS_TAGS:
            if (!j->do_tags) {
                j->step = IS_START;
                continue;
            }
            b = json_object_new_object();
            json_object_object_add(b, "items",
                                   list_json(kc_op_desired(op, "tags")));
            json_object_object_add(
                b, "fingerprint",
                jstr(kc_json_opt_str(j->inst, "tags.fingerprint")
                         ? kc_json_opt_str(j->inst, "tags.fingerprint")
                         : ""));
            ret = mut(j, KC_HTTP_POST, inst_url(j, "/setTags"), "setTags", b);
            goto started;
        case IS_START:
            if (!j->do_start) {
                j->step = IS_GET;
                continue;
            }
            kc_op_progress(op, "starting");
            ret = mut(j, KC_HTTP_POST, inst_url(j, "/start"), "start", NULL);
            goto started;
        case IS_DELETE:
            ret = mut(j, KC_HTTP_DELETE, inst_url(j, ""), "delete", NULL);
            goto started;
        default:
            KC_BUG("instance step %d", j->step);
        }
    }
started:
    if (ret < 0)
        inst_end(j, ret);
}

static struct inst_job *inst_job_new(struct kc_op *op, enum inst_step step)
{
    struct inst_job *j = kc_xcalloc(1, sizeof(*j));

    j->op = op;
    j->g = kc_op_provider_data(op);
    j->step = step;
    return j;
}

static int instance_observe(struct kc_op *op)
{
    struct inst_job *j = inst_job_new(op, IS_GET);

    j->observing = true;
    inst_next(j);
    return 0;
}

static int instance_create(struct kc_op *op)
{
    inst_next(inst_job_new(op, IS_INSERT));
    return 0;
}

/* An update first reads the instance (fingerprints, disks), then runs the
 * steps plan_update() picks, then reads it again. */
static int instance_update(struct kc_op *op)
{
    struct inst_job *j = inst_job_new(op, IS_GET);

    j->observing = true; /* the first GETs plan; IS_END turns it off */
    inst_next(j);
    return 0;
}

static int instance_delete(struct kc_op *op)
{
    inst_next(inst_job_new(op, IS_DELETE));
    return 0;
}

static void instance_review(struct kc_op *op)
{
    enum kc_action a = kc_op_action(op);

    if ((a == KC_ACTION_REPLACE || a == KC_ACTION_DELETE) &&
        !kc_value_bool(kc_op_desired(op, "allow_identity_loss"), false))
        kc_op_require_consent(
            op,
            "%s the KMS VM destroys the KMS identity (keys on the data disk "
            "and in the vTPM)",
            a == KC_ACTION_DELETE ? "deleting" : "replacing");
    else if (a == KC_ACTION_REPLACE || a == KC_ACTION_DELETE)
        kc_op_warn(op,
                   "%s the KMS VM destroys the KMS identity "
                   "(allow_identity_loss: true)",
                   a == KC_ACTION_DELETE ? "deleting" : "replacing");
}

static int instance_list(struct kc_op *op)
{
    return gcp_list_start(op, true, "instances", true);
}

const struct kc_resource_type kc_gcp_instance = {
    .kind = "gcp.instance",
    .fields = instance_fields,
    .observe = instance_observe,
    .create = instance_create,
    .update = instance_update,
    .delete = instance_delete,
    .review = instance_review,
    .list = instance_list,
};
