/* cmd/render.c: kmsctl render KMS_VM --out DIR, the files a KMS VM boots
 * with, written where an operator can read them before deploying: what is
 * measured (app-compose.json, its compose hash) and the disk images. */
#include "cmd/cmd.h"

#include <json-c/json.h>
#include <sys/stat.h>

#include "reconcile/check.h"
#include "reconcile/diag.h"
#include "reconcile/file.h"
#include "reconcile/interp.h"
#include "reconcile/json.h"
#include "reconcile/lock.h"
#include "reconcile/manifest.h"
#include "reconcile/state.h"
#include "reconcile/value.h"
#include "resources/dstack/gptimg.h"
#include "resources/dstack/osimage.h"
#include "resources/dstack/vm.h"

#define RENDER_MAX_COMPOSE (256u << 10)

/* Everything a render owns, released in one place. */
struct render {
    const struct cmd_opts *opts;
    const char *vm_name;
    struct kc_doc *doc;
    struct kc_value *vm;      /* kms_vms.<name>, interpolated */
    struct kc_value *kms_cfg; /* contracts.kms, interpolated (may be NULL) */
    char *compose_text;
    struct dstack_kv *env;
    size_t nenv;
    struct dstack_kv *user;
    size_t nuser;
    const char **allowed;
    size_t nallowed;
    const char **paths;
    size_t npaths;
    bool *set_used; /* per --set: looked at */
    char **strs;    /* strings made for ENV values, freed at the end */
    size_t nstrs, capstrs;
    struct dstack_osimage img;
    struct dstack_vm_spec spec;
    struct dstack_vm_files files;
};

/* The value given with --set KEY=VALUE (the last one wins), else NULL;
 * the --set options looked at are marked used. */
static const char *set_value(struct render *r, const char *key)
{
    const struct cmd_opts *opts = r->opts;
    size_t len = strlen(key);
    const char *v = NULL;

    for (size_t i = 0; i < opts->nsets; i++)
        if (strncmp(opts->sets[i], key, len) == 0 &&
            opts->sets[i][len] == '=') {
            v = opts->sets[i] + len + 1;
            r->set_used[i] = true;
        }
    return v;
}

/* The value of REF given with --set REF=VALUE, else NULL (unknown). */
static int resolve_set(void *ctx, const char *ref, struct kc_value **out,
                       struct kc_err *err)
{
    const char *v = set_value(ctx, ref);

    (void)err;
    *out = v ? kc_value_new_str(v) : NULL;
    return 0;
}

/* A --set that nothing looked at is a typo or a value the manifest already
 * gives: the rendered bytes ignore it, so say so (a warning: scripts pass
 * --set whether or not the manifest gives the value). */
static void warn_unused_sets(const struct render *r)
{
    for (size_t i = 0; i < r->opts->nsets; i++)
        if (!r->set_used[i])
            fprintf(stderr,
                    "warning: --set %.*s: not used by kms_vms.%s (render takes "
                    "contracts.kms.address, unless the manifest gives the "
                    "address, and the ${...} references of kms_vms.%s)\n",
                    (int)strcspn(r->opts->sets[i], "="), r->opts->sets[i],
                    r->vm_name, r->vm_name);
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

static int refuse_unknown(const char *where, const struct kc_value *v,
                          struct kc_err *err)
{
    struct kc_buf path = { 0 };
    const char *ref = NULL;
    int ret = 0;

    kc_buf_addstr(&path, where);
    if (find_unknown(v, &path, &ref))
        ret = kc_err_set(err, KC_EINVAL,
                         "%s is not known before apply (it comes from '%s'): "
                         "pass --set %s=<value> to render with it",
                         kc_buf_str(&path), ref, ref);
    kc_buf_release(&path);
    return ret;
}

static const struct kc_value *get(const struct kc_value *map, const char *key)
{
    return map && map->type == KC_VALUE_MAP ? kc_value_map_get(map, key) : NULL;
}

/* A non-secret string member (NULL when absent). */
static int get_str(struct render *r, const struct kc_value *map,
                   const char *path, const char *key, const char **out,
                   struct kc_err *err)
{
    const struct kc_value *v = get(map, key);

    *out = NULL;
    if (!v || v->type == KC_VALUE_NULL)
        return 0;
    if (v->type != KC_VALUE_STRING)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s.%s%s: expected a string",
                          r->vm_name, path, key);
    if (kc_value_is_sensitive(v))
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.%s%s comes from ${env:} or ${file:}: "
                          "it is written to measured, public files, so it "
                          "cannot be a secret (secrets go in user_config)",
                          r->vm_name, path, key);
    *out = kc_value_str(v);
    return 0;
}

