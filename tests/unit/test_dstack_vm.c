/* tests/unit/test_dstack_vm.c: dstack_vm_values_read(), the one reader of
 * kms_vms.<name> that `kmsctl render` and the GCP shared disk share: the
 * spec it makes, the errors it gives (with and without render's --set
 * hint), and that gcp_shared_render() writes the image the render path
 * writes from the same values. */
#include "resources/dstack/vm.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <unistd.h>

#include "resources/gcp/shared.h"
#include "tests/unit/helpers/dstack_testutil.h"

#define ADDR "0x00000000000000000000000000000000000000aa"

/* A fresh folder per test. */
static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "dstack-vm");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_vm, .init = setup, .fini = teardown, .timeout = 60);

static struct kc_value *map_at(struct kc_value *m, const char *key)
{
    struct kc_value *v = kc_value_new_map();

    kc_value_map_set(m, key, v);
    return v;
}

/* A direct-mode VM: env of each scalar type, a secret, flags, ports. */
static struct kc_value *vm_new(void)
{
    struct kc_value *vm = kc_value_new_map(), *compose, *env, *uc, *ac, *p;
    struct kc_value *envs = kc_value_new_list();

    kc_value_map_set(vm, "mode", kc_value_new_str("direct"));
    compose = map_at(vm, "compose");
    kc_value_map_set(compose, "template", kc_value_new_str("direct"));
    env = map_at(compose, "env");
    kc_value_map_set(env, "KMS_IMAGE", kc_value_new_str("kms:1"));
    kc_value_map_set(env, "WORKERS", kc_value_new_int(4));
    kc_value_map_set(env, "VERBOSE", kc_value_new_bool(true));
    uc = map_at(vm, "user_config");
    kc_value_map_set(uc, "ETH_RPC_URL", kc_value_new_secret("http://s", 8));
    ac = map_at(vm, "app_compose");
    kc_value_map_set(ac, "public_logs", kc_value_new_bool(true));
    kc_value_map_set(ac, "public_sysinfo", kc_value_new_bool(false));
    kc_value_list_push(envs, kc_value_new_str("EXTRA"));
    kc_value_map_set(ac, "allowed_envs", envs);
    p = map_at(vm, "ports");
    kc_value_map_set(p, "kms", kc_value_new_int(12443));
    return vm;
}

static int read_vm(const struct kc_value *vm, const char *kms_addr,
                   bool set_hint, struct dstack_vm_values *v,
                   struct kc_err *err)
{
    struct dstack_vm_input in = {
        .vm_name = "kms",
        .vm = vm,
        .base_dir = tmpdir,
        .kms_addr = kms_addr,
        .kms_addr_hint = "is not known: HINT",
        .set_hint = set_hint,
    };

    memset(v, 0, sizeof(*v));
    memset(err, 0, sizeof(*err));
    return dstack_vm_values_read(&in, v, err);
}

