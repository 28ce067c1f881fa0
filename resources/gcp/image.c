/* resources/gcp/image.c: gcp.image, a Compute image imported from a tar.gz
 * of a raw disk in Cloud Storage, as dstack-cloud makes its boot, shared
 * and data images (reference dstack.md §5.2 steps 2-4), but content-
 * addressed: the image carries its source's digest in the label
 * kmsctl-source, the tarball is uploaded only when the object in the bucket
 * does not already have the same crc32c and md5Hash, and images being
 * immutable, a different digest replaces the image.
 *
 * Wire: images.insert with rawDisk.source
 * "https://storage.googleapis.com/BUCKET/OBJECT", guestOsFeatures[].type and
 * labels (https://cloud.google.com/compute/docs/reference/rest/v1/images/
 * insert; the tar.gz holds one file named disk.raw, "Import a custom
 * image", https://cloud.google.com/compute/docs/import/import-existing-
 * image). The archive is made by resources/dstack/osimage (oldgnu sparse
 * tar, gzip, reproducible bytes) on the loop's thread pool.
 *
 * Fields: disk (a local raw disk) or generate ("gpt:<bytes>": kmsctl writes
 * dstack's data disk itself, resources/dstack/gptimg; "shared": the KMS VM's
 * shared disk from vm_name, mode, key_provider, key_provider_id, compose,
 * user_config, app_compose, ports, os_image_hash, kms_addr and base_dir,
 * resources/gcp/shared.h), digest (the content identity, a label value; for
 * "shared" the image's own SHA-256, known after apply), guest_os_features,
 * object (default "<name>.tar.gz"). Output digest: the label's value.
 * Delete removes the image and its tarball.
 *
 * The shared disk's instance_id_seed and app_id are generated once and kept
 * in the state (kc_op_generated "kms_vms.<vm>.instance_id_seed" and
 * ".app_id", as `kmsctl render` keeps them; dstack_vm_generated()),
 * persisted before the image leaves the machine. With key_provider kms the
 * disk also holds .encrypted-env: encrypted_env (hex) made by
 * dstack.encrypted_env.<vm> (resources/dstack/dstack_kinds.h), and
 * env_kms_url for .sys-config.json.
 */
#include "reconcile/resource.h"

#include <fcntl.h>
#include <unistd.h>

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/dstack/dstack_kinds.h"
#include "resources/dstack/gptimg.h"
#include "resources/dstack/osimage.h"
#include "resources/gcp/gcp.h"
#include "resources/gcp/gcp_kinds.h"
#include "resources/gcp/list.h"
#include "resources/gcp/mutate.h"
#include "resources/gcp/shared.h"
#include "resources/gcp/storage.h"

#define LABEL_SOURCE "kmsctl-source"

