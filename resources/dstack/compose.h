/* resources/dstack/compose.h: the files of a dstack VM's shared disk as text:
 * app-compose.json and its compose hash, prelaunch.sh, .sys-config.json,
 * .instance_info, .user-config, and the built-in KMS compose templates
 * (reference/dstack.md §4.1-§4.4, §5.5, §5.6).
 *
 * Serialisation is the one dstack-cloud uses (Python json.dump(indent=2)):
 * keys in a fixed order, two-space indent, ": " between key and value, items
 * one per line, non-ASCII and control characters escaped as \uXXXX (UTF-16
 * surrogate pairs above the BMP), no trailing newline. Equal inputs give equal
 * bytes; the compose hash is SHA-256 over exactly those bytes (§4.2), so
 * nothing here depends on the clock, the locale or a random source except
 * dstack_ids_fill(), whose results the caller keeps (state.h, generated).
 *
 * Strings must be valid UTF-8 without NUL bytes; anything else is refused
 * with KC_EINVAL naming the field. Output goes into a struct kc_buf that the
 * caller owns (appended to).
 */
#ifndef KC_RESOURCES_DSTACK_COMPOSE_H
#define KC_RESOURCES_DSTACK_COMPOSE_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

/* Size caps the guest applies when it copies the files (§4.4). */
#define DSTACK_APP_COMPOSE_MAX (256u << 10)
#define DSTACK_SYS_CONFIG_MAX  (32u << 10)
#define DSTACK_INSTANCE_MAX    (10u << 10)
#define DSTACK_ENC_ENV_MAX     (256u << 10)
#define DSTACK_USER_CONFIG_MAX (1u << 20)

/* The fields of app-compose.json, in the order they are written. Strings are
 * borrowed; NULL means "". */
struct dstack_app_compose {
    const char *name;
    const char *docker_compose_file; /* the compose YAML text */
    bool gateway_enabled;
    bool public_logs;
    bool public_sysinfo;
    bool public_tcbinfo;
    const char *key_provider_id; /* hex, "" for tpm and none */
    const char *const *allowed_envs;
    size_t nallowed_envs;
    bool no_instance_id;
    bool secure_time;
    const char *key_provider;      /* kms | local | tpm | none */
    const char *storage_fs;        /* ext4 | zfs; NULL: ext4 */
    const char *pre_launch_script; /* the prelaunch.sh text */
};

/* Appends app-compose.json to OUT. Rules (checked, KC_EINVAL otherwise):
 * key_provider is one of kms, local, tpm, none; storage_fs ext4 or zfs;
 * gateway_enabled only with kms; key_provider_id empty for tpm and none, else
 * hex; allowed_envs are environment variable names ([A-Za-z_][A-Za-z0-9_]*)
 * and are written once each, in first-seen order (dstack-cloud goes through a
 * Python set, whose order moves the hash between runs; §4.1). A provider
 * other than kms always gets no_instance_id true, as dstack-cloud does. The
 * result must fit DSTACK_APP_COMPOSE_MAX. */
int dstack_app_compose_render(const struct dstack_app_compose *c,
                              struct kc_buf *out, struct kc_err *err);

/* SHA-256 of LEN bytes of DATA as 64 lowercase hex digits (and a NUL). */
void dstack_sha256_hex(const void *data, size_t len, char hex[65]);
/* The compose hash: SHA-256 of the exact bytes of app-compose.json. */
#define dstack_compose_hash dstack_sha256_hex

/* .sys-config.json (§4.3). OS_IMAGE_HASH is the stripped auth_hash.txt
 * (hex, may be ""). vm_config is written as a JSON string holding
 * {"spec_version": 2, "os_image_hash": "<hex>"}. */
struct dstack_sys_config {
    const char *const *kms_urls;
    size_t nkms_urls;
    const char *const *gateway_urls;
    size_t ngateway_urls;
    const char *pccs_url;
    const char *os_image_hash;
};
int dstack_sys_config_render(const struct dstack_sys_config *sc,
                             struct kc_buf *out, struct kc_err *err);

/* The two identifiers of .instance_info (§4.4): 40 lowercase hex digits. */
struct dstack_ids {
    char instance_id_seed[41];
    char app_id[41];
};
/* Normalises what IDS already holds (upper case lowered; KC_EINVAL unless 20
 * bytes of hex) and generates each empty one from the OS random source.
 * *GENERATED (optional) gets a bit per generated member: 1 seed, 2 app_id. The
 * caller stores generated values in the state (kc_state_generated_put) and
 * passes them back next time. */