static int get_bool(struct render *r, const struct kc_value *map,
                    const char *key, bool dflt, bool *out, struct kc_err *err)
{
    const struct kc_value *v = get(map, key);

    *out = dflt;
    if (!v || v->type == KC_VALUE_NULL)
        return 0;
    if (v->type != KC_VALUE_BOOL)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.app_compose.%s: expected true or false",
                          r->vm_name, key);
    *out = kc_value_bool(v, dflt);
    return 0;
}

static char *keep(struct render *r, char *s)
{
    kc_xgrow(&r->strs, &r->capstrs, r->nstrs + 1, sizeof(*r->strs));
    r->strs[r->nstrs++] = s;
    return s;
}

/* A port member as a string (NULL when absent). */
static int get_port(struct render *r, const struct kc_value *ports,
                    const char *key, const char **out, struct kc_err *err)
{
    const struct kc_value *v = get(ports, key);

    *out = NULL;
    if (!v)
        return 0;
    if (v->type != KC_VALUE_INT || kc_value_int(v, 0) < 1 ||
        kc_value_int(v, 0) > 65535)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.ports.%s: expected a port (1-65535)",
                          r->vm_name, key);
    *out = keep(r, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)));
    return 0;
}

static int read_compose(struct render *r, struct kc_err *err)
{
    const struct kc_value *compose = get(r->vm, "compose");
    const char *file = NULL, *tmpl = NULL, *mode = NULL;
    const struct kc_value *env;
    int ret;

    if ((ret = get_str(r, r->vm, "", "mode", &mode, err)) < 0)
        return ret;
    if ((ret = dstack_kms_mode_parse(mode, &r->spec.mode, err)) < 0)
        return kc_err_prefix(err, "kms_vms.%s", r->vm_name);
    if ((ret = get_str(r, compose, "compose.", "file", &file, err)) < 0 ||
        (ret = get_str(r, compose, "compose.", "template", &tmpl, err)) < 0)
        return ret;
    if (file && tmpl)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose: give file or template, not "
                          "both",
                          r->vm_name);
    if (tmpl && strcmp(tmpl, mode) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose.template '%s' does not agree "
                          "with mode '%s'",
                          r->vm_name, tmpl, mode);
    if (file) {
        char *path = kc_file_resolve(r->doc->dir, file);

        ret =
            kc_file_read(path, RENDER_MAX_COMPOSE, &r->compose_text, NULL, err);
        free(path);
        if (ret < 0)
            return kc_err_prefix(err, "kms_vms.%s.compose.file", r->vm_name);
        r->spec.compose_text = r->compose_text;
    }
    env = get(compose, "env");
    if (env && env->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.compose.env: expected a map", r->vm_name);
    r->env = kc_xcalloc(kc_value_map_len(env) + 1, sizeof(*r->env));
    for (size_t i = 0; env && i < kc_value_map_len(env); i++) {
        const struct kc_value *v = kc_value_map_val(env, i);
        const char *key = kc_value_map_key(env, i);
        const char *s;

        if (kc_value_is_sensitive(v))
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s comes from ${env:} "
                              "or ${file:}: the compose .env is measured and "
                              "public; put secrets in user_config",
                              r->vm_name, key);
        if (v->type == KC_VALUE_STRING)
            s = kc_value_str(v);
        else if (v->type == KC_VALUE_INT)
            s = keep(r, kc_xasprintf("%lld", (long long)kc_value_int(v, 0)));
        else if (v->type == KC_VALUE_BOOL)
            s = kc_value_bool(v, false) ? "true" : "false";
        else
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.compose.env.%s: expected a string, "
                              "number or boolean",
                              r->vm_name, key);
        r->env[r->nenv++] = (struct dstack_kv){ key, s };
    }
    r->spec.env = r->env;
    r->spec.nenv = r->nenv;
    return 0;
}

