/* resources/gcp/shared.c: kms_vms.<name> values -> dstack VM spec -> the
 * shared disk image. */
#include "resources/gcp/shared.h"

#include "reconcile/file.h"
#include "resources/dstack/fatimg.h"
#include "resources/dstack/vm.h"

#define COMPOSE_MAX (1u << 20)

struct sh {
    const struct gcp_shared_in *in;
    struct dstack_vm_spec spec;
    struct dstack_vm_files files;
    struct dstack_kv *env, *user;
    size_t nenv, nuser;
    const char **allowed;
    size_t nallowed;
    char *compose_text;
    char **strs;
    size_t nstrs, capstrs;
};

static const struct kc_value *get(const struct kc_value *m, const char *k)
{
    return m && m->type == KC_VALUE_MAP ? kc_value_map_get(m, k) : NULL;
}

static char *keep(struct sh *s, char *str)
{
    kc_xgrow(&s->strs, &s->capstrs, s->nstrs + 1, sizeof(*s->strs));
    s->strs[s->nstrs++] = str;
    return str;
}

/* A public string member (NULL when absent); secrets refused. */
static int pub_str(struct sh *s, const struct kc_value *m, const char *path,
                   const char *key, const char **out, struct kc_err *err)
{
    const struct kc_value *v = get(m, key);

    *out = NULL;
    if (!v || v->type == KC_VALUE_NULL)
        return 0;
    if (v->type != KC_VALUE_STRING)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s.%s%s: expected a string",
                          s->in->vm_name, path, key);
    if (kc_value_is_sensitive(v))
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.%s%s comes from ${env:} or ${file:} but "
                          "is written to measured, public files: secrets go "
                          "in user_config",
                          s->in->vm_name, path, key);
    *out = kc_value_str(v);
    return 0;
}

static bool flag(const struct kc_value *ac, const char *key, bool dflt)
{
    return kc_value_bool(get(ac, key), dflt);
}

static int port(struct sh *s, const char *key, const char **out)
{
    const struct kc_value *v = get(get(s->in->vm, "ports"), key);

    *out = v && v->type == KC_VALUE_INT
               ? keep(s, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)))
               : NULL;
    return 0;
}

static int read_compose(struct sh *s, struct kc_err *err)
{
    const struct kc_value *compose = get(s->in->vm, "compose");
    const struct kc_value *env = get(compose, "env");
    const char *mode = NULL, *file = NULL, *tmpl = NULL;
    int ret;

    if ((ret = pub_str(s, s->in->vm, "", "mode", &mode, err)) < 0 ||
        (ret = dstack_kms_mode_parse(mode, &s->spec.mode, err)) < 0 ||
        (ret = pub_str(s, compose, "compose.", "file", &file, err)) < 0 ||
        (ret = pub_str(s, compose, "compose.", "template", &tmpl, err)) < 0)
        return ret;
    if (file && tmpl)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose: file or template, not both",
                          s->in->vm_name);
    if (tmpl && mode && strcmp(tmpl, mode) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose.template '%s' does not agree "
                          "with mode '%s'",
                          s->in->vm_name, tmpl, mode);
    if (file) {
        char *path = kc_file_resolve(s->in->base_dir, file);

        ret = kc_file_read(path, COMPOSE_MAX, &s->compose_text, NULL, err);
        free(path);
        if (ret < 0)
            return kc_err_prefix(err, "kms_vms.%s.compose.file",
                                 s->in->vm_name);
        s->spec.compose_text = s->compose_text;
    }
    s->env = kc_xcalloc(kc_value_map_len(env) + 1, sizeof(*s->env));
    for (size_t i = 0;
         env && env->type == KC_VALUE_MAP && i < kc_value_map_len(env); i++) {
        const struct kc_value *v = kc_value_map_val(env, i);
        const char *key = kc_value_map_key(env, i), *str;

        if (kc_value_is_sensitive(v))
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s comes from ${env:} "
                              "or ${file:}: the compose .env is measured and "
                              "public; put secrets in user_config",
                              s->in->vm_name, key);
        if (v->type == KC_VALUE_STRING)
            str = kc_value_str(v);
        else if (v->type == KC_VALUE_INT)
            str = keep(s, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)));
        else if (v->type == KC_VALUE_BOOL)
            str = kc_value_bool(v, false) ? "true" : "false";
        else
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s: expected a string, "
                              "number or boolean",
                              s->in->vm_name, key);
        s->env[s->nenv++] = (struct dstack_kv){ key, str };
    }
    s->spec.env = s->env;
    s->spec.nenv = s->nenv;
    return 0;
}

