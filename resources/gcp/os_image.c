/* resources/gcp/os_image.c: gcp.os_image, a data source: the dstack OS image
 * on the local disk (<search path>/<name>/disk.raw and auth_hash.txt,
 * resources/dstack/osimage.h). Outputs: disk (the disk.raw path),
 * auth_hash, digest (the first 48 hex digits of auth_hash: the boot image's
 * kmsctl-source label, so a new OS image build is a new boot image) and
 * image (the boot image's name as dstack-cloud makes it: os_image with '.'
 * replaced by '-', reference dstack.md §5.2 step 2).
 *
 * The lookup stats a few paths and reads auth_hash.txt (65 bytes): small
 * enough for the loop; the disk itself is only read by gcp.image's archive
 * on the thread pool.
 */
#include "reconcile/resource.h"

#include "resources/dstack/osimage.h"
#include "resources/gcp/gcp_kinds.h"

static const struct kc_field os_image_fields[] = {
    { "name", KC_VALUE_STRING, 0 },
    { "search_paths", KC_VALUE_LIST, 0 },
    { "base_dir", KC_VALUE_STRING, 0 },
    { NULL, 0, 0 },
};

static int os_image_read(struct kc_op *op)
{
    const char *name = kc_value_str(kc_op_desired(op, "name"));
    const struct kc_value *sp = kc_op_desired(op, "search_paths");
    const char *base = kc_value_str(kc_op_desired(op, "base_dir"));
    const char **paths;
    size_t n = 0;
    struct dstack_osimage img = { 0 };
    char digest[49], *bimg;
    int ret;

    if (!name)
        return kc_err_set(kc_op_err(op), KC_EINVAL, "os_image: no name");
    paths = kc_xcalloc(kc_value_list_len(sp) + 1, sizeof(*paths));
    for (size_t i = 0; sp && i < kc_value_list_len(sp); i++)
        if (kc_value_str(kc_value_list_get(sp, i)))
            paths[n++] = kc_value_str(kc_value_list_get(sp, i));
    if (n == 0)
        paths[n++] = "~/.dstack/images";
    ret = dstack_osimage_find(base, paths, n, name, &img, kc_op_err(op));
    free(paths);
    if (ret < 0)
        return ret;
    kc_snprintf(digest, sizeof(digest), "%.48s", img.auth_hash);
    bimg = kc_xstrdup(name);
    for (char *p = bimg; *p; p++)
        if (*p == '.' || *p == '_')
            *p = '-';
    kc_op_set_output(op, "disk", kc_value_new_str(img.disk_path));
    kc_op_set_output(op, "auth_hash", kc_value_new_str(img.auth_hash));
    kc_op_set_output(op, "digest", kc_value_new_str(digest));
    kc_op_set_output(op, "image", kc_value_new_str(bimg));
    free(bimg);
    dstack_osimage_release(&img);
    kc_op_done(op, 0);
    return 0;
}

const struct kc_resource_type kc_gcp_os_image = {
    .kind = "gcp.os_image",
    .fields = os_image_fields,
    .flags = KC_KIND_DATA,
    .read = os_image_read,
};
