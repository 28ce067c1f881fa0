/* resources/dstack/vm.c: the shared-disk files of a KMS VM from its spec,
 * and that spec from the manifest's kms_vms.<name> values. */
#include "resources/dstack/vm.h"

#include "resources/dstack/envcrypt.h"

#include "reconcile/file.h"

int dstack_vm_render(const struct dstack_vm_spec *s, struct dstack_vm_files *f,
                     struct kc_err *err)
{
    struct dstack_kv *env = NULL;
    const char **ukeys = NULL;
    size_t nenv = 0;
    int ret;

    ukeys = kc_xcalloc(s->nuser_config + 1, sizeof(*ukeys));
    for (size_t i = 0; i < s->nuser_config; i++)
        ukeys[i] = s->user_config[i].key;
    {
        struct dstack_kms_params p = {
            .mode = s->mode,
            .kms_https_port = s->kms_port,
            .auth_http_port = s->auth_port,
            .helios_rpc_port = s->helios_port,
            .kms_contract_addr = s->kms_contract_addr,
            .extra = s->env,
            .nextra = s->nenv,
            .user_keys = ukeys,
            .nuser_keys = s->nuser_config,
        };

        if ((ret = dstack_kms_env(&p, &env, &nenv, err)) < 0)
            goto out;
    }
    {
        struct dstack_prelaunch pl = {
            .env = env, .nenv = nenv, .allow = ukeys, .nallow = s->nuser_config
        };

        if ((ret = dstack_prelaunch_render(&pl, &f->prelaunch, err)) < 0)
            goto out;
    }
    {
        struct dstack_app_compose c = {
            .name = s->name,
            .docker_compose_file = s->compose_text
                                       ? s->compose_text
                                       : dstack_kms_template(s->mode),
            .gateway_enabled = s->gateway_enabled,
            .public_logs = s->public_logs,
            .public_sysinfo = s->public_sysinfo,
            .public_tcbinfo = s->public_tcbinfo,
            .key_provider_id = s->key_provider_id,
            .allowed_envs = s->allowed_envs,
            .nallowed_envs = s->nallowed_envs,
            .no_instance_id = s->no_instance_id,
            .secure_time = s->secure_time,
            .key_provider = s->key_provider,
            .storage_fs = s->storage_fs,
            .pre_launch_script = kc_buf_str(&f->prelaunch),
        };

        if ((ret = dstack_app_compose_render(&c, &f->app_compose, err)) < 0)
            goto out;
    }
    dstack_compose_hash(f->app_compose.data, f->app_compose.len,
                        f->compose_hash);
    {
        struct dstack_sys_config sc = {
            .kms_urls = s->kms_urls,
            .nkms_urls = s->nkms_urls,
            .gateway_urls = s->gateway_urls,
            .ngateway_urls = s->ngateway_urls,
            .pccs_url = s->pccs_url,
            .os_image_hash = s->os_image_hash,
        };

        if ((ret = dstack_sys_config_render(&sc, &f->sys_config, err)) < 0)
            goto out;
    }
    if ((ret = dstack_instance_info_render(&s->ids, &f->instance_info, err)) <
            0 ||
        (ret = dstack_user_config_render(s->user_config, s->nuser_config,
                                         &f->user_config, err)) < 0)
        goto out;
    if (ret == 0 && s->key_provider && strcmp(s->key_provider, "kms") == 0 &&
        !s->encrypted_env_len)
        ret = kc_err_set(err, KC_EINVAL,
                         "key_provider kms: .encrypted-env was not made");
    else if (s->encrypted_env_len > DSTACK_ENC_ENV_MAX)
        ret = kc_err_set(err, KC_ERANGE,
                         ".encrypted-env is over the guest's limit of %u "
                         "bytes",
                         DSTACK_ENC_ENV_MAX);
out:
    if (ret < 0)
        dstack_vm_files_release(f);
    free(env);
    free(ukeys);
    return ret;
}

void dstack_vm_files_release(struct dstack_vm_files *f)
{
    if (!f)
        return;
    kc_buf_release(&f->prelaunch);
    kc_buf_release(&f->app_compose);
    kc_buf_release(&f->sys_config);
    kc_buf_release(&f->instance_info);
    kc_buf_release_wipe(&f->user_config);
}

size_t dstack_vm_shared_files(const struct dstack_vm_files *f,
                              const struct dstack_vm_spec *s,
                              struct dstack_fat_file out[5])
{
    size_t n = 0;