Test(dstack_vm, spec_from_values)
{
    struct kc_value *vm = vm_new();
    struct dstack_vm_values v;
    struct kc_err err;

    cr_assert_eq(read_vm(vm, ADDR, false, &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(v.spec.name, "kms");
    cr_assert_eq(v.spec.mode, DSTACK_KMS_DIRECT);
    cr_assert_str_eq(v.spec.key_provider, "tpm");
    cr_assert_null(v.spec.compose_text); /* the template */
    cr_assert_eq(v.spec.nenv, 3);
    cr_assert_str_eq(v.spec.env[1].key, "WORKERS");
    cr_assert_str_eq(v.spec.env[1].value, "4");
    cr_assert_str_eq(v.spec.env[2].value, "true");
    cr_assert_eq(v.spec.nuser_config, 1);
    cr_assert_str_eq(v.spec.user_config[0].value, "http://s");
    cr_assert(v.spec.public_logs);
    cr_assert_not(v.spec.public_sysinfo);
    cr_assert(v.spec.public_tcbinfo); /* default */
    cr_assert_eq(v.spec.nallowed_envs, 1);
    cr_assert_str_eq(v.spec.allowed_envs[0], "EXTRA");
    cr_assert_str_eq(v.spec.kms_port, "12443");
    cr_assert_null(v.spec.auth_port);
    cr_assert_str_eq(v.spec.kms_contract_addr, ADDR);
    dstack_vm_values_release(&v);

    /* compose.env's address wins over the caller's. */
    kc_value_map_set(
        KC_UNCONST(kc_value_map_get(kc_value_map_get(vm, "compose"), "env")),
        "KMS_CONTRACT_ADDR", kc_value_new_str(ADDR));
    cr_assert_eq(read_vm(vm, NULL, false, &v, &err), 0, "%s", err.msg);
    cr_assert_null(v.spec.kms_contract_addr);
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, compose_file_read_from_base_dir)
{
    struct kc_value *vm = vm_new();
    struct kc_value *compose = KC_UNCONST(kc_value_map_get(vm, "compose"));
    char *path = kc_xasprintf("%s/c.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    struct dstack_vm_values v;
    struct kc_err err;

    cr_assert_not_null(f);
    fputs("services: {}\n", f);
    fclose(f);
    kc_value_map_del(compose, "template");
    kc_value_map_set(compose, "file", kc_value_new_str("c.yaml"));
    cr_assert_eq(read_vm(vm, ADDR, false, &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(v.spec.compose_text, "services: {}\n");
    dstack_vm_values_release(&v);
    /* Both: refused. */
    kc_value_map_set(compose, "template", kc_value_new_str("direct"));
    cr_assert_lt(read_vm(vm, ADDR, false, &v, &err), 0);
    cr_assert_str_eq(err.msg,
                     "kms_vms.kms.compose: give file or template, not both");
    dstack_vm_values_release(&v);
    free(path);
    kc_value_free(vm);
}

#define PIN \
    "0x02"  \
    "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

/* key_provider kms with a full env_encryption (EXTRA is allowed_envs). */
static struct kc_value *vm_kms_with(const char *url, const char *pin)
{
    struct kc_value *vm = vm_new(), *ee, *env;

    kc_value_map_set(vm, "key_provider", kc_value_new_str("kms"));
    ee = map_at(vm, "env_encryption");
    kc_value_map_set(ee, "kms_url", kc_value_new_str(url));
    kc_value_map_set(ee, "kms_k256_pubkey", kc_value_new_str(pin));
    env = map_at(ee, "env");
    kc_value_map_set(env, "EXTRA", kc_value_new_secret("s3cr3t", 6));
    return vm;
}

static struct kc_value *vm_kms_new(void)
{
    return vm_kms_with("https://kms.example:8000", PIN);
}

static int read_vm_fetch(const struct kc_value *vm, bool fetch,
                         struct dstack_vm_values *v, struct kc_err *err)
{
    struct dstack_vm_input in = {
        .vm_name = "kms",
        .vm = vm,
        .base_dir = tmpdir,
        .kms_addr = ADDR,
        /* !FETCH: the bytes made already, as gcp.image passes them. */
        .encrypted_env = fetch ? NULL : "\x01",
        .encrypted_env_len = fetch ? 0 : 1,
    };

    memset(v, 0, sizeof(*v));
    memset(err, 0, sizeof(*err));
    return dstack_vm_values_read(&in, v, err);
}

Test(dstack_vm, key_provider_kms_without_env_encryption_refused)
{
    struct kc_value *vm = vm_new();
    struct dstack_vm_values v;
    struct kc_err err;

    kc_value_map_set(vm, "key_provider", kc_value_new_str("kms"));
    cr_assert_eq(read_vm_fetch(vm, true, &v, &err), KC_EINVAL);
    cr_assert_str_eq(err.msg, "kms_vms.kms.key_provider kms needs "
                              "env_encryption (kms_url, kms_k256_pubkey, "
                              "env)");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, key_provider_kms_with_the_bytes_made_reads_only_kms_url)
{
    struct kc_value *vm = vm_kms_new();
    struct dstack_vm_values v;
    struct kc_err err;

    cr_assert_eq(read_vm_fetch(vm, false, &v, &err), 0, "%s", err.msg);
    cr_assert_eq(v.spec.encrypted_env_len, 1);
    cr_assert_str_eq(v.spec.kms_urls[0], "https://kms.example:8000");
    cr_assert_eq(v.enc.nenv, 0);
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, key_provider_kms_env_encryption_read)
{
    struct kc_value *vm = vm_kms_new();
    struct dstack_vm_values v;
    struct kc_err err;

    cr_assert_eq(read_vm_fetch(vm, true, &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(v.spec.key_provider, "kms");
    cr_assert_eq(v.spec.nkms_urls, 1);
    cr_assert_str_eq(v.spec.kms_urls[0], "https://kms.example:8000");
    cr_assert_eq(v.enc.pin[0], 0x02);
    cr_assert_eq(v.enc.pin[1], 0x79);
    cr_assert_eq(v.enc.pin[32], 0x98);
    cr_assert_eq(v.enc.nenv, 1);
    cr_assert_str_eq(v.enc.env[0].key, "EXTRA");
    cr_assert_str_eq(v.enc.env[0].value, "s3cr3t");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, env_encryption_checked)
{
    struct dstack_vm_values v;
    struct kc_err err;
    /* http, a bad pinned key, tpm with env_encryption */
    struct kc_value *vm = vm_kms_with("http://kms.example", PIN);

    cr_assert_eq(read_vm_fetch(vm, true, &v, &err), KC_EINVAL);
    cr_assert_str_eq(err.msg, "kms_vms.kms.env_encryption.kms_url: expected "
                              "an https:// URL");
    dstack_vm_values_release(&v);
    kc_value_free(vm);

    vm = vm_kms_with(
        "https://kms.example",
        "0x04"
        "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
    cr_assert_eq(read_vm_fetch(vm, true, &v, &err), KC_EINVAL);
    cr_assert(strstr(err.msg, "not a compressed key") != NULL, "%s", err.msg);
    dstack_vm_values_release(&v);
    kc_value_free(vm);

    vm = vm_kms_new();
    kc_value_map_set(vm, "key_provider", kc_value_new_str("tpm"));
    cr_assert_eq(read_vm_fetch(vm, true, &v, &err), KC_EINVAL);
    cr_assert_str_eq(err.msg, "kms_vms.kms.env_encryption needs key_provider "
                              "kms, not tpm");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, unknown_value_named_with_or_without_set_hint)
{
    struct kc_value *vm = vm_new();
    struct kc_value *env =
        KC_UNCONST(kc_value_map_get(kc_value_map_get(vm, "compose"), "env"));
    struct dstack_vm_values v;
    struct kc_err err;

    kc_value_map_set(env, "KMS_IMAGE",
                     kc_value_new_unknown("contracts.kms.address"));
    cr_assert_lt(read_vm(vm, ADDR, true, &v, &err), 0);
    cr_assert_str_eq(err.msg,
                     "kms_vms.kms.compose.env.KMS_IMAGE is not known before "
                     "apply (it comes from 'contracts.kms.address'): pass "
                     "--set contracts.kms.address=<value> to render with it");
    dstack_vm_values_release(&v);
    cr_assert_lt(read_vm(vm, ADDR, false, &v, &err), 0);
    cr_assert_str_eq(err.msg,
                     "kms_vms.kms.compose.env.KMS_IMAGE is not known before "
                     "apply (it comes from 'contracts.kms.address')");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, kms_address_missing_names_the_callers_remedy)
{
    struct kc_value *vm = vm_new();
    struct dstack_vm_values v;
    struct kc_err err;

    cr_assert_lt(read_vm(vm, NULL, false, &v, &err), 0);
    cr_assert_str_eq(err.msg, "kms_vms.kms: KMS_CONTRACT_ADDR is not known: "
                              "HINT");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

Test(dstack_vm, public_members_checked)
{
    struct kc_value *vm;
    struct dstack_vm_values v;
    struct kc_err err;

    /* A secret in compose.env (measured, public). */
    vm = vm_new();
    kc_value_map_set(
        KC_UNCONST(kc_value_map_get(kc_value_map_get(vm, "compose"), "env")),
        "PASSWORD", kc_value_new_secret("pw", 2));
    cr_assert_lt(read_vm(vm, ADDR, false, &v, &err), 0);
    cr_assert(strstr(err.msg, "kms_vms.kms.compose.env.PASSWORD comes from "
                              "${env:} or ${file:}") != NULL,
              "%s", err.msg);
    dstack_vm_values_release(&v);
    kc_value_free(vm);

    /* A flag that is not a boolean. */
    vm = vm_new();
    kc_value_map_set(KC_UNCONST(kc_value_map_get(vm, "app_compose")),
                     "secure_time", kc_value_new_str("yes"));
    cr_assert_lt(read_vm(vm, ADDR, false, &v, &err), 0);
    cr_assert_str_eq(err.msg, "kms_vms.kms.app_compose.secure_time: expected "
                              "true or false");
    dstack_vm_values_release(&v);
    kc_value_free(vm);

    /* A port out of range. */
    vm = vm_new();
    kc_value_map_set(KC_UNCONST(kc_value_map_get(vm, "ports")), "auth_api",
                     kc_value_new_int(70000));
    cr_assert_lt(read_vm(vm, ADDR, false, &v, &err), 0);
    cr_assert_str_eq(err.msg,
                     "kms_vms.kms.ports.auth_api: expected a port (1-65535)");
    dstack_vm_values_release(&v);
    kc_value_free(vm);
}

/* The GCP shared disk and the render path (read, render, FAT image) give
 * the same bytes for the same values and ids. */
Test(dstack_vm, gcp_shared_disk_matches_render_path)
{
    struct kc_value *vm = vm_new();
    struct gcp_shared_in sin = { .vm_name = "kms",
                                 .vm = vm,
                                 .base_dir = tmpdir,
                                 .os_image_hash = "ab",
                                 .kms_addr = ADDR };
    struct dstack_vm_values v;
    struct dstack_vm_files files = { 0 };
    struct dstack_fat_file ff[5];
    struct dstack_fatimg fi = { .files = ff };
    char d1[65], d2[65], hash[65];
    char *p1 = kc_xasprintf("%s/gcp.img", tmpdir);
    char *p2 = kc_xasprintf("%s/render.img", tmpdir);
    struct kc_err err = { 0 };

    cr_assert_eq(dstack_ids_fill(&sin.ids, NULL, &err), 0, "%s", err.msg);
    int fd = open(p1, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    cr_assert_geq(fd, 0);
    cr_assert_eq(gcp_shared_render(&sin, fd, d1, hash, &err), 0, "%s", err.msg);
    close(fd);
    cr_assert_eq(read_vm(vm, ADDR, true, &v, &err), 0, "%s", err.msg);
    v.spec.os_image_hash = "ab";
    v.spec.ids = sin.ids;
    cr_assert_eq(dstack_vm_render(&v.spec, &files, &err), 0, "%s", err.msg);
    cr_assert_str_eq(files.compose_hash, hash);
    fi.nfiles = dstack_vm_shared_files(&files, &v.spec, ff);
    cr_assert_eq(dstack_fatimg_write_file(&fi, p2, 0600, d2, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(d1, d2);
    dstack_vm_files_release(&files);
    dstack_vm_values_release(&v);
    free(p1);
    free(p2);
    kc_value_free(vm);
}