static int read_rest(struct sh *s, struct kc_err *err)
{
    const struct kc_value *uc = get(s->in->vm, "user_config");
    const struct kc_value *ac = get(s->in->vm, "app_compose");
    const struct kc_value *envs = get(ac, "allowed_envs");
    const char *kp = NULL;
    int ret;

    s->user = kc_xcalloc(kc_value_map_len(uc) + 1, sizeof(*s->user));
    for (size_t i = 0;
         uc && uc->type == KC_VALUE_MAP && i < kc_value_map_len(uc); i++) {
        const struct kc_value *v = kc_value_map_val(uc, i);

        if (v->type != KC_VALUE_STRING)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.user_config.%s: expected a string",
                              s->in->vm_name, kc_value_map_key(uc, i));
        s->user[s->nuser++] = (struct dstack_kv){ kc_value_map_key(uc, i),
                                                  kc_value_reveal(v, NULL) };
    }
    s->spec.user_config = s->user;
    s->spec.nuser_config = s->nuser;
    s->spec.gateway_enabled = flag(ac, "gateway_enabled", false);
    s->spec.public_logs = flag(ac, "public_logs", false);
    s->spec.public_sysinfo = flag(ac, "public_sysinfo", true);
    s->spec.public_tcbinfo = flag(ac, "public_tcbinfo", true);
    s->spec.secure_time = flag(ac, "secure_time", false);
    s->spec.no_instance_id = flag(ac, "no_instance_id", false);
    if ((ret = pub_str(s, ac, "app_compose.", "storage_fs", &s->spec.storage_fs,
                       err)) < 0)
        return ret;
    s->allowed = kc_xcalloc(kc_value_list_len(envs) + 1, sizeof(*s->allowed));
    for (size_t i = 0; envs && i < kc_value_list_len(envs); i++) {
        const char *n = kc_value_str(kc_value_list_get(envs, i));

        if (!n)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.app_compose.allowed_envs[%zu]: "
                              "expected a name",
                              s->in->vm_name, i);
        s->allowed[s->nallowed++] = n;
    }
    s->spec.allowed_envs = s->allowed;
    s->spec.nallowed_envs = s->nallowed;
    if ((ret = pub_str(s, s->in->vm, "", "key_provider", &kp, err)) < 0 ||
        (ret = pub_str(s, s->in->vm, "", "key_provider_id",
                       &s->spec.key_provider_id, err)) < 0)
        return ret;
    s->spec.key_provider = kp ? kp : "tpm";
    if (strcmp(s->spec.key_provider, "tpm") != 0)
        return kc_err_set(err, KC_ENOTSUP,
                          "kms_vms.%s.key_provider '%s': only tpm is "
                          "supported (kms needs the KMS client, not built)",
                          s->in->vm_name, s->spec.key_provider);
    port(s, "kms", &s->spec.kms_port);
    port(s, "auth_api", &s->spec.auth_port);
    port(s, "helios", &s->spec.helios_port);
    return 0;
}

int gcp_shared_render(const struct gcp_shared_in *in, const char *path,
                      char digest[65], char *compose_hash, struct kc_err *err)
{
    struct sh s = { .in = in };
    struct dstack_fat_file files[5];
    struct dstack_fatimg fi = { 0 };
    bool has_addr = false;
    int ret;

    s.spec.name = in->vm_name;
    s.spec.os_image_hash = in->os_image_hash;
    s.spec.ids = in->ids;
    if ((ret = read_compose(&s, err)) < 0 || (ret = read_rest(&s, err)) < 0)
        goto out;
    for (size_t i = 0; i < s.nenv; i++)
        has_addr = has_addr || strcmp(s.env[i].key, "KMS_CONTRACT_ADDR") == 0;
    if (!has_addr) {
        if (!in->kms_addr) {
            ret = kc_err_set(err, KC_EINVAL,
                             "kms_vms.%s: KMS_CONTRACT_ADDR unknown: set "
                             "compose.env.KMS_CONTRACT_ADDR or deploy "
                             "contracts.kms",
                             in->vm_name);
            goto out;
        }
        s.spec.kms_contract_addr = in->kms_addr;
    }
    if ((ret = dstack_vm_render(&s.spec, &s.files, err)) < 0) {
        kc_err_prefix(err, "kms_vms.%s", in->vm_name);
        goto out;
    }
    fi.files = files;
    fi.nfiles = dstack_vm_shared_files(&s.files, &s.spec, files);
    ret = dstack_fatimg_write_file(&fi, path, 0600, digest, err);
    if (ret == 0 && compose_hash)
        memcpy(compose_hash, s.files.compose_hash, 65);
out:
    dstack_vm_files_release(&s.files);
    free(s.env);
    free(s.user);
    free(s.allowed);
    if (s.compose_text)
        free(s.compose_text);
    for (size_t i = 0; i < s.nstrs; i++)
        free(s.strs[i]);
    free(s.strs);
    return ret;
}
