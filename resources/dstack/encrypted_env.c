/* resources/dstack/encrypted_env.c: dstack.encrypted_env, the .encrypted-env
 * of a key_provider kms VM, made at plan time so that the plan can tell
 * whether the shared disk changes (see dstack_kinds.h). */
#include "resources/dstack/dstack_kinds.h"

#include "reconcile/hex.h"
#include "resources/dstack/kmsrpc.h"
#include "resources/dstack/vm.h"

/* The app id asked for before the VM has one (first plan): the KMS derives a
 * key for any id, and its signature tells whether the pin is right. */
#define PROBE_APP_ID "0000000000000000000000000000000000000000"

static const struct kc_field encenv_fields[] = {
    { "vm_name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    /* Read back from nowhere: only a change in the manifest counts. */
    { "env_encryption", KC_VALUE_MAP, KC_FIELD_IGNORE_DRIFT },
    { "base_dir", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    /* The KMS's env encryption key (hex) as observe or apply found it: the
     * state keeps it as last applied, so a key the KMS rotated is drift
     * (cause external), and the new bytes change the shared image. */
    { "public_key", KC_VALUE_STRING, KC_FIELD_OBSERVED },
    { NULL, 0, 0 },
};

struct encenv_job {
    struct kc_op *op;
    const char *vm;
    struct dstack_env_enc enc;
    struct dstack_ids ids;
    unsigned char salt[DSTACK_ENV_SALT_LEN];
    bool have; /* ids and salt known: encrypt (else observe only probes) */
    bool call_live;
    struct dstack_kms_env_key call;
};

int dstack_vm_generated(struct kc_op *op, const char *vm, bool generate,
                        struct dstack_ids *ids,
                        unsigned char salt[DSTACK_ENV_SALT_LEN], bool *made,
                        struct kc_err *err)
{
    char *kseed = kc_xasprintf("kms_vms.%s.instance_id_seed", vm);
    char *kapp = kc_xasprintf("kms_vms.%s.app_id", vm);
    char *ksalt = kc_xasprintf("kms_vms.%s.env_salt", vm);
    const struct kc_value *v;
    bool no_salt = false;
    unsigned gen = 0;
    int ret = 0;

    memset(ids, 0, sizeof(*ids));
    if (made)
        *made = false;
    if ((v = kc_op_generated(op, kseed)) && kc_value_str(v))
        kc_snprintf(ids->instance_id_seed, sizeof(ids->instance_id_seed),
                    "%.40s", kc_value_str(v));
    if ((v = kc_op_generated(op, kapp)) && kc_value_str(v))
        kc_snprintf(ids->app_id, sizeof(ids->app_id), "%.40s", kc_value_str(v));
    if (salt) {
        v = kc_op_generated(op, ksalt);
        no_salt = !v;
        if (v && (!kc_value_str(v) ||
                  dstack_hex_decode(kc_value_str(v), salt, DSTACK_ENV_SALT_LEN,
                                    ksalt, err) < 0)) {
            ret = kc_err_set(err, KC_ESTATE,
                             "state: generated value '%s' is not 32 bytes "
                             "of hex",
                             ksalt);
            goto out;
        }
    }
    if (!generate) {
        if (!ids->instance_id_seed[0] || !ids->app_id[0] || no_salt)
            ret = 1;
        else
            ret = dstack_ids_fill(ids, NULL, err);
        goto out;
    }
    if ((ret = dstack_ids_fill(ids, &gen, err)) < 0 ||
        (no_salt && (ret = dstack_env_salt_new(salt, err)) < 0))
        goto out;
    if (gen) {
        struct kc_value *a = kc_value_new_str(ids->instance_id_seed);
        struct kc_value *b = kc_value_new_str(ids->app_id);

        ret = kc_op_generated_put(op, kseed, a, err);
        if (ret == 0)
            ret = kc_op_generated_put(op, kapp, b, err);
        kc_value_free(a);
        kc_value_free(b);
    }
    if (ret == 0 && no_salt) {
        char hex[2 * DSTACK_ENV_SALT_LEN + 1];
        struct kc_value *s;

        kc_hex_encode(salt, DSTACK_ENV_SALT_LEN, hex);
        s = kc_value_new_str(hex);
        ret = kc_op_generated_put(op, ksalt, s, err);
        kc_value_free(s);
        kc_memzero(hex, sizeof(hex));
    }
    if (made)
        *made = gen || no_salt;
out:
    if (ret < 0)
        kc_err_prefix(err, "kms_vms.%s", vm);
    free(kseed);
    free(kapp);
    free(ksalt);
    return ret;
}

static void job_free(struct encenv_job *j)
{
    if (j->call_live)
        dstack_kms_env_key_release(&j->call);
    dstack_env_enc_release(&j->enc);
    kc_memzero(j->salt, sizeof(j->salt));
    free(j);
}

static void job_end(struct encenv_job *j, int status)
{
    struct kc_op *op = j->op;

    job_free(j);
    kc_op_done(op, status);
}

/* The object "exists" once the VM has its app id and salt: set what a
 * dependent needs (no outputs when nothing was encrypted: a destroy), and
 * the KMS's key PK (hex) when it was asked. */
static void set_exists(struct kc_op *op, const struct dstack_ids *ids,
                       const char *pk)
{
    struct kc_value *obs = kc_value_new_map();

    if (pk)
        kc_value_map_set(obs, "public_key", kc_value_new_str(pk));
    kc_op_set_observed(op, obs);
    kc_op_set_id(op, ids->app_id);
    kc_op_set_output(op, "app_id", kc_value_new_str(ids->app_id));
}

static void on_key(struct dstack_kms_env_key *c, int status)
{
    struct encenv_job *j = c->data;
    struct kc_op *op = j->op;
    struct kc_buf ct = { 0 };
    char pk[65];
    int ret = status;

    if (ret < 0) {
        *kc_op_err(op) = c->err;
        kc_err_prefix(kc_op_err(op), "kms_vms.%s.env_encryption", j->vm);
        job_end(j, ret);
        return;
    }
    kc_hex_encode(c->pubkey, 32, pk);
    kc_log(kc_op_log(op), KC_LOG_DEBUG, "dstack",
           "%s: env encryption key %s (signed by the pinned KMS key)",
           kc_op_address(op), pk);
    if (!j->have) {
        /* Nothing applied yet: the KMS answered, with the right key. */
        job_end(j, 0);
        return;
    }
    ret = dstack_env_encrypt_salted(j->enc.env, j->enc.nenv, c->pubkey, j->salt,
                                    &ct, kc_op_err(op));
    if (ret < 0) {
        kc_err_prefix(kc_op_err(op), "kms_vms.%s.env_encryption.env", j->vm);
    } else {
        char *hex = kc_xmalloc(2 * ct.len + 1);

        kc_hex_encode((const unsigned char *)ct.data, ct.len, hex);
        set_exists(op, &j->ids, pk);
        kc_op_set_output(op, "public_key", kc_value_new_str(pk));
        /* Public bytes, but with the salt (state) they let one test a
         * guess of the values: the state keeps a digest only. */
        kc_op_set_output(op, "encrypted_env",
                         kc_value_new_secret(hex, 2 * ct.len));
        free(hex);
    }
    kc_buf_release(&ct);
    job_end(j, ret);
}

static int start_fetch(struct encenv_job *j)
{
    struct kc_op *op = j->op;
    int ret;

    j->call.data = j;
    ret = dstack_kms_env_key_fetch(
        kc_op_http(op), &j->call, j->enc.kms_url,
        j->ids.app_id[0] ? j->ids.app_id : PROBE_APP_ID, j->enc.pin,
        j->enc.ca_file, on_key, kc_op_err(op));
    if (ret < 0) {
        /* The call's URL text is set even when it did not start. */
        dstack_kms_env_key_release(&j->call);
        return kc_err_prefix(kc_op_err(op), "kms_vms.%s.env_encryption", j->vm);
    }
    j->call_live = true;
    kc_op_progress(op, "asking the KMS for the env encryption key");
    return 0;
}

/* True if ENV holds a digest where a value should be: the desired values
 * come from the state (destroy, or a VM no longer in the manifest), so
 * there is nothing to encrypt and the KMS is not asked. */
static bool stored_only(const struct kc_value *ee)
{
    const struct kc_value *env =
        ee && ee->type == KC_VALUE_MAP ? kc_value_map_get(ee, "env") : NULL;

    for (size_t i = 0;
         env && env->type == KC_VALUE_MAP && i < kc_value_map_len(env); i++) {
        const char *s = kc_value_str(kc_value_map_val(env, i));

        if (s && strncmp(s, "(sensitive:", 11) == 0)
            return true;
    }
    return false;
}

static int encenv_start(struct kc_op *op, bool apply)
{
    const char *vm = kc_value_str(kc_op_desired(op, "vm_name"));
    const struct kc_value *ee = kc_op_desired(op, "env_encryption");
    struct encenv_job *j;
    int ret;

    if (!vm)
        return kc_err_set(kc_op_err(op), KC_EINVAL, "'%s' needs vm_name",
                          kc_op_address(op));
    j = kc_xcalloc(1, sizeof(*j));
    j->op = op;
    j->vm = vm;
    if (!apply && (stored_only(ee) || kc_value_has_unknown(ee))) {
        ret = dstack_vm_generated(op, vm, false, &j->ids, j->salt, NULL,
                                  kc_op_err(op));
        if (ret == 0)
            set_exists(op, &j->ids, NULL);
        if (ret >= 0)
            job_end(j, 0);
        else
            job_free(j);
        return ret < 0 ? ret : 0;
    }
    ret =
        dstack_env_enc_read(vm, ee, kc_value_str(kc_op_desired(op, "base_dir")),
                            &j->enc, kc_op_err(op));
    if (ret == 0)
        ret = dstack_vm_generated(op, vm, apply, &j->ids, j->salt, NULL,
                                  kc_op_err(op));
    if (ret < 0) {
        job_free(j);
        return ret;
    }
    j->have = ret == 0;
    /* Values made now (the first apply) need no state write of their own
     * before the request: it only reads from the KMS, and the engine writes
     * the state before any dependent (the shared image, which leaves the
     * machine) starts. */
    ret = start_fetch(j);
    if (ret < 0)
        job_free(j);
    return ret;
}

static int encenv_observe(struct kc_op *op)
{
    return encenv_start(op, false);
}

static int encenv_apply(struct kc_op *op)
{
    return encenv_start(op, true);
}

/* Nothing outside to remove: the bytes live on the shared disk, which goes
 * with gcp.image and the VM. The generated values stay (the VM's ids). */
static int encenv_delete(struct kc_op *op)
{
    kc_op_done(op, 0);
    return 0;
}

const struct kc_resource_type kc_dstack_encrypted_env = {
    .kind = "dstack.encrypted_env",
    .fields = encenv_fields,
    .observe = encenv_observe,
    .create = encenv_apply,
    .update = encenv_apply,
    .delete = encenv_delete,
};