    out[n++] = (struct dstack_fat_file){ "app-compose.json",
                                         kc_buf_str(&f->app_compose),
                                         f->app_compose.len };
    out[n++] = (struct dstack_fat_file){ ".sys-config.json",
                                         kc_buf_str(&f->sys_config),
                                         f->sys_config.len };
    out[n++] = (struct dstack_fat_file){ ".instance_info",
                                         kc_buf_str(&f->instance_info),
                                         f->instance_info.len };
    if (s->encrypted_env_len)
        out[n++] = (struct dstack_fat_file){ ".encrypted-env", s->encrypted_env,
                                             s->encrypted_env_len };
    out[n++] =
        (struct dstack_fat_file){ ".user-config", kc_buf_str(&f->user_config),
                                  f->user_config.len };
    return n;
}

/* ---- the spec from kms_vms.<name> ---- */

struct vm_read {
    const struct dstack_vm_input *in;
    struct dstack_vm_values *v;
};

static const struct kc_value *get(const struct kc_value *map, const char *key)
{
    return map && map->type == KC_VALUE_MAP ? kc_value_map_get(map, key) : NULL;
}

static char *keep(struct dstack_vm_values *v, char *s)
{
    kc_xgrow(&v->strs, &v->capstrs, v->nstrs + 1, sizeof(*v->strs));
    v->strs[v->nstrs++] = s;
    return s;
}

/* The path and reference of the first UNKNOWN value inside V. */
static bool find_unknown(const struct kc_value *v, struct kc_buf *path,
                         const char **ref)
{
    size_t mark = path->len;

    if (!v)
        return false;
    if (v->type == KC_VALUE_UNKNOWN) {
        *ref = v->u.ref;
        return true;
    }
    if (v->type == KC_VALUE_MAP) {
        for (size_t i = 0; i < kc_value_map_len(v); i++) {
            kc_buf_addf(path, ".%s", kc_value_map_key(v, i));
            if (find_unknown(kc_value_map_val(v, i), path, ref))
                return true;
            path->len = mark;
            path->data[mark] = '\0';
        }
    } else if (v->type == KC_VALUE_LIST) {
        for (size_t i = 0; i < kc_value_list_len(v); i++) {
            kc_buf_addf(path, "[%zu]", i);
            if (find_unknown(kc_value_list_get(v, i), path, ref))
                return true;
            path->len = mark;
            path->data[mark] = '\0';
        }
    }
    return false;
}

static int refuse_unknown(const struct vm_read *r, struct kc_err *err)
{
    struct kc_buf path = { 0 };
    const char *ref = NULL;
    int ret = 0;

    kc_buf_addf(&path, "kms_vms.%s", r->in->vm_name);
    if (find_unknown(r->in->vm, &path, &ref)) {
        if (r->in->set_hint)
            ret = kc_err_set(err, KC_EINVAL,
                             "%s is not known before apply (it comes from "
                             "'%s'): pass --set %s=<value> to render with it",
                             kc_buf_str(&path), ref, ref);
        else
            ret = kc_err_set(err, KC_EINVAL,
                             "%s is not known before apply (it comes from "
                             "'%s')",
                             kc_buf_str(&path), ref);
    }
    kc_buf_release(&path);
    return ret;
}

int dstack_vm_value_str(const char *vm_name, const struct kc_value *map,
                        const char *path, const char *key, const char **out,
                        struct kc_err *err)
{
    const struct kc_value *v = get(map, key);

    *out = NULL;
    if (!v || v->type == KC_VALUE_NULL)
        return 0;
    if (v->type != KC_VALUE_STRING)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s.%s%s: expected a string",
                          vm_name, path, key);
    if (kc_value_is_sensitive(v))
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.%s%s comes from ${env:} or ${file:}: "
                          "it is written to measured, public files, so it "
                          "cannot be a secret (secrets go in user_config)",
                          vm_name, path, key);
    *out = kc_value_str(v);
    return 0;
}

static int get_str(const struct vm_read *r, const struct kc_value *map,
                   const char *path, const char *key, const char **out,
                   struct kc_err *err)
{
    return dstack_vm_value_str(r->in->vm_name, map, path, key, out, err);
}

static int get_bool(const struct vm_read *r, const struct kc_value *map,
                    const char *key, bool dflt, bool *out, struct kc_err *err)
{
    const struct kc_value *v = get(map, key);

    *out = dflt;
    if (!v || v->type == KC_VALUE_NULL)
        return 0;
    if (v->type != KC_VALUE_BOOL)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.app_compose.%s: expected true or false",
                          r->in->vm_name, key);
    *out = kc_value_bool(v, dflt);
    return 0;
}