static int read_user_config(struct render *r, struct kc_err *err)
{
    const struct kc_value *uc = get(r->vm, "user_config");

    if (uc && uc->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL,
                          "kms_vms.%s.user_config: expected a map", r->vm_name);
    r->user = kc_xcalloc(kc_value_map_len(uc) + 1, sizeof(*r->user));
    for (size_t i = 0; uc && i < kc_value_map_len(uc); i++) {
        const struct kc_value *v = kc_value_map_val(uc, i);

        if (v->type != KC_VALUE_STRING)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.user_config.%s: expected a string",
                              r->vm_name, kc_value_map_key(uc, i));
        /* The bytes go into .user-config, their one destination. */
        r->user[r->nuser++] = (struct dstack_kv){ kc_value_map_key(uc, i),
                                                  kc_value_reveal(v, NULL) };
    }
    r->spec.user_config = r->user;
    r->spec.nuser_config = r->nuser;
    return 0;
}

static int read_app_compose(struct render *r, struct kc_err *err)
{
    const struct kc_value *ac = get(r->vm, "app_compose");
    const struct kc_value *envs = get(ac, "allowed_envs");
    int ret;

    if ((ret = get_bool(r, ac, "gateway_enabled", false,
                        &r->spec.gateway_enabled, err)) < 0 ||
        (ret = get_bool(r, ac, "public_logs", false, &r->spec.public_logs,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "public_sysinfo", true, &r->spec.public_sysinfo,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "public_tcbinfo", true, &r->spec.public_tcbinfo,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "secure_time", false, &r->spec.secure_time,
                        err)) < 0 ||
        (ret = get_bool(r, ac, "no_instance_id", false, &r->spec.no_instance_id,
                        err)) < 0 ||
        (ret = get_str(r, ac, "app_compose.", "storage_fs", &r->spec.storage_fs,
                       err)) < 0)
        return ret;
    r->allowed = kc_xcalloc(kc_value_list_len(envs) + 1, sizeof(*r->allowed));
    for (size_t i = 0; envs && i < kc_value_list_len(envs); i++) {
        const struct kc_value *v = kc_value_list_get(envs, i);

        if (v->type != KC_VALUE_STRING || kc_value_is_sensitive(v))
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.app_compose.allowed_envs[%zu]: "
                              "expected a name",
                              r->vm_name, i);
        r->allowed[r->nallowed++] = kc_value_str(v);
    }
    r->spec.allowed_envs = r->allowed;
    r->spec.nallowed_envs = r->nallowed;
    return 0;
}

/* KMS_CONTRACT_ADDR: compose.env, else contracts.kms.address (adopted),
 * else --set contracts.kms.address=... */
static int kms_address(struct render *r, struct kc_err *err)
{
    const struct kc_value *a;
    const char *s;

    for (size_t i = 0; i < r->nenv; i++)
        if (strcmp(r->env[i].key, "KMS_CONTRACT_ADDR") == 0)
            return 0;
    a = get(r->kms_cfg, "address");
    if (a && a->type == KC_VALUE_STRING && !kc_value_is_sensitive(a)) {
        r->spec.kms_contract_addr = kc_value_str(a);
        return 0;
    }
    s = set_value(r, "contracts.kms.address");
    if (s) {
        r->spec.kms_contract_addr = s;
        return 0;
    }
    return kc_err_set(err, KC_EINVAL,
                      "kms_vms.%s: KMS_CONTRACT_ADDR is the address of "
                      "contracts.kms, not known before the contract is "
                      "deployed: pass --set contracts.kms.address=0x... (or "
                      "set compose.env.KMS_CONTRACT_ADDR)",
                      r->vm_name);
}

