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
#include "resources/dstack/envcrypt.h"
#include "resources/dstack/gptimg.h"
#include "resources/dstack/kmsrpc.h"
#include "resources/dstack/osimage.h"
#include "resources/dstack/vm.h"

/* Everything a render owns, released in one place. */
struct render {
    const struct cmd_opts *opts;
    const char *vm_name;
    struct kc_doc *doc;
    struct kc_value *vm;      /* kms_vms.<name>, interpolated */
    struct kc_value *kms_cfg; /* contracts.kms, interpolated (may be NULL) */
    const char **paths;
    size_t npaths;
    bool *set_used; /* per --set: looked at */
    struct dstack_osimage img;
    struct dstack_vm_values vals; /* the spec, from r->vm */
    struct dstack_vm_files files;
    struct kc_buf encrypted_env; /* .encrypted-env, key_provider kms */
    /* The VM's env salt from the state (kept by apply), else a fresh one. */
    unsigned char salt[DSTACK_ENV_SALT_LEN];
    bool salt_from_state;
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

static const struct kc_value *get(const struct kc_value *map, const char *key)
{
    return map && map->type == KC_VALUE_MAP ? kc_value_map_get(map, key) : NULL;
}

/* KMS_CONTRACT_ADDR when compose.env does not set it: contracts.kms.address
 * (adopted), else --set contracts.kms.address=... (NULL: neither, or not
 * needed: then the --set is not marked used). */
static const char *kms_address(struct render *r)
{
    const struct kc_value *a = get(r->kms_cfg, "address");

    if (get(get(get(r->vm, "compose"), "env"), "KMS_CONTRACT_ADDR"))
        return NULL;
    if (a && a->type == KC_VALUE_STRING && !kc_value_is_sensitive(a))
        return kc_value_str(a);
    return set_value(r, "contracts.kms.address");
}

static int find_image(struct render *r, struct kc_err *err)
{
    const struct kc_value *paths = get(r->vm, "image_search_paths");
    const char *name = NULL;
    int ret;

    if ((ret = dstack_vm_value_str(r->vm_name, r->vm, "", "os_image", &name,
                                   err)) < 0)
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
    r->vals.spec.os_image_hash = r->img.auth_hash;
    return 0;
}

/* instance_id_seed and app_id: generated once, kept in the state. */
static int load_ids(struct render *r, const char *deployment,
                    struct kc_err *err)
{
    struct kc_lock *lock = NULL;
    struct kc_state *st = NULL;
    char *path = NULL, *kseed, *kapp, *ksalt;
    const struct kc_value *v;
    unsigned gen = 0;
    int ret;

    kseed = kc_xasprintf("kms_vms.%s.instance_id_seed", r->vm_name);
    kapp = kc_xasprintf("kms_vms.%s.app_id", r->vm_name);
    ksalt = kc_xasprintf("kms_vms.%s.env_salt", r->vm_name);
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
    memset(&r->vals.spec.ids, 0, sizeof(r->vals.spec.ids));
    if ((v = kc_state_generated_get(st, kseed)) && kc_value_str(v))
        kc_snprintf(r->vals.spec.ids.instance_id_seed,
                    sizeof(r->vals.spec.ids.instance_id_seed), "%.40s",
                    kc_value_str(v));
    if ((v = kc_state_generated_get(st, kapp)) && kc_value_str(v))
        kc_snprintf(r->vals.spec.ids.app_id, sizeof(r->vals.spec.ids.app_id),
                    "%.40s", kc_value_str(v));
    /* The salt apply keeps (dstack.encrypted_env): with it the render's
     * .encrypted-env is the one apply writes; without it (no apply yet) a
     * fresh one, not kept: apply makes its own. */
    if ((v = kc_state_generated_get(st, ksalt)) && kc_value_str(v)) {
        if ((ret = dstack_hex_decode(kc_value_str(v), r->salt,
                                     DSTACK_ENV_SALT_LEN, ksalt, err)) < 0) {
            kc_err_prefix(err, "state '%s'", path);
            goto out;
        }
        r->salt_from_state = true;
    } else if ((ret = dstack_env_salt_new(r->salt, err)) < 0) {
        goto out;
    }
    if ((ret = dstack_ids_fill(&r->vals.spec.ids, &gen, err)) < 0) {
        kc_err_prefix(err, "state '%s'", path);
        goto out;
    }
    if (gen) {
        struct kc_value *seed =
            kc_value_new_str(r->vals.spec.ids.instance_id_seed);
        struct kc_value *app = kc_value_new_str(r->vals.spec.ids.app_id);

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
    free(ksalt);
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
                               json_object_new_string(r->vals.spec.ids.app_id));
        if (r->encrypted_env.len)
            json_object_object_add(o, "encrypted_env_salt",
                                   json_object_new_string(r->salt_from_state
                                                              ? "state"
                                                              : "random"));
        text = kc_json_dump(o, true);
        printf("%s\n", text);
        free(text);
        json_object_put(o);
        return;
    }
    printf("compose hash:        %s\n", r->files.compose_hash);
    printf("shared image digest: sha256:%s\n", shared_digest);
    printf("os image hash:       %s\n", r->img.auth_hash);
    if (r->encrypted_env.len)
        printf(".encrypted-env:      %s\n",
               r->salt_from_state
                   ? "the VM's salt from the state: the bytes apply writes"
                   : "a fresh salt (no apply yet): apply writes other "
                     "bytes");
    printf("wrote app-compose.json, .sys-config.json, .instance_info, "
           "prelaunch.sh, .user-config, %sshared.img, data.img to %s\n",
           r->encrypted_env.len ? ".encrypted-env, " : "", out);
}