/* A port member as a string (NULL when absent). */
static int get_port(const struct vm_read *r, const char *key, const char **out,
                    struct kc_err *err)
{
    const struct kc_value *v = get(get(r->in->vm, "ports"), key);

    *out = NULL;
    if (!v)
        return 0;
    if (v->type != KC_VALUE_INT || kc_value_int(v, 0) < 1 ||
        kc_value_int(v, 0) > 65535)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.ports.%s: expected a port (1-65535)",
                          r->in->vm_name, key);
    *out = keep(r->v, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)));
    return 0;
}

static int read_compose(const struct vm_read *r, struct kc_err *err)
{
    struct dstack_vm_values *vv = r->v;
    const char *name = r->in->vm_name;
    const struct kc_value *compose = get(r->in->vm, "compose");
    const char *file = NULL, *tmpl = NULL, *mode = NULL;
    const struct kc_value *env;
    int ret;

    if ((ret = get_str(r, r->in->vm, "", "mode", &mode, err)) < 0)
        return ret;
    if ((ret = dstack_kms_mode_parse(mode, &vv->spec.mode, err)) < 0)
        return kc_err_prefix(err, "kms_vms.%s", name);
    if ((ret = get_str(r, compose, "compose.", "file", &file, err)) < 0 ||
        (ret = get_str(r, compose, "compose.", "template", &tmpl, err)) < 0)
        return ret;
    if (file && tmpl)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose: give file or template, not "
                          "both",
                          name);
    if (tmpl && strcmp(tmpl, mode) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose.template '%s' does not agree "
                          "with mode '%s'",
                          name, tmpl, mode);
    if (file) {
        char *path = kc_file_resolve(r->in->base_dir, file);

        /* The text goes into app-compose.json, whose cap is the same. */
        ret = kc_file_read(path, DSTACK_APP_COMPOSE_MAX, &vv->compose_text,
                           NULL, err);
        free(path);
        if (ret < 0)
            return kc_err_prefix(err, "kms_vms.%s.compose.file", name);
        vv->spec.compose_text = vv->compose_text;
    }
    env = get(compose, "env");
    if (env && env->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose.env: expected a map", name);
    vv->env = kc_xcalloc(kc_value_map_len(env) + 1, sizeof(*vv->env));
    for (size_t i = 0; env && i < kc_value_map_len(env); i++) {
        const struct kc_value *v = kc_value_map_val(env, i);
        const char *key = kc_value_map_key(env, i);
        const char *s;

        if (kc_value_is_sensitive(v))
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s comes from ${env:} "
                              "or ${file:}: the compose .env is measured and "
                              "public; put secrets in user_config",
                              name, key);
        if (v->type == KC_VALUE_STRING)
            s = kc_value_str(v);
        else if (v->type == KC_VALUE_INT)
            s = keep(vv, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)));
        else if (v->type == KC_VALUE_BOOL)
            s = kc_value_bool(v, false) ? "true" : "false";
        else
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s: expected a string, "
                              "number or boolean",
                              name, key);
        vv->env[vv->spec.nenv++] = (struct dstack_kv){ key, s };
    }
    vv->spec.env = vv->env;
    return 0;
}

static int read_user_config(const struct vm_read *r, struct kc_err *err)
{
    struct dstack_vm_values *vv = r->v;
    const struct kc_value *uc = get(r->in->vm, "user_config");

    if (uc && uc->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.user_config: expected a map",
                          r->in->vm_name);
    vv->user = kc_xcalloc(kc_value_map_len(uc) + 1, sizeof(*vv->user));
    for (size_t i = 0; uc && i < kc_value_map_len(uc); i++) {
        const struct kc_value *v = kc_value_map_val(uc, i);

        if (v->type != KC_VALUE_STRING)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.user_config.%s: expected a string",
                              r->in->vm_name, kc_value_map_key(uc, i));
        /* The bytes go into .user-config, their one destination. */
        vv->user[vv->spec.nuser_config++] =
            (struct dstack_kv){ kc_value_map_key(uc, i),
                                kc_value_reveal(v, NULL) };
    }
    vv->spec.user_config = vv->user;
    return 0;
}