static int find_image(struct render *r, struct kc_err *err)
{
    const struct kc_value *paths = get(r->vm, "image_search_paths");
    const char *name = NULL;
    int ret;

    if ((ret = get_str(r, r->vm, "", "os_image", &name, err)) < 0)
        return ret;
    if (!name)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s.os_image is required",
                          r->vm_name);
    r->paths = kc_xcalloc(kc_value_list_len(paths) + 1, sizeof(*r->paths));
    for (size_t i = 0; paths && i < kc_value_list_len(paths); i++) {
        const struct kc_value *v = kc_value_list_get(paths, i);

        if (v->type != KC_VALUE_STRING)
            return kc_err_set(err, KC_EINVAL,
                              "kms_vms.%s.image_search_paths[%zu]: expected "
                              "a path",
                              r->vm_name, i);
        r->paths[r->npaths++] = kc_value_reveal(v, NULL);
    }
    if (r->npaths == 0)
        r->paths[r->npaths++] = "~/.dstack/images";
    ret = dstack_osimage_find(r->doc->dir, r->paths, r->npaths, name, &r->img,
                              err);
    if (ret < 0)
        return kc_err_prefix(err, "kms_vms.%s", r->vm_name);
    r->spec.os_image_hash = r->img.auth_hash;
    return 0;
}

/* instance_id_seed and app_id: generated once, kept in the state. */
static int load_ids(struct render *r, const char *deployment,
                    struct kc_err *err)
{
    struct kc_lock *lock = NULL;
    struct kc_state *st = NULL;
    char *path = NULL, *kseed, *kapp;
    const struct kc_value *v;
    unsigned gen = 0;
    int ret;

    kseed = kc_xasprintf("kms_vms.%s.instance_id_seed", r->vm_name);
    kapp = kc_xasprintf("kms_vms.%s.app_id", r->vm_name);
    if (r->opts->state_path)
        path = kc_xstrdup(r->opts->state_path);
    else if ((ret = kc_state_default_path(r->opts->file, deployment, &path,
                                          err)) < 0)
        goto out;
    if ((ret = kc_lock_acquire(path, r->opts->lock_timeout, "kmsctl render",
                               &lock, err)) < 0 ||
        (ret = kc_state_load(path, &st, err)) < 0 ||
        (ret = kc_state_check_deployment(st, deployment, err)) < 0)
        goto out;
    memset(&r->spec.ids, 0, sizeof(r->spec.ids));
    if ((v = kc_state_generated_get(st, kseed)) && kc_value_str(v))
        kc_snprintf(r->spec.ids.instance_id_seed,
                    sizeof(r->spec.ids.instance_id_seed), "%.40s",
                    kc_value_str(v));
    if ((v = kc_state_generated_get(st, kapp)) && kc_value_str(v))
        kc_snprintf(r->spec.ids.app_id, sizeof(r->spec.ids.app_id), "%.40s",
                    kc_value_str(v));
    if ((ret = dstack_ids_fill(&r->spec.ids, &gen, err)) < 0) {
        kc_err_prefix(err, "state '%s'", path);
        goto out;
    }
    if (gen) {
        struct kc_value *seed = kc_value_new_str(r->spec.ids.instance_id_seed);
        struct kc_value *app = kc_value_new_str(r->spec.ids.app_id);

        ret = kc_state_generated_put(st, kseed, seed, err);
        if (ret == 0)
            ret = kc_state_generated_put(st, kapp, app, err);
        kc_value_free(seed);
        kc_value_free(app);
        if (ret == 0)
            ret = kc_state_write(st, err);
    }
out:
    kc_state_free(st);
    kc_lock_release(lock);
    free(path);
    free(kseed);
    free(kapp);
    return ret;
}

static int write_out(const char *dir, const char *name, const void *data,
                     size_t len, unsigned mode, struct kc_err *err)
{
    char *path = kc_xasprintf("%s/%s", dir, name);
    int ret = kc_file_write_atomic(path, data, len, mode, err);

    /* An existing file keeps its mode through rename of a new one; make sure
     * .user-config ends up 0600 whatever was there. */
    if (ret == 0 && chmod(path, (mode_t)mode) < 0)
        ret = kc_err_from_errno(err, errno, "cannot chmod '%s'", path);
    free(path);
    return ret;
}