static const struct kc_field image_fields[] = {
    { "disk", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "generate", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "digest", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "guest_os_features", KC_VALUE_LIST, KC_FIELD_FORCE_NEW },
    { "object", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    /* generate: shared (all manifest inputs: a change is a new disk) */
    { "vm_name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "mode", KC_VALUE_STRING, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "key_provider", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "key_provider_id", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "compose", KC_VALUE_MAP, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "user_config", KC_VALUE_MAP, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "app_compose", KC_VALUE_MAP, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "ports", KC_VALUE_MAP, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "pccs_url", KC_VALUE_STRING, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "os_image_hash", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "kms_addr", KC_VALUE_STRING, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    /* key_provider kms: env_encryption.kms_url and the .encrypted-env bytes
     * (hex) from dstack.encrypted_env.<vm>, deterministic: other bytes mean
     * another value or another KMS key, so a new disk. */
    { "env_kms_url", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "encrypted_env", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "base_dir", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "self_link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

enum {
    IMG_ARCHIVE,
    IMG_STAT,
    IMG_UPLOAD,
    IMG_INSERT,
    IMG_GET,
    IMG_DELETE,
    IMG_DELOBJ
};

struct img_job {
    struct gcp_job job; /* while the generated ids are persisted */
    struct kc_op *op;
    struct gcp *g;
    int step;
    bool adopting;
    /* archive (worker thread) */
    uv_work_t work;
    char *dir, *raw, *tgz;
    char *disk, *generate;
    struct dstack_archive_digest dg;
    struct gcp_shared_in sin;
    struct kc_value *vm;   /* generate shared: the inputs as one map */
    unsigned char *encenv; /* .encrypted-env bytes (key_provider kms) */
    char label[49];        /* kmsctl-source of the new image */
    struct kc_err werr;
    int wstatus;
    int fd;
    /* calls */
    struct gcp_call call;
    struct gcp_upload up;
    struct gcp_mut mut;
    bool up_live;
};

static char *object_name(struct kc_op *op)
{
    const char *o = kc_value_str(kc_op_desired(op, "object"));

    if (!o)
        o = kc_value_str(kc_op_prior(op, "object"));
    return o ? kc_xstrdup(o) : kc_xasprintf("%s.tar.gz", kc_op_name(op));
}

static void img_end(struct img_job *j, int status)
{
    struct kc_op *op = j->op;

    if (j->fd >= 0)
        close(j->fd);
    if (j->dir)
        rmdir(j->dir);
    free(j->dir);
    free(j->raw);
    free(j->tgz);
    free(j->disk);
    free(j->generate);
    kc_value_free(j->vm);
    free(j->encenv);
    kc_memzero(&j->sin, sizeof(j->sin));
    gcp_call_release(&j->call);
    if (j->up_live)
        gcp_upload_release(&j->up);
    gcp_mut_release(&j->mut);
    free(j);
    kc_op_done(op, status);
}

/* Observed attributes of a live image. */
static int img_observed(struct kc_op *op, struct gcp *g, struct json_object *o,
                        bool check_owner)
{
    struct kc_value *m = kc_value_new_map(), *feats = kc_value_new_list();
    struct json_object *labels = NULL, *f;
    const char *src, *self = kc_json_opt_str(o, "selfLink");
    int ret;

    json_object_object_get_ex(o, "labels", &labels);
    if (check_owner) {
        char *what = kc_xasprintf("image '%s'", kc_op_name(op));

        ret =
            gcp_owner_check(g, labels, kc_op_address(op), what, kc_op_err(op));
        free(what);
        if (ret < 0) {
            kc_value_free(m);
            kc_value_free(feats);
            return ret;
        }
    }
    src = labels ? kc_json_opt_str(labels, LABEL_SOURCE) : NULL;
    kc_value_map_set(m, "digest", kc_value_new_str(src ? src : ""));
    if (json_object_object_get_ex(o, "guestOsFeatures", &f))
        for (size_t i = 0; i < kc_json_array_len(f); i++) {
            const char *t = kc_json_opt_str(kc_json_array_idx(f, i), "type");

            if (t)
                kc_value_list_push(feats, kc_value_new_str(t));
        }
    kc_value_map_set(m, "guest_os_features", feats);
    src = kc_json_opt_str(o, "rawDisk.source");
    if (src && strchr(src, '/')) {
        /* .../BUCKET/OBJECT: the object is the part after the bucket. */
        const char *p = strstr(src, "://");
        const char *b = p ? strchr(p + 3, '/') : NULL;
        const char *obj = b ? strchr(b + 1, '/') : NULL;

        if (obj)
            kc_value_map_set(m, "object", kc_value_new_str(obj + 1));
    }
    kc_value_map_set(m, "self_link", kc_value_new_str(self ? self : ""));
    src = labels ? kc_json_opt_str(labels, LABEL_SOURCE) : NULL;
    kc_op_set_output(op, "digest", kc_value_new_str(src ? src : ""));
    if (!kc_op_desired(op, "digest"))
        kc_value_map_del(m, "digest"); /* not compared: known after apply */
    kc_op_set_observed(op, m);
    kc_op_set_id(op, kc_op_name(op));
    kc_op_set_output(op, "self_link", kc_value_new_str(self ? self : ""));
    kc_op_set_output(op, "name", kc_value_new_str(kc_op_name(op)));
    return 0;
}

static void img_next(struct img_job *j);

static void on_img_get(struct gcp_call *c, int status)
{
    struct img_job *j = kc_container_of(c, struct img_job, call);

    img_end(j, gcp_get_done(j->g, j->op, c, status, "image", j->adopting,
                            img_observed));
}

static int img_get(struct img_job *j)
{
    char *url = gcp_compute_url(j->g, "projects/%s/global/images/%s",
                                j->g->cfg.project, kc_op_name(j->op));
    int ret;

    ret = gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL, on_img_get,
                           kc_op_err(j->op));
    free(url);
    return ret;
}

static struct img_job *img_job_new(struct kc_op *op)
{
    struct img_job *j = kc_xcalloc(1, sizeof(*j));

    j->op = op;
    j->g = kc_op_provider_data(op);
    j->fd = -1;
    return j;
}

static int image_observe(struct kc_op *op)
{
    struct img_job *j = img_job_new(op);
    int ret = img_get(j);

    if (ret < 0)
        free(j);
    return ret;
}

/* ---- create: archive, upload unless present, insert ---- */

/* A file in the job's folder whose name is gone at once: whatever happens
 * to the process (kill -9 too), nothing kmsctl writes there (the shared
 * disk holds user_config's secrets in plain text, its archive gzipped)
 * stays in TMPDIR. */
static int nameless_fd(const char *path, struct kc_err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0)
        return kc_err_from_errno(err, errno, "create '%s'", path);
    (void)unlink(path);
    return fd;
}

static void archive_work(uv_work_t *w)
{
    struct img_job *j = kc_container_of(w, struct img_job, work);
    const char *disk = j->disk;
    char proc[64];
    int raw = -1;

    if (j->generate) {
        struct dstack_gptimg gi = { 0 };
        char *end = NULL, digest[65];
        unsigned long long size = 0;

        if (strcmp(j->generate, "shared") != 0 &&
            (strncmp(j->generate, "gpt:", 4) != 0 ||
             !(size = strtoull(j->generate + 4, &end, 10)) || *end)) {
            j->wstatus =
                kc_err_set(&j->werr, KC_EINVAL,
                           "generate '%s': expected gpt:<bytes>", j->generate);
            return;
        }
        raw = nameless_fd(j->raw, &j->werr);
        if (raw < 0) {
            j->wstatus = raw;
            return;
        }
        if (size) {
            gi.size = size;
            gi.seed = "kmsctl";
            j->wstatus = dstack_gptimg_write_fd(&gi, raw, &j->werr);
        } else {
            j->sin.vm = j->vm;
            j->wstatus =
                gcp_shared_render(&j->sin, raw, digest, NULL, &j->werr);
            if (j->wstatus == 0)
                kc_snprintf(j->label, sizeof(j->label), "%.48s", digest);
        }
        /* The archiver opens a path: the descriptor's, as Linux shows it. */
        kc_snprintf(proc, sizeof(proc), "/proc/self/fd/%d", raw);
        disk = proc;
    }
    if (j->wstatus == 0) {
        j->fd = nameless_fd(j->tgz, &j->werr);
        j->wstatus = j->fd < 0 ? j->fd : 0;
    }
    if (j->wstatus == 0)
        j->wstatus = dstack_osimage_archive_fd(disk, j->fd, &j->dg, &j->werr);
    if (raw >= 0)
        close(raw);
}

static void archive_done(uv_work_t *w, int status)
{
    struct img_job *j = kc_container_of(w, struct img_job, work);

    if (status < 0)
        j->wstatus = kc_err_from_uv(&j->werr, status, "archive");
    if (j->wstatus < 0) {
        *kc_op_err(j->op) = j->werr;
        kc_err_prefix(kc_op_err(j->op), "archive of image '%s'",
                      kc_op_name(j->op));
        img_end(j, j->wstatus);
        return;
    }
    kc_log(kc_op_log(j->op), KC_LOG_INFO, "gcp",
           "%s: archive %llu bytes, crc32c %s", kc_op_address(j->op),
           (unsigned long long)j->dg.size, j->dg.crc32c_b64);
    j->step = IMG_STAT;
    img_next(j);
}

static void on_img_call(struct gcp_call *c, int status);

static void on_img_progress(void *arg, uint64_t bytes, uint64_t total,
                            double rate)
{
    struct img_job *j = arg;

    kc_op_progress(j->op, "uploading %.1f/%.1f MiB (%.1f MiB/s)",
                   (double)bytes / 1048576.0, (double)total / 1048576.0,
                   rate / 1048576.0);
}

static void on_img_upload(struct gcp_upload *u, int status)
{
    struct img_job *j = kc_container_of(u, struct img_job, up);

    if (status < 0) {
        *kc_op_err(j->op) = u->err;
        img_end(j, status);
        return;
    }
    j->step = IMG_INSERT;
    img_next(j);
}

static void on_img_mut(struct gcp_mut *m, int status)
{
    struct img_job *j = kc_container_of(m, struct img_job, mut);

    if (j->step == IMG_INSERT && status < 0 && m->code == 409) {
        j->adopting = true; /* same name: ours only if labelled so */
        kc_err_clear(kc_op_err(j->op));
    } else if ((j->step == IMG_DELETE) && status < 0 && m->code == 404) {
        kc_err_clear(kc_op_err(j->op)); /* already gone */
    } else if (status < 0) {
        *kc_op_err(j->op) = m->err;
        img_end(j, status);
        return;
    }
    j->step = j->step == IMG_INSERT ? IMG_GET : IMG_DELOBJ;
    img_next(j);
}

static void on_img_call(struct gcp_call *c, int status)
{
    struct img_job *j = kc_container_of(c, struct img_job, call);
    char *obj;
    int ret;

    if (j->step == IMG_STAT) {
        const char *crc = c->resp ? kc_json_opt_str(c->resp, "crc32c") : NULL;
        const char *md5 = c->resp ? kc_json_opt_str(c->resp, "md5Hash") : NULL;

        if (status == 0 && c->code == 200 && crc && md5 &&
            strcmp(crc, j->dg.crc32c_b64) == 0 &&
            strcmp(md5, j->dg.md5_b64) == 0) {
            obj = object_name(j->op);
            kc_log(kc_op_log(j->op), KC_LOG_INFO, "gcp",
                   "%s: gs://%s/%s already holds these bytes: not uploaded",
                   kc_op_address(j->op), j->g->cfg.bucket, obj);
            free(obj);
            j->step = IMG_INSERT;
        } else if (status == 0 && (c->code == 200 || c->code == 404)) {
            j->step = IMG_UPLOAD;
        } else {
            ret = gcp_call_check(c, status, "get object", kc_op_err(j->op));
            img_end(j, ret < 0 ? ret : KC_EREMOTE);
            return;
        }
        img_next(j);
        return;
    }
    /* IMG_DELOBJ */
    if (!(status == 0 &&
          (c->code == 204 || c->code == 200 || c->code == 404))) {
        ret = gcp_call_check(c, status, "delete object", kc_op_err(j->op));
        img_end(j, ret < 0 ? ret : KC_EREMOTE);
        return;
    }
    img_end(j, 0);
}

static struct json_object *img_body(struct img_job *j)
{
    struct json_object *b = json_object_new_object();
    struct json_object *raw = json_object_new_object();
    struct json_object *feats = json_object_new_array();
    struct json_object *labels = gcp_owner_labels(j->g, kc_op_address(j->op));
    const struct kc_value *f = kc_op_desired(j->op, "guest_os_features");
    char *obj = object_name(j->op), *src;

    src = kc_xasprintf("https://storage.googleapis.com/%s/%s", j->g->cfg.bucket,
                       obj);
    json_object_object_add(b, "name",
                           json_object_new_string(kc_op_name(j->op)));
    json_object_object_add(raw, "source", json_object_new_string(src));
    json_object_object_add(b, "rawDisk", raw);
    for (size_t i = 0; f && i < kc_value_list_len(f); i++) {
        struct json_object *t = json_object_new_object();

        json_object_object_add(
            t, "type",
            json_object_new_string(kc_value_str(kc_value_list_get(f, i))));
        json_object_array_add(feats, t);
    }
    json_object_object_add(b, "guestOsFeatures", feats);
    json_object_object_add(labels, LABEL_SOURCE,
                           json_object_new_string(j->label));
    json_object_object_add(b, "labels", labels);
    free(src);
    free(obj);
    return b;
}

static void img_next(struct img_job *j)
{
    struct kc_op *op = j->op;
    char *url = NULL, *obj = object_name(op);
    int ret = 0;

    switch (j->step) {
    case IMG_STAT:
        url = gcp_object_url(j->g, j->g->cfg.bucket, obj);
        ret = gcp_call_restart(j->g, &j->call, KC_HTTP_GET, url, NULL,
                               on_img_call, kc_op_err(op));
        break;
    case IMG_UPLOAD: {
        struct gcp_upload_opts o = { 0 };
        struct json_object *md = gcp_owner_labels(j->g, kc_op_address(op));

        /* j->fd: opened (and unlinked) by archive_work. */
        json_object_object_add(md, LABEL_SOURCE,
                               json_object_new_string(j->label));
        o.bucket = j->g->cfg.bucket;
        o.name = obj;
        o.fd = j->fd;
        o.size = j->dg.size;
        o.crc32c = j->dg.crc32c;
        o.md5 = j->dg.md5;
        o.metadata = md;
        o.progress = on_img_progress;
        o.progress_arg = j;
        ret = gcp_upload_start(j->g, &j->up, &o, on_img_upload, kc_op_err(op));
        json_object_put(md);
        j->up_live = ret == 0;
        break;
    }
    case IMG_INSERT:
        url = gcp_compute_url(j->g, "projects/%s/global/images",
                              j->g->cfg.project);
        ret = gcp_mut_start(j->g, &j->mut, op, KC_HTTP_POST, url, "insert",
                            img_body(j), on_img_mut, kc_op_err(op));
        break;
    case IMG_GET:
        ret = img_get(j);
        break;
    case IMG_DELETE:
        url = gcp_compute_url(j->g, "projects/%s/global/images/%s",
                              j->g->cfg.project, kc_op_name(op));
        ret = gcp_mut_start(j->g, &j->mut, op, KC_HTTP_DELETE, url, "delete",
                            NULL, on_img_mut, kc_op_err(op));
        break;
    case IMG_DELOBJ:
        url = gcp_object_url(j->g, j->g->cfg.bucket, obj);
        ret = gcp_call_restart(j->g, &j->call, KC_HTTP_DELETE, url, NULL,
                               on_img_call, kc_op_err(op));
        break;
    }
    free(url);
    free(obj);
    if (ret < 0)
        img_end(j, ret);
}

static int start_archive(struct img_job *j)
{
    int ret =
        uv_queue_work(kc_op_loop(j->op), &j->work, archive_work, archive_done);

    if (ret < 0)
        return kc_err_from_uv(kc_op_err(j->op), ret, "archive");
    kc_op_progress(j->op, "building the disk archive");
    return 0;
}

static void on_ids_persisted(struct kc_op *op, int status)
{
    struct gcp_job *gj = gcp_job_take(kc_op_provider_data(op), op);
    struct img_job *j = kc_container_of(gj, struct img_job, job);

    if (status == 0)
        status = start_archive(j);
    if (status < 0)
        img_end(j, status);
}

/* generate shared: its inputs as one map, and the ids from the state
 * (generated and persisted the first time). 1: persist started. */
static int shared_prepare(struct img_job *j)
{
    static const char *const keys[] = {
        "mode",        "key_provider", "key_provider_id", "compose",
        "user_config", "app_compose",  "ports",           "pccs_url"
    };
    struct kc_op *op = j->op;
    const char *vm = kc_value_str(kc_op_desired(op, "vm_name"));
    const char *url = kc_value_str(kc_op_desired(op, "env_kms_url"));
    const struct kc_value *v;
    bool made = false;
    int ret;

    if (!vm)
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "image '%s': generate shared needs vm_name",
                          kc_op_name(op));
    j->vm = kc_value_new_map();
    for (size_t i = 0; i < KC_ARRAY_SIZE(keys); i++)
        if ((v = kc_op_desired(op, keys[i])))
            kc_value_map_set(j->vm, keys[i], kc_value_dup(v));
    if (url) {
        struct kc_value *ee = kc_value_new_map();

        kc_value_map_set(ee, "kms_url", kc_value_new_str(url));
        kc_value_map_set(j->vm, "env_encryption", ee);
    }
    if ((v = kc_op_desired(op, "encrypted_env"))) {
        size_t len = 0;
        const char *hex = kc_value_reveal(v, &len);

        j->encenv = kc_xmalloc(len / 2 + 1);
        if (!hex || len % 2 ||
            dstack_hex_decode(hex, j->encenv, len / 2, "encrypted_env",
                              kc_op_err(op)) < 0)
            return kc_err_set(kc_op_err(op), KC_EINVAL,
                              "image '%s': encrypted_env is not hex",
                              kc_op_name(op));
        j->sin.encrypted_env = j->encenv;
        j->sin.encrypted_env_len = len / 2;
    }
    j->sin.vm_name = vm;
    j->sin.base_dir = kc_value_str(kc_op_desired(op, "base_dir"));
    j->sin.os_image_hash = kc_value_str(kc_op_desired(op, "os_image_hash"));
    j->sin.kms_addr = kc_value_str(kc_op_desired(op, "kms_addr"));
    ret = dstack_vm_generated(op, vm, true, &j->sin.ids, NULL, &made,
                              kc_op_err(op));
    if (ret == 0 && made) {
        gcp_job_put(j->g, &j->job, op);
        ret = kc_op_persist(op, on_ids_persisted);
        if (ret < 0)
            gcp_job_take(j->g, op);
        else
            ret = 1;
    }
    return ret;
}

static int image_create(struct kc_op *op)
{
    struct img_job *j;
    const char *disk = kc_value_str(kc_op_desired(op, "disk"));
    const char *gen = kc_value_str(kc_op_desired(op, "generate"));
    const char *tmpdir = getenv("TMPDIR");
    int ret;

    if (!disk == !gen)
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "image '%s': exactly one of disk and generate",
                          kc_op_name(op));
    j = img_job_new(op);
    j->dir = kc_xasprintf("%s/kmsctl-img-XXXXXX",
                          tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(j->dir)) {
        ret = kc_err_from_errno(kc_op_err(op), errno, "mkdtemp '%s'", j->dir);
        free(j->dir);
        free(j);
        return ret;
    }
    j->disk = disk ? kc_xstrdup(disk) : NULL;
    j->generate = gen ? kc_xstrdup(gen) : NULL;
    j->raw = kc_xasprintf("%s/disk.raw", j->dir);
    j->tgz = kc_xasprintf("%s/disk.tar.gz", j->dir);
    kc_snprintf(j->label, sizeof(j->label), "%.48s",
                kc_value_str(kc_op_desired(op, "digest"))
                    ? kc_value_str(kc_op_desired(op, "digest"))
                    : "");
    j->step = IMG_ARCHIVE;
    ret = gen && strcmp(gen, "shared") == 0 ? shared_prepare(j) : 0;
    if (ret == 0)
        ret = start_archive(j);
    if (ret < 0) {
        /* Nothing started: undo without kc_op_done. */
        rmdir(j->dir);
        free(j->dir);
        free(j->disk);
        free(j->generate);
        free(j->raw);
        free(j->tgz);
        kc_value_free(j->vm);
        free(j->encenv);
        free(j);
        return ret;
    }
    return 0;
}

static int image_delete(struct kc_op *op)
{
    struct img_job *j = img_job_new(op);

    j->step = IMG_DELETE;
    img_next(j);
    return 0;
}

static int image_list(struct kc_op *op)
{
    return gcp_list_start(op, false, "images", true);
}

const struct kc_resource_type kc_gcp_image = {
    .kind = "gcp.image",
    .fields = image_fields,
    .observe = image_observe,
    .create = image_create,
    .update = NULL, /* images are immutable: a change replaces */
    .delete = image_delete,
    .list = image_list,
};