static int read_app_compose(const struct vm_read *r, struct kc_err *err)
{
    struct dstack_vm_spec *s = &r->v->spec;
    const struct kc_value *ac = get(r->in->vm, "app_compose");
    const struct kc_value *envs = get(ac, "allowed_envs");
    int ret;

    if ((ret = get_bool(r, ac, "gateway_enabled", false, &s->gateway_enabled,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "public_logs", false, &s->public_logs, err)) <
            0 ||
        (ret = get_bool(r, ac, "public_sysinfo", true, &s->public_sysinfo,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "public_tcbinfo", true, &s->public_tcbinfo,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "secure_time", false, &s->secure_time, err)) <
            0 ||
        (ret = get_bool(r, ac, "no_instance_id", false, &s->no_instance_id,
                        err)) < 0 ||
        (ret = get_str(r, ac, "app_compose.", "storage_fs", &s->storage_fs,
                       err)) < 0)
        return ret;
    r->v->allowed =
        kc_xcalloc(kc_value_list_len(envs) + 1, sizeof(*r->v->allowed));
    for (size_t i = 0; envs && i < kc_value_list_len(envs); i++) {
        const struct kc_value *v = kc_value_list_get(envs, i);

        if (v->type != KC_VALUE_STRING || kc_value_is_sensitive(v))
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.app_compose.allowed_envs[%zu]: "
                              "expected a name",
                              r->in->vm_name, i);
        r->v->allowed[s->nallowed_envs++] = kc_value_str(v);
    }
    s->allowed_envs = r->v->allowed;
    return 0;
}

/* KMS_CONTRACT_ADDR: compose.env, else IN->kms_addr. */
static int kms_address(const struct vm_read *r, struct kc_err *err)
{
    const struct dstack_vm_spec *s = &r->v->spec;

    for (size_t i = 0; i < s->nenv; i++)
        if (strcmp(s->env[i].key, "KMS_CONTRACT_ADDR") == 0)
            return 0;
    if (r->in->kms_addr) {
        r->v->spec.kms_contract_addr = r->in->kms_addr;
        return 0;
    }
    return kc_err_set(err, KC_EINVAL, "kms_vms.%s: KMS_CONTRACT_ADDR %s",
                      r->in->vm_name,
                      r->in->kms_addr_hint ? r->in->kms_addr_hint : "unknown");
}

int dstack_env_enc_read(const char *vm_name, const struct kc_value *ee,
                        const char *base_dir, struct dstack_env_enc *e,
                        struct kc_err *err)
{
    const struct kc_value *env = get(ee, "env");
    const char *pin = NULL, *ca = NULL;
    int ret;

    if (!ee || ee->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.key_provider kms needs env_encryption "
                          "(kms_url, kms_k256_pubkey, env)",
                          vm_name);
    if ((ret = dstack_vm_value_str(vm_name, ee, "env_encryption.", "kms_url",
                                   &e->kms_url, err)) < 0 ||
        (ret = dstack_vm_value_str(vm_name, ee, "env_encryption.",
                                   "kms_k256_pubkey", &pin, err)) < 0 ||
        (ret = dstack_vm_value_str(vm_name, ee, "env_encryption.", "ca_file",
                                   &ca, err)) < 0)
        return ret;
    if (!e->kms_url || strncmp(e->kms_url, "https://", 8) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.env_encryption.kms_url: %s", vm_name,
                          e->kms_url ? "expected an https:// URL" : "missing");
    if (!pin)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.env_encryption.kms_k256_pubkey: "
                          "missing",
                          vm_name);
    if ((ret = dstack_hex_decode(pin, e->pin, 33,
                                 "env_encryption.kms_k256_pubkey", err)) < 0)
        return kc_err_prefix(err, "kms_vms.%s", vm_name);
    if (e->pin[0] != 0x02 && e->pin[0] != 0x03)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.env_encryption.kms_k256_pubkey: not a "
                          "compressed key (02 or 03 first)",
                          vm_name);
    if (!env || env->type != KC_VALUE_MAP || kc_value_map_len(env) == 0)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.env_encryption.env: expected a map of "
                          "at least one variable",
                          vm_name);
    e->env = kc_xcalloc(kc_value_map_len(env), sizeof(*e->env));
    for (size_t i = 0; i < kc_value_map_len(env); i++) {
        const struct kc_value *v = kc_value_map_val(env, i);

        if (v->type != KC_VALUE_STRING)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.env_encryption.env.%s: expected a "
                              "string",
                              vm_name, kc_value_map_key(env, i));
        /* The bytes go only into the encrypted .encrypted-env. */
        e->env[e->nenv++] = (struct dstack_kv){ kc_value_map_key(env, i),
                                                kc_value_reveal(v, NULL) };
    }
    if (ca) {
        e->ca_path = kc_file_resolve(base_dir, ca);
        e->ca_file = e->ca_path;
    }
    return 0;
}