static void print_result(const struct render *r, const char *out,
                         const char *shared_digest)
{
    if (r->opts->json) {
        struct json_object *o = json_object_new_object();
        char *text;

        json_object_object_add(o, "kms_vm", json_object_new_string(r->vm_name));
        json_object_object_add(o, "out", json_object_new_string(out));
        json_object_object_add(o, "compose_hash",
                               json_object_new_string(r->files.compose_hash));
        json_object_object_add(o, "shared_image_digest",
                               json_object_new_string(shared_digest));
        json_object_object_add(o, "os_image_hash",
                               json_object_new_string(r->img.auth_hash));
        json_object_object_add(o, "app_id",
                               json_object_new_string(r->spec.ids.app_id));
        text = kc_json_dump(o, true);
        printf("%s\n", text);
        free(text);
        json_object_put(o);
        return;
    }
    printf("compose hash:        %s\n", r->files.compose_hash);
    printf("shared image digest: sha256:%s\n", shared_digest);
    printf("os image hash:       %s\n", r->img.auth_hash);
    printf("wrote app-compose.json, .sys-config.json, .instance_info, "
           "prelaunch.sh, .user-config, shared.img, data.img to %s\n",
           out);
}

static int render_run(struct render *r, struct kc_err *err)
{
    const struct cmd_opts *opts = r->opts;
    const struct kc_node *root, *vms, *node, *kms;
    struct kc_interp_opts io = { 0 };
    struct dstack_fat_file shared[5];
    char digest[65];
    const char *deployment = NULL, *kp = NULL;
    int ret;

    if ((ret = kc_manifest_load(opts->file, &r->doc, err)) < 0)
        return ret;
    {
        struct kc_check_opts copts = { .allow_literal_secrets =
                                           opts->allow_literal_secrets };
        struct kc_diags diags = { 0 };

        if (kc_manifest_check(r->doc, &copts, &diags) < 0) {
            kc_diags_print(&diags, stderr);
            ret = kc_err_set(err, KC_EINVAL, "%s: %zu error%s", opts->file,
                             diags.n, diags.n == 1 ? "" : "s");
            kc_diags_release(&diags);
            return ret;
        }
        kc_diags_release(&diags);
    }
    root = r->doc->root;
    vms = kc_node_get(root, "kms_vms");
    node = kc_node_get(vms, r->vm_name);
    if (!node) {
        struct kc_buf names = { 0 };

        for (size_t i = 0; vms && vms->type == KC_NODE_MAP && i < vms->n; i++)
            kc_buf_addf(&names, "%s'%s'", i ? ", " : "",
                        vms->pairs[i].key->str);
        ret = kc_err_set(err, KC_ENOENT,
                         "%s: no kms_vms entry '%s' (there is %s)", opts->file,
                         r->vm_name, names.len ? kc_buf_str(&names) : "none");
        kc_buf_release(&names);
        return ret;
    }
    {
        const struct kc_node *n = kc_node_get(root, "name");

        deployment = n && n->type == KC_NODE_SCALAR ? n->str : NULL;
        if (!deployment)
            return kc_err_set(err, KC_EINVAL, "%s: the manifest has no name",
                              opts->file);
    }
    io.doc = r->doc;
    io.resolve = resolve_set;
    io.resolve_ctx = r;
    if ((ret = kc_interp_node(&io, node, &r->vm, err)) < 0)
        return ret;
    if (r->vm->type != KC_VALUE_MAP)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s: expected a map",
                          r->vm_name);
    kms = kc_node_get(kc_node_get(root, "contracts"), "kms");
    if (kms && (ret = kc_interp_node(&io, kms, &r->kms_cfg, err)) < 0)
        return ret;
    {
        char *where = kc_xasprintf("kms_vms.%s", r->vm_name);

        ret = refuse_unknown(where, r->vm, err);
        free(where);
        if (ret < 0)
            return ret;
    }

    r->spec.name = r->vm_name;
    if ((ret = get_str(r, r->vm, "", "key_provider", &kp, err)) < 0)
        return ret;
    r->spec.key_provider = kp ? kp : "tpm";
    if (strcmp(r->spec.key_provider, "tpm") != 0)
        return kc_err_set(err, KC_ENOTSUP,
                          "kms_vms.%s.key_provider '%s': render supports tpm; "
                          "key_provider kms needs the KMS client (its URL in "
                          ".sys-config.json and the env encryption key from "
                          "GetAppEnvEncryptPubKey), not built yet",
                          r->vm_name, r->spec.key_provider);
    if ((ret = get_str(r, r->vm, "", "key_provider_id",
                       &r->spec.key_provider_id, err)) < 0 ||
        (ret = get_str(r, r->vm, "", "pccs_url", &r->spec.pccs_url, err)) < 0 ||
        (ret = get_port(r, get(r->vm, "ports"), "kms", &r->spec.kms_port,
                        err)) < 0 ||
        (ret = get_port(r, get(r->vm, "ports"), "auth_api", &r->spec.auth_port,
                        err)) < 0 ||
        (ret = get_port(r, get(r->vm, "ports"), "helios", &r->spec.helios_port,
                        err)) < 0 ||
        (ret = read_compose(r, err)) < 0 ||
        (ret = read_user_config(r, err)) < 0 ||
        (ret = read_app_compose(r, err)) < 0 ||
        (ret = kms_address(r, err)) < 0 || (ret = find_image(r, err)) < 0)
        return ret;
    if ((ret = load_ids(r, deployment, err)) < 0)
        return ret;
    if ((ret = dstack_vm_render(&r->spec, &r->files, err)) < 0)
        return kc_err_prefix(err, "kms_vms.%s", r->vm_name);
    warn_unused_sets(r);

    if ((ret = kc_file_mkdirs(opts->out, 0755, err)) < 0 ||
        (ret =
             write_out(opts->out, "app-compose.json", r->files.app_compose.data,
                       r->files.app_compose.len, 0644, err)) < 0 ||
        (ret =
             write_out(opts->out, ".sys-config.json", r->files.sys_config.data,
                       r->files.sys_config.len, 0644, err)) < 0 ||
        (ret =
             write_out(opts->out, ".instance_info", r->files.instance_info.data,
                       r->files.instance_info.len, 0644, err)) < 0 ||
        (ret = write_out(opts->out, "prelaunch.sh", r->files.prelaunch.data,
                         r->files.prelaunch.len, 0755, err)) < 0 ||
        (ret = write_out(opts->out, ".user-config", r->files.user_config.data,
                         r->files.user_config.len, 0600, err)) < 0)
        return ret;
    {
        struct dstack_fatimg fi = { .files = shared };
        struct dstack_gptimg gi = { .seed = r->vm_name };
        char *p = kc_xasprintf("%s/shared.img", opts->out);

        fi.nfiles = dstack_vm_shared_files(&r->files, &r->spec, shared);
        ret = dstack_fatimg_write_file(&fi, p, 0600, digest, err);
        free(p);
        if (ret < 0)
            return ret;
        p = kc_xasprintf("%s/data.img", opts->out);
        ret = dstack_gptimg_write_file(&gi, p, 0644, err);
        free(p);
        if (ret < 0)
            return ret;
    }
    print_result(r, opts->out, digest);
    return 0;
}

