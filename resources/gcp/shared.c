/* resources/gcp/shared.c: kms_vms.<name> values -> dstack VM spec -> the
 * shared disk image. */
#include "resources/gcp/shared.h"

#include "resources/dstack/fatimg.h"
#include "resources/dstack/vm.h"

int gcp_shared_render(const struct gcp_shared_in *in, int fd, char digest[65],
                      char *compose_hash, struct kc_err *err)
{
    const struct dstack_vm_input vin = {
        .vm_name = in->vm_name,
        .vm = in->vm,
        .base_dir = in->base_dir,
        .kms_addr = in->kms_addr,
        .kms_addr_hint = "unknown: set compose.env.KMS_CONTRACT_ADDR or "
                         "deploy contracts.kms",
        .encrypted_env = in->encrypted_env,
        .encrypted_env_len = in->encrypted_env_len,
    };
    struct dstack_vm_values vals = { 0 };
    struct dstack_vm_files files = { 0 };
    struct dstack_fat_file ff[5];
    struct dstack_fatimg fi = { .files = ff };
    int ret;

    if ((ret = dstack_vm_values_read(&vin, &vals, err)) < 0)
        goto out;
    vals.spec.os_image_hash = in->os_image_hash;
    vals.spec.ids = in->ids;
    if ((ret = dstack_vm_render(&vals.spec, &files, err)) < 0) {
        kc_err_prefix(err, "kms_vms.%s", in->vm_name);
        goto out;
    }
    fi.nfiles = dstack_vm_shared_files(&files, &vals.spec, ff);
    ret = dstack_fatimg_write_fd(&fi, fd, digest, err);
    if (ret == 0 && compose_hash)
        memcpy(compose_hash, files.compose_hash, 65);
out:
    dstack_vm_files_release(&files);
    dstack_vm_values_release(&vals);
    return ret;
}
