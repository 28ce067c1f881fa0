/* resources/dstack/vm.c: the shared-disk files of a KMS VM from its spec. */
#include "resources/dstack/vm.h"

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
    if (s->encrypted_env_len > DSTACK_ENC_ENV_MAX)
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
