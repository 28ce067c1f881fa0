/* resources/gcp/shared.h: the KMS VM's shared disk (the FAT image holding
 * app-compose.json, .sys-config.json, .instance_info and .user-config, as
 * dstack-cloud `deploy` step 3 makes it, reference dstack.md §5.2), built
 * from the interpolated kms_vms.<name> map at apply time, for gcp.image.
 *
 * Everything comes from resources/dstack: the spec from the manifest's
 * values (dstack_vm_values_read, the one `kmsctl render` uses, so both
 * write the same files), the files (dstack_vm_render) and the image
 * (dstack_fatimg). KMS_CONTRACT_ADDR comes from compose.env or KMS_ADDR;
 * .encrypted-env from the caller (made at plan time, see
 * resources/dstack/dstack_kinds.h).
 *
 * Blocks (reads compose.file, writes the image): call it off the loop.
 */
#ifndef KC_RESOURCES_GCP_SHARED_H
#define KC_RESOURCES_GCP_SHARED_H

#include "reconcile/kc.h"
#include "reconcile/value.h"
#include "resources/dstack/compose.h"

struct gcp_shared_in {
    const char *vm_name;
    const struct kc_value *vm; /* kms_vms.<name>, interpolated, known */
    const char *base_dir;      /* the manifest's folder (compose.file) */
    const char *os_image_hash; /* auth_hash.txt */
    const char *kms_addr;      /* or NULL: compose.env must have it */
    struct dstack_ids ids;     /* filled */
    /* key_provider kms: the .encrypted-env bytes (dstack.encrypted_env);
     * VM then needs only env_encryption.kms_url. */
    const void *encrypted_env;
    size_t encrypted_env_len;
};

/* Writes the shared disk image to FD (from its current position); DIGEST
 * gets its SHA-256 (hex) and COMPOSE_HASH (optional, 65) the app-compose
 * hash. */
int gcp_shared_render(const struct gcp_shared_in *in, int fd, char digest[65],
                      char *compose_hash, struct kc_err *err);

#endif