void dstack_env_enc_release(struct dstack_env_enc *e)
{
    if (!e)
        return;
    free(e->env);
    free(e->ca_path);
    memset(e, 0, sizeof(*e));
}

/* env_encryption: with key_provider kms only, and then required. Its
 * kms_url becomes .sys-config.json kms_urls; the rest is read when the
 * caller encrypts (IN->encrypted_env NULL). */
static int read_env_encryption(const struct vm_read *r, struct kc_err *err)
{
    struct dstack_vm_values *vv = r->v;
    const struct kc_value *ee = get(r->in->vm, "env_encryption");
    int ret;

    if (strcmp(vv->spec.key_provider, "kms") != 0) {
        if (strcmp(vv->spec.key_provider, "tpm") != 0)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.key_provider '%s': expected tpm "
                              "or kms",
                              r->in->vm_name, vv->spec.key_provider);
        if (ee && ee->type != KC_VALUE_NULL)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.env_encryption needs key_provider "
                              "kms, not tpm",
                              r->in->vm_name);
        return 0;
    }
    if (r->in->encrypted_env) {
        if (!ee || ee->type != KC_VALUE_MAP)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.key_provider kms needs "
                              "env_encryption.kms_url",
                              r->in->vm_name);
        if ((ret = get_str(r, ee, "env_encryption.", "kms_url", &vv->kms_url,
                           err)) < 0)
            return ret;
        if (!vv->kms_url || strncmp(vv->kms_url, "https://", 8) != 0)
            return kc_err_set(
                err, KC_EINVAL, "kms_vms.%s.env_encryption.kms_url: %s",
                r->in->vm_name,
                vv->kms_url ? "expected an https:// URL" : "missing");
        vv->spec.encrypted_env = r->in->encrypted_env;
        vv->spec.encrypted_env_len = r->in->encrypted_env_len;
    } else {
        if ((ret = dstack_env_enc_read(r->in->vm_name, ee, r->in->base_dir,
                                       &vv->enc, err)) < 0)
            return ret;
        vv->kms_url = vv->enc.kms_url;
    }
    vv->spec.kms_urls = &vv->kms_url;
    vv->spec.nkms_urls = 1;
    return 0;
}

int dstack_vm_values_read(const struct dstack_vm_input *in,
                          struct dstack_vm_values *v, struct kc_err *err)
{
    const struct vm_read r = { .in = in, .v = v };
    struct dstack_vm_spec *s = &v->spec;
    const char *kp = NULL;
    int ret;

    if (!in->vm || in->vm->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s: expected a map",
                          in->vm_name);
    if ((ret = refuse_unknown(&r, err)) < 0)
        return ret;
    s->name = in->vm_name;
    if ((ret = get_str(&r, in->vm, "", "key_provider", &kp, err)) < 0)
        return ret;
    s->key_provider = kp ? kp : "tpm";
    if ((ret = read_env_encryption(&r, err)) < 0)
        return ret;
    if ((ret = get_str(&r, in->vm, "", "key_provider_id", &s->key_provider_id,
                       err)) < 0 ||
        (ret = get_str(&r, in->vm, "", "pccs_url", &s->pccs_url, err)) < 0 ||
        (ret = get_port(&r, "kms", &s->kms_port, err)) < 0 ||
        (ret = get_port(&r, "auth_api", &s->auth_port, err)) < 0 ||
        (ret = get_port(&r, "helios", &s->helios_port, err)) < 0 ||
        (ret = read_compose(&r, err)) < 0 ||
        (ret = read_user_config(&r, err)) < 0 ||
        (ret = read_app_compose(&r, err)) < 0 ||
        (ret = kms_address(&r, err)) < 0)
        return ret;
    return 0;
}

void dstack_vm_values_release(struct dstack_vm_values *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nstrs; i++)
        free(v->strs[i]);
    free(v->strs);
    free(v->env);
    free(v->user);
    free(v->allowed);
    dstack_env_enc_release(&v->enc);
    free(v->compose_text);
    memset(v, 0, sizeof(*v));
}