static void render_release(struct render *r)
{
    dstack_vm_files_release(&r->files);
    dstack_osimage_release(&r->img);
    for (size_t i = 0; i < r->nstrs; i++)
        free(r->strs[i]);
    free(r->strs);
    free(r->env);
    free(r->user);
    free(r->allowed);
    free(r->paths);
    free(r->set_used);
    free(r->compose_text);
    kc_value_free(r->vm);
    kc_value_free(r->kms_cfg);
    kc_doc_free(r->doc);
}

int cmd_render(int argc, char **argv)
{
    struct cmd_opts opts;
    struct kc_err err = { 0 };
    struct render r;
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret != 0) {
        cmd_opts_release(&opts);
        return ret < 0 ? KC_EXIT_OK : ret;
    }
    memset(&r, 0, sizeof(r));
    r.opts = &opts;
    if (opts.nargs != 1 || !opts.out) {
        fprintf(stderr, "usage: kmsctl render KMS_VM --out DIR [-f FILE] "
                        "[--set KEY=VALUE]... [--json]\n");
        cmd_opts_release(&opts);
        return KC_EXIT_ERROR;
    }
    r.vm_name = opts.args[0];
    r.set_used = kc_xcalloc(opts.nsets + 1, sizeof(*r.set_used));
    ret = render_run(&r, &err);
    if (ret < 0)
        cmd_print_err(&opts, &err);
    render_release(&r);
    cmd_opts_release(&opts);
    return ret == 0            ? KC_EXIT_OK
           : ret == KC_ELOCKED ? KC_EXIT_LOCKED
                               : KC_EXIT_ERROR;
}