int dstack_ids_fill(struct dstack_ids *ids, unsigned *generated,
                    struct kc_err *err);
/* .instance_info: {"instance_id_seed": …, "app_id": …}, both already valid. */
int dstack_instance_info_render(const struct dstack_ids *ids,
                                struct kc_buf *out, struct kc_err *err);

/* One KEY=VALUE setting. */
struct dstack_kv {
    const char *key;
    const char *value;
};

/* .user-config: a JSON object of string values, in the order given. The
 * values are secrets: OUT should be released with kc_buf_release_wipe().
 * Keys must be environment variable names (they are imported through the
 * prelaunch allowlist). */
int dstack_user_config_render(const struct dstack_kv *kv, size_t n,
                              struct kc_buf *out, struct kc_err *err);

/* prelaunch.sh (§5.5): the guest sources it with bash in the compose folder
 * before `docker compose up`. It writes .env from ENV (non-secret settings,
 * measured with the script) and then, for each name of ALLOW present in
 * /dstack/.host-shared/.user-config as a JSON string, appends NAME=value with
 * CR and LF removed, reading the JSON with jq: the host may change values of
 * listed names but cannot add names or inject shell (the file is never
 * sourced). The script runs in a subshell so that a sourced `set` or `exit`
 * does not leak into the guest's shell. Keys are environment variable names;
 * values have no CR, LF or NUL. */
struct dstack_prelaunch {
    const struct dstack_kv *env;
    size_t nenv;
    const char *const *allow;
    size_t nallow;
    const char *user_config_path; /* NULL: /dstack/.host-shared/.user-config */
};
int dstack_prelaunch_render(const struct dstack_prelaunch *p,
                            struct kc_buf *out, struct kc_err *err);

/* The built-in compose templates of the KMS (§5.6), written for kmsctl from
 * the documented behaviour. Every parameter is read from the compose .env that
 * prelaunch.sh writes (names below), so a template's text is fixed and its
 * parameters are measured through the prelaunch script. */
enum dstack_kms_mode {
    DSTACK_KMS_DIRECT, /* auth-api + kms; auth-api reads ETH_RPC_URL */
    DSTACK_KMS_LIGHT,  /* + helios; auth-api reads http://helios:8545 */
};
/* Returns the template text (static) for MODE. */
const char *dstack_kms_template(enum dstack_kms_mode mode);
/* Parses "direct" / "light". */
int dstack_kms_mode_parse(const char *s, enum dstack_kms_mode *mode,
                          struct kc_err *err);

/* The compose .env of a KMS VM, as prelaunch.sh writes it: first the
 * settings the templates read, with defaults --
 *   KMS_HTTPS_PORT (12001), AUTH_HTTP_PORT (18000), HELIOS_RPC_PORT (18545,
 *   light only), KMS_IMAGE (DSTACK_DEFAULT_KMS_IMAGE), KMS_CONTRACT_ADDR
 *   (required), DSTACK_REPO (DSTACK_DEFAULT_REPO), DSTACK_REF
 *   (DSTACK_DEFAULT_REF)
 * -- then the caller's EXTRA settings in their order (one that names a
 * setting above replaces its value in place). USER_KEYS are the names
 * prelaunch.sh imports from .user-config: a name may not be both there and in
 * the settings. Direct mode needs ETH_RPC_URL and light mode EXECUTION_RPC,
 * from either side. Checked: names, ports (1-65535), KMS_CONTRACT_ADDR (0x and
 * 40 hex digits), no line breaks. *OUT is a new array of *N entries (free()
 * it) whose strings are borrowed from the arguments or static. */
#define DSTACK_DEFAULT_KMS_IMAGE "cr.kvin.wang/dstack-kms:latest"
#define DSTACK_DEFAULT_REPO      "https://github.com/Phala-Network/dstack-cloud.git"
#define DSTACK_DEFAULT_REF       "14963a2ccb0ec7bef8a496c1ac5ac40f5593145d"
struct dstack_kms_params {
    enum dstack_kms_mode mode;
    const char *kms_https_port;    /* NULL: default */
    const char *auth_http_port;    /* NULL: default */
    const char *helios_rpc_port;   /* NULL: default */
    const char *kms_contract_addr; /* NULL: must come in EXTRA */
    const struct dstack_kv *extra;
    size_t nextra;
    const char *const *user_keys;
    size_t nuser_keys;
};
int dstack_kms_env(const struct dstack_kms_params *p, struct dstack_kv **out,
                   size_t *n, struct kc_err *err);

/* True if S is an environment variable name. */
bool dstack_is_env_name(const char *s);

#endif