struct env_fetch {
    struct dstack_kms_env_key call;
    int status;
    bool done;
};

static void on_env_key(struct dstack_kms_env_key *c, int status)
{
    struct env_fetch *f = c->data;

    f->status = status;
    f->done = true;
}

/* key_provider kms: GetAppEnvEncryptPubKey from env_encryption.kms_url on a
 * loop of its own (one request), verified against the pinned key, then
 * env_encryption.env encrypted to it with the salt (as dstack.encrypted_env
 * does at plan time). */
static int encrypt_env(struct render *r, struct kc_err *err)
{
    uv_loop_t loop;
    struct kc_http *http = NULL;
    struct kc_http_config cfg = { .loop = &loop };
    struct env_fetch f = { .call = { .data = &f } };
    const struct dstack_env_enc *e = &r->vals.enc;
    int ret, uvret;

    if ((uvret = uv_loop_init(&loop)) < 0)
        return kc_err_from_uv(err, uvret, "uv_loop_init");
    ret = kc_http_new(&cfg, &http, err);
    if (ret == 0)
        ret = dstack_kms_env_key_fetch(http, &f.call, e->kms_url,
                                       r->vals.spec.ids.app_id, e->pin,
                                       e->ca_file, on_env_key, err);
    if (ret == 0) {
        while (!f.done && uv_run(&loop, UV_RUN_ONCE) != 0)
            ;
        if (!f.done)
            ret = kc_err_set(err, KC_EIO, "KMS request did not finish");
        else if ((ret = f.status) < 0)
            *err = f.call.err;
    }
    if (ret == 0)
        ret = dstack_env_encrypt_salted(e->env, e->nenv, f.call.pubkey, r->salt,
                                        &r->encrypted_env, err);
    kc_http_close(http);
    /* The close callbacks (and a cancelled request's) run here. */
    while (uv_run(&loop, UV_RUN_DEFAULT) != 0)
        ;
    dstack_kms_env_key_release(&f.call);
    if ((uvret = uv_loop_close(&loop)) < 0 && ret == 0)
        ret = kc_err_from_uv(err, uvret, "uv_loop_close");
    if (ret < 0)
        return kc_err_prefix(err, "kms_vms.%s.env_encryption", r->vm_name);
    r->vals.spec.encrypted_env = r->encrypted_env.data;
    r->vals.spec.encrypted_env_len = r->encrypted_env.len;
    return 0;
}

static int render_run(struct render *r, struct kc_err *err)
{
    const struct cmd_opts *opts = r->opts;
    const struct kc_node *root, *vms, *node, *kms;
    struct kc_interp_opts io = { 0 };
    struct dstack_fat_file shared[5];
    char digest[65];
    const char *deployment = NULL;
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
    kms = kc_node_get(kc_node_get(root, "contracts"), "kms");
    if (kms && (ret = kc_interp_node(&io, kms, &r->kms_cfg, err)) < 0)
        return ret;
    {
        struct dstack_vm_input in = {
            .vm_name = r->vm_name,
            .vm = r->vm,
            .base_dir = r->doc->dir,
            .kms_addr = kms_address(r),
            .kms_addr_hint = "is the address of contracts.kms, not known "
                             "before the contract is deployed: pass --set "
                             "contracts.kms.address=0x... (or set "
                             "compose.env.KMS_CONTRACT_ADDR)",
            .set_hint = true,
        };

        if ((ret = dstack_vm_values_read(&in, &r->vals, err)) < 0 ||
            (ret = find_image(r, err)) < 0)
            return ret;
    }
    if ((ret = load_ids(r, deployment, err)) < 0)
        return ret;
    if (strcmp(r->vals.spec.key_provider, "kms") == 0 &&
        (ret = encrypt_env(r, err)) < 0)
        return ret;
    if ((ret = dstack_vm_render(&r->vals.spec, &r->files, err)) < 0)
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
    if (r->encrypted_env.len &&
        (ret = write_out(opts->out, ".encrypted-env", r->encrypted_env.data,
                         r->encrypted_env.len, 0600, err)) < 0)
        return ret;
    {
        struct dstack_fatimg fi = { .files = shared };
        struct dstack_gptimg gi = { .seed = r->vm_name };
        char *p = kc_xasprintf("%s/shared.img", opts->out);

        fi.nfiles = dstack_vm_shared_files(&r->files, &r->vals.spec, shared);
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
    kc_buf_release(&r->encrypted_env);
    dstack_osimage_release(&r->img);
    dstack_vm_values_release(&r->vals);
    kc_memzero(r->salt, sizeof(r->salt));
    free(r->paths);
    free(r->set_used);
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
