/* resources/dstack/dstack_kinds.h: the dstack provider's resource kinds
 * (resources/dstack/provider.c) and the generated values of a KMS VM that
 * its kinds and gcp.image share.
 *
 * dstack.encrypted_env.<vm> (resources/dstack/encrypted_env.c): the
 * .encrypted-env of a key_provider kms VM. Field env_encryption (the
 * manifest's map: kms_url, kms_k256_pubkey, ca_file, env), vm_name,
 * base_dir. Observe (plan, drift) and create/update ask the KMS for the
 * app's env encryption key (GetAppEnvEncryptPubKey on the engine's HTTP
 * client), check its signature against kms_k256_pubkey, then encrypt env
 * with the VM's salt (envcrypt.h): outputs app_id, public_key (hex) and
 * encrypted_env (hex, SENSITIVE: the state keeps a digest only), which
 * gcp.image.<vm>-shared takes. Field public_key (KC_FIELD_OBSERVED) is the
 * KMS's key as observe found it, kept in the state as last applied, so a
 * key the KMS rotated is drift (external), not a manifest change. Same
 * values and same KMS key: same bytes and no change; a changed value or a
 * rotated key: other bytes, so the shared image is remade and the VM's
 * shared disk swapped in place. Before the
 * first apply (no app_id yet) observe still asks the KMS, for a placeholder
 * app id, so a wrong pin or an unreachable KMS fails the plan before any
 * change. A destroy (values known only as digests) does not ask the KMS.
 */
#ifndef KC_RESOURCES_DSTACK_DSTACK_KINDS_H
#define KC_RESOURCES_DSTACK_DSTACK_KINDS_H

#include "reconcile/resource.h"
#include "resources/dstack/compose.h"
#include "resources/dstack/envcrypt.h"

extern const struct kc_resource_type kc_dstack_encrypted_env;

/* The generated values of kms_vms.VM: "kms_vms.<vm>.instance_id_seed",
 * ".app_id" (dstack_ids) and, when SALT is not NULL, ".env_salt" (64 hex).
 * Fills IDS and SALT from kc_op_generated(); with GENERATE, makes the
 * missing ones and keeps them (kc_op_generated_put: the caller persists
 * them before they leave the machine, or leaves that to the engine's state
 * write at the end of the op) and *MADE (optional) says whether it did.
 * Without GENERATE a missing value is 1 (nothing made). */
int dstack_vm_generated(struct kc_op *op, const char *vm, bool generate,
                        struct dstack_ids *ids,
                        unsigned char salt[DSTACK_ENV_SALT_LEN], bool *made,
                        struct kc_err *err);

#endif
