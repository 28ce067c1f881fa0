/* resources/dstack/vm.h: every file of a KMS VM's shared disk, from resolved
 * inputs (no UNKNOWN values: the caller refuses or waits for those), and the
 * disk images made from them.
 *
 * dstack_vm_render() builds, in this order: the compose .env settings
 * (dstack_kms_env), prelaunch.sh (they and the .user-config allowlist),
 * app-compose.json (compose text, prelaunch.sh, flags) and its compose hash,
 * .sys-config.json, .instance_info and .user-config. Nothing is random: the
 * instance ids come in SPEC (generated once by the caller, kept in the
 * state), so equal specs give equal bytes.
 *
 * dstack_vm_values_read() makes that spec from a manifest's kms_vms.<name>
 * entry, for `kmsctl render` (cmd/render.c) and the GCP shared disk
 * (resources/gcp/shared.c) alike, so both write the same files.
 */
#ifndef KC_RESOURCES_DSTACK_VM_H
#define KC_RESOURCES_DSTACK_VM_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "reconcile/value.h"
#include "resources/dstack/compose.h"
#include "resources/dstack/fatimg.h"

/* Everything borrowed; NULL pointers and zero counts mean "none". */
struct dstack_vm_spec {
    const char *name; /* app-compose.json "name" */
    enum dstack_kms_mode mode;
    const char *key_provider; /* tpm | kms */
    const char *key_provider_id;
    const char *compose_text;    /* compose.file contents; NULL: template */
    const struct dstack_kv *env; /* compose.env, manifest order */
    size_t nenv;
    const struct dstack_kv *user_config; /* secrets, manifest order */
    size_t nuser_config;
    const char *kms_port, *auth_port, *helios_port;
    const char *kms_contract_addr; /* NULL: must be in env */
    bool gateway_enabled;
    bool public_logs;
    bool public_sysinfo;
    bool public_tcbinfo;
    bool secure_time;
    bool no_instance_id;
    const char *storage_fs; /* NULL: ext4 */
    const char *const *allowed_envs;
    size_t nallowed_envs;
    const char *const *kms_urls;
    size_t nkms_urls;
    const char *const *gateway_urls;
    size_t ngateway_urls;
    const char *pccs_url;
    const char *os_image_hash; /* auth_hash.txt */
    struct dstack_ids ids;     /* filled (dstack_ids_fill) */
    const void *encrypted_env; /* .encrypted-env bytes, key_provider kms */
    size_t encrypted_env_len;
};

struct dstack_vm_files {
    struct kc_buf prelaunch;
    struct kc_buf app_compose;
    struct kc_buf sys_config;
    struct kc_buf instance_info;
    struct kc_buf user_config; /* secret: wiped on release */
    char compose_hash[65];
};

/* Fills F (zeroed by the caller). On failure F is released. */
int dstack_vm_render(const struct dstack_vm_spec *s, struct dstack_vm_files *f,
                     struct kc_err *err);
void dstack_vm_files_release(struct dstack_vm_files *f);

/* The shared disk's files, in dstack-cloud's copy order: app-compose.json,
 * .sys-config.json, .instance_info, .encrypted-env (when S has one),
 * .user-config. Returns the count (4 or 5); OUT borrows from F and S. */
size_t dstack_vm_shared_files(const struct dstack_vm_files *f,
                              const struct dstack_vm_spec *s,
                              struct dstack_fat_file out[5]);

/* kms_vms.<name>.env_encryption, read and checked: the KMS to ask for the
 * app's env encryption key, the root key it must be signed by, and the
 * variables to encrypt (values revealed: they go only into the encryption;
 * borrowed from the value read). */
struct dstack_env_enc {
    const char *kms_url; /* https://, no query, no credentials */
    const char *ca_file; /* resolved against the base folder; NULL: system */
    unsigned char pin[33];
    struct dstack_kv *env;
    size_t nenv;
    /* private */
    char *ca_path;
};

/* Reads EE (env_encryption of kms_vms.VM_NAME, interpolated, known) into E
 * (zeroed by the caller; release it also on failure). Errors name the
 * member ("kms_vms.<name>.env_encryption.kms_k256_pubkey: ..."). */
int dstack_env_enc_read(const char *vm_name, const struct kc_value *ee,
                        const char *base_dir, struct dstack_env_enc *e,
                        struct kc_err *err);
void dstack_env_enc_release(struct dstack_env_enc *e);

/* What dstack_vm_values_read() reads. */
struct dstack_vm_input {
    const char *vm_name;
    const struct kc_value *vm; /* kms_vms.<name>, interpolated */
    const char *base_dir;      /* compose.file is relative to it */
    /* KMS_CONTRACT_ADDR when compose.env does not set it. When neither has
     * it the error is "kms_vms.<name>: KMS_CONTRACT_ADDR <kms_addr_hint>". */
    const char *kms_addr;
    const char *kms_addr_hint;
    /* An UNKNOWN value inside VM is refused, naming its path and the
     * reference it comes from; with SET_HINT the message adds "pass --set
     * REF=<value> to render with it". */
    bool set_hint;
    /* key_provider kms: the .encrypted-env bytes the caller made already
     * (the gcp.image of the shared disk gets them from
     * dstack.encrypted_env): env_encryption then needs only kms_url. NULL:
     * all of env_encryption is read into V->enc for the caller to fetch the
     * key and encrypt (`kmsctl render`), and it sets spec.encrypted_env
     * before dstack_vm_render(), which refuses key_provider kms without. */
    const void *encrypted_env;
    size_t encrypted_env_len;
};

/* A spec read from kms_vms.<name>, with the memory it borrows. */
struct dstack_vm_values {
    /* All but os_image_hash, ids and encrypted_env, the caller's. */
    struct dstack_vm_spec spec;
    /* key_provider kms: env_encryption.kms_url (also spec.kms_urls) */
    const char *kms_url;
    /* and, when IN->encrypted_env was NULL, all of env_encryption */
    struct dstack_env_enc enc;
    /* private */
    char *compose_text;
    struct dstack_kv *env, *user;
    const char **allowed;
    char **strs;
    size_t nstrs, capstrs;
};

/* Fills V (zeroed by the caller; release it also on failure) from IN->vm:
 * mode, compose (file, read from IN->base_dir, or template; env), ports,
 * key_provider (kms needs env_encryption, see IN->encrypted_env),
 * key_provider_id, pccs_url, user_config (the secrets, borrowed revealed),
 * app_compose flags, storage_fs and allowed_envs, KMS_CONTRACT_ADDR. What
 * goes into the measured, public files may not come from ${env:} or
 * ${file:}. Errors name the member ("kms_vms.<name>.compose.env.X: ...").
 * Blocks (reads compose.file). */
int dstack_vm_values_read(const struct dstack_vm_input *in,
                          struct dstack_vm_values *v, struct kc_err *err);
void dstack_vm_values_release(struct dstack_vm_values *v);

/* MAP's string member KEY (*OUT NULL when absent or null), refused when it
 * is not a string or is sensitive (it goes to measured, public files);
 * errors name it "kms_vms.VM_NAME.PATHKEY". */
int dstack_vm_value_str(const char *vm_name, const struct kc_value *map,
                        const char *path, const char *key, const char **out,
                        struct kc_err *err);

#endif
