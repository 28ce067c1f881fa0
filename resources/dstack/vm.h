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
 */
#ifndef KC_RESOURCES_DSTACK_VM_H
#define KC_RESOURCES_DSTACK_VM_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
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

#endif
