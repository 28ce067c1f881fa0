/* tests/unit/test_dstack_compose.c: app-compose.json bytes and compose hash,
 * .sys-config.json, .instance_info, .user-config, prelaunch.sh (run with
 * bash and jq), the built-in templates (parsed as YAML). */
#include "resources/dstack/compose.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <unistd.h>
#include <yaml.h>

#include "reconcile/file.h"
#include "tests/unit/helpers/dstack_testutil.h"

static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "compose");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_compose, .init = setup, .fini = teardown, .timeout = 60);

static void write_file(const char *path, const char *data)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_write_atomic(path, data, strlen(data), 0644, &err), 0,
                 "%s", err.msg);
}

/* What Python's json.dump(indent=2) writes for the same dict. */
static const char expected_compose[] =
    "{\n"
    "  \"manifest_version\": 2,\n"
    "  \"name\": \"kms-prod\",\n"
    "  \"runner\": \"docker-compose\",\n"
    "  \"docker_compose_file\": \"services:\\n  a:\\n    image: "
    "\\\"x\\\"\\t\\u00e9\\ud83d\\ude00\\u007f\\u0001\\\\\\n\",\n"
    "  \"gateway_enabled\": false,\n"
    "  \"public_logs\": true,\n"
    "  \"public_sysinfo\": true,\n"
    "  \"public_tcbinfo\": true,\n"
    "  \"key_provider_id\": \"\",\n"
    "  \"allowed_envs\": [\n"
    "    \"B\",\n"
    "    \"A\"\n"
    "  ],\n"
    "  \"no_instance_id\": true,\n"
    "  \"secure_time\": false,\n"
    "  \"key_provider\": \"tpm\",\n"
    "  \"storage_fs\": \"ext4\",\n"
    "  \"pre_launch_script\": \"#!/bin/bash\\n\"\n"
    "}";

static const char *const envs[] = { "B", "A", "B" };

static struct dstack_app_compose fixed_compose(void)
{
    return (struct dstack_app_compose){
        .name = "kms-prod",
        .docker_compose_file = "services:\n  a:\n    image: "
                               "\"x\"\t\xc3\xa9\xf0\x9f\x98\x80\x7f\x01\\\n",
        .public_logs = true,
        .public_sysinfo = true,
        .public_tcbinfo = true,
        .allowed_envs = envs,
        .nallowed_envs = 3,
        .key_provider = "tpm",
        .pre_launch_script = "#!/bin/bash\n",
    };
}

Test(dstack_compose, renders_python_json_dump_bytes)
{
    struct dstack_app_compose c = fixed_compose();
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.len, strlen(expected_compose));
    cr_assert_str_eq(out.data, expected_compose);
    kc_buf_release(&out);
}

Test(dstack_compose, hash_equals_sha256sum_of_the_expected_bytes)
{
    struct dstack_app_compose c = fixed_compose();
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    char hash[65], *sum = NULL;
    char *path = kc_xasprintf("%s/app-compose.json", tmpdir);
    char *cmd = kc_xasprintf("sha256sum '%s'", path);

    write_file(path, expected_compose);
    cr_assert_eq(dstack_test_run(cmd, &sum), 0);
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), 0, "%s", err.msg);
    dstack_compose_hash(out.data, out.len, hash);
    cr_assert_eq(strncmp(sum, hash, 64), 0, "%s vs %s", hash, sum);
    /* A one-byte change in the compose moves the hash. */
    c.docker_compose_file = "services:\n  b: {}\n";
    kc_buf_reset(&out);
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), 0);
    {
        char h2[65];

        dstack_compose_hash(out.data, out.len, h2);
        cr_assert_str_neq(h2, hash);
    }
    kc_buf_release(&out);
    free(sum);
    free(cmd);
    free(path);
}

Test(dstack_compose, refuses_invalid_fields)
{
    struct dstack_app_compose c = fixed_compose();
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    static const char *const bad_envs[] = { "OK", "NOT-OK" };

    c.key_provider = "vault";
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "'vault'"));
    c = fixed_compose();
    c.gateway_enabled = true;
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    c = fixed_compose();
    c.key_provider_id = "abcd";
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    c = fixed_compose();
    c.allowed_envs = bad_envs;
    c.nallowed_envs = 2;
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "allowed_envs[1] 'NOT-OK'"), "%s",
                       err.msg);
    c = fixed_compose();
    c.name = "bad \xff utf8";
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "name: invalid UTF-8"), "%s", err.msg);
    c = fixed_compose();
    c.storage_fs = "btrfs";
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), KC_EINVAL);
    kc_buf_release(&out);
}

Test(dstack_compose, kms_provider_keeps_instance_id_and_gateway)
{
    struct dstack_app_compose c = fixed_compose();
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    struct json_object *o = NULL;

    c.key_provider = "kms";
    c.gateway_enabled = true;
    c.no_instance_id = false;
    c.key_provider_id = "3059AB";
    cr_assert_eq(dstack_app_compose_render(&c, &out, &err), 0, "%s", err.msg);
    o = json_tokener_parse(out.data);
    cr_assert_not_null(o);
    cr_assert_eq(json_object_object_length(o), 15);
    cr_assert(json_object_get_boolean(json_object_object_get(o, "gateway_"
                                                                "enabled")));
    cr_assert_not(
        json_object_get_boolean(json_object_object_get(o, "no_instance_id")));
    cr_assert_eq(json_object_get_int(json_object_object_get(o, "manifest_"
                                                               "version")),
                 2);
    json_object_put(o);
    kc_buf_release(&out);
}

Test(dstack_compose, sys_config_bytes)
{
    static const char *const kms[] = { "https://kms.example:12001" };
    struct dstack_sys_config sc = { .kms_urls = kms,
                                    .nkms_urls = 1,
                                    .pccs_url = "",
                                    .os_image_hash = "abc123" };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(dstack_sys_config_render(&sc, &out, &err), 0, "%s", err.msg);
    cr_assert_str_eq(out.data, "{\n"
                               "  \"kms_urls\": [\n"
                               "    \"https://kms.example:12001\"\n"
                               "  ],\n"
                               "  \"gateway_urls\": [],\n"
                               "  \"pccs_url\": \"\",\n"
                               "  \"vm_config\": \"{\\\"spec_version\\\": 2, "
                               "\\\"os_image_hash\\\": \\\"abc123\\\"}\"\n"
                               "}");
    sc.os_image_hash = "not hex";
    kc_buf_reset(&out);
    cr_assert_eq(dstack_sys_config_render(&sc, &out, &err), KC_EINVAL);
    kc_buf_release(&out);
}

Test(dstack_compose, ids_generated_once_then_kept)
{
    struct dstack_ids ids, again;
    struct kc_buf out = { 0 }, out2 = { 0 };
    struct kc_err err = { 0 };
    unsigned gen = 0;

    memset(&ids, 0, sizeof(ids));
    cr_assert_eq(dstack_ids_fill(&ids, &gen, &err), 0, "%s", err.msg);
    cr_assert_eq(gen, 3);
    cr_assert_eq(strlen(ids.instance_id_seed), 40);
    cr_assert_str_neq(ids.instance_id_seed, ids.app_id);
    again = ids;
    cr_assert_eq(dstack_ids_fill(&again, &gen, &err), 0);
    cr_assert_eq(gen, 0);
    cr_assert_str_eq(again.app_id, ids.app_id);
    cr_assert_eq(dstack_instance_info_render(&ids, &out, &err), 0);
    cr_assert_eq(dstack_instance_info_render(&again, &out2, &err), 0);
    cr_assert_str_eq(out.data, out2.data);
    kc_buf_reset(&out);
    kc_snprintf(again.instance_id_seed, sizeof(again.instance_id_seed),
                "00112233445566778899AABBCCDDEEFF00112233");
    kc_snprintf(again.app_id, sizeof(again.app_id), "%s", "");
    cr_assert_eq(dstack_ids_fill(&again, &gen, &err), 0, "%s", err.msg);
    cr_assert_eq(gen, 2);
    cr_assert_str_eq(again.instance_id_seed,
                     "00112233445566778899aabbccddeeff00112233");
    cr_assert_eq(dstack_instance_info_render(&again, &out, &err), 0);
    cr_assert_eq(strncmp(out.data,
                         "{\n  \"instance_id_seed\": "
                         "\"00112233445566778899aabbccddeeff00112233\",\n"
                         "  \"app_id\": \"",
                         77),
                 0, "%s", out.data);
    kc_snprintf(again.app_id, sizeof(again.app_id), "xyz");
    cr_assert_eq(dstack_ids_fill(&again, &gen, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "app_id 'xyz'"), "%s", err.msg);
    kc_buf_release(&out);
    kc_buf_release(&out2);
}

Test(dstack_compose, user_config_is_a_json_object_of_strings)
{
    struct dstack_kv kv[] = { { "EXECUTION_RPC", "https://rpc/\"k\"" },
                              { "DD_API_KEY", "0123" } };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    struct json_object *o;

    cr_assert_eq(dstack_user_config_render(kv, 2, &out, &err), 0);
    o = json_tokener_parse(out.data);
    cr_assert_not_null(o);
    cr_assert_str_eq(
        json_object_get_string(json_object_object_get(o, "EXECUTION_RPC")),
        "https://rpc/\"k\"");
    json_object_put(o);
    kc_buf_reset(&out);
    cr_assert_eq(dstack_user_config_render(kv, 0, &out, &err), 0);
    cr_assert_str_eq(out.data, "{}");
    kv[1].key = "EXECUTION_RPC";
    kc_buf_reset(&out);
    cr_assert_eq(dstack_user_config_render(kv, 2, &out, &err), KC_EINVAL);
    cr_assert_null(strstr(err.msg, "0123"), "no secret in errors");
    kc_buf_release_wipe(&out);
}

/* The prelaunch script runs under bash (in a subshell, as the guest sources
 * it), writes .env and imports only allowlisted string keys of .user-config,
 * without running anything found in the values. */
Test(dstack_compose, prelaunch_imports_only_allowlisted_keys)
{
    static const struct dstack_kv env[] = {
        { "KMS_HTTPS_PORT", "12001" },
        { "KMS_CONTRACT_ADDR", "0x00000000000000000000000000000000000000aa" },
    };
    static const char *const allow[] = { "EXECUTION_RPC", "DD_API_KEY",
                                         "MISSING" };
    char *ucfg = kc_xasprintf("%s/user'config", tmpdir);
    char *script = kc_xasprintf("%s/prelaunch.sh", tmpdir);
    char *pwned = kc_xasprintf("%s/pwned", tmpdir);
    struct dstack_prelaunch p = { .env = env,
                                  .nenv = 2,
                                  .allow = allow,
                                  .nallow = 3,
                                  .user_config_path = ucfg };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    char *cmd, *dotenv = NULL, *got = NULL;
    size_t len = 0;

    cr_assert_eq(dstack_prelaunch_render(&p, &out, &err), 0, "%s", err.msg);
    write_file(script, out.data);
    cmd = kc_xasprintf("{ \"EXECUTION_RPC\": \"https://rpc.example/$(touch "
                       "%s)\\r\\nEVIL=1\", \"DD_API_KEY\": 5, \"INJECTED\": "
                       "\"x\" }",
                       pwned);
    write_file(ucfg, cmd);
    free(cmd);
    cmd = kc_xasprintf("cd '%s' && bash -c 'set -u; source ./prelaunch.sh; "
                       "echo still-here'",
                       tmpdir);
    cr_assert_eq(dstack_test_run(cmd, &got), 0);
    cr_assert_str_eq(got, "still-here\n");
    dotenv = kc_xasprintf("%s/.env", tmpdir);
    free(got);
    cr_assert_eq(kc_file_read(dotenv, 1 << 20, &got, &len, &err), 0, "%s",
                 err.msg);
    {
        char *want = kc_xasprintf(
            "KMS_HTTPS_PORT=12001\n"
            "KMS_CONTRACT_ADDR=0x0000000000000000000000000000000"
            "0000000aa\n"
            "EXECUTION_RPC=https://rpc.example/$(touch %s)EVIL=1\n",
            pwned);

        cr_assert_str_eq(got, want);
        free(want);
    }
    cr_assert_neq(access(pwned, F_OK), 0, "a value was executed");
    /* Not an object, or no file at all: .env holds the settings only. */
    write_file(ucfg, "[1, 2]");
    free(cmd);
    cmd = kc_xasprintf("cd '%s' && bash ./prelaunch.sh", tmpdir);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    free(got);
    cr_assert_eq(kc_file_read(dotenv, 1 << 20, &got, &len, &err), 0);
    cr_assert_null(strstr(got, "EXECUTION_RPC"));
    unlink(ucfg);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    /* A line break in a setting is refused. */
    {
        struct dstack_kv badenv[] = { { "X", "a\nb" } };
        struct dstack_prelaunch bp = { .env = badenv, .nenv = 1 };

        kc_buf_reset(&out);
        cr_assert_eq(dstack_prelaunch_render(&bp, &out, &err), KC_EINVAL);
    }
    free(got);
    free(dotenv);
    free(cmd);
    free(pwned);
    free(script);
    free(ucfg);
    kc_buf_release(&out);
}

static void yaml_ok(const char *text)
{
    yaml_parser_t parser;
    yaml_document_t doc;

    cr_assert(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)text,
                                 strlen(text));
    cr_assert(yaml_parser_load(&parser, &doc), "YAML error: %s at line %zu",
              parser.problem ? parser.problem : "?",
              parser.problem_mark.line + 1);
    cr_assert_not_null(yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

Test(dstack_compose, templates_are_yaml_with_the_documented_services)
{
    const char *direct = dstack_kms_template(DSTACK_KMS_DIRECT);
    const char *light = dstack_kms_template(DSTACK_KMS_LIGHT);

    yaml_ok(direct);
    yaml_ok(light);
    cr_assert_not_null(strstr(direct, "\n  auth-api:\n"));
    cr_assert_not_null(strstr(direct, "\n  kms:\n"));
    cr_assert_null(strstr(direct, "helios"));
    cr_assert_not_null(strstr(direct, "ETH_RPC_URL: ${ETH_RPC_URL}"));
    cr_assert_not_null(strstr(light, "\n  helios:\n"));
    cr_assert_not_null(strstr(light, "ETH_RPC_URL: http://helios:8545"));
    cr_assert_not_null(strstr(light, "${KMS_HTTPS_PORT:-12001}:8000"));
    cr_assert_not_null(strstr(light, "exec dstack-kms -c /kms/kms.toml"));
}

Test(dstack_compose, kms_env_applies_defaults_and_checks_parameters)
{
    static const struct dstack_kv extra[] = {
        { "KMS_IMAGE", "example.org/kms:1" },
        { "ETH_RPC_URL", "https://sepolia.base.org" },
    };
    static const char *const ukeys[] = { "EXECUTION_RPC" };
    struct dstack_kms_params p = {
        .mode = DSTACK_KMS_DIRECT,
        .kms_contract_addr = "0x00000000000000000000000000000000000000aa",
        .extra = extra,
        .nextra = 2,
    };
    struct dstack_kv *kv = NULL;
    struct kc_err err = { 0 };
    enum dstack_kms_mode mode;
    size_t n = 0;

    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 7);
    cr_assert_str_eq(kv[0].key, "KMS_HTTPS_PORT");
    cr_assert_str_eq(kv[0].value, "12001");
    cr_assert_str_eq(kv[2].key, "KMS_IMAGE");
    cr_assert_str_eq(kv[2].value, "example.org/kms:1", "replaced in place");
    cr_assert_str_eq(kv[5].value, DSTACK_DEFAULT_REF);
    cr_assert_str_eq(kv[6].key, "ETH_RPC_URL");
    free(kv);
    /* Light mode: helios port, and EXECUTION_RPC must come from somewhere. */
    p.mode = DSTACK_KMS_LIGHT;
    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "light mode needs EXECUTION_RPC"), "%s",
                       err.msg);
    p.user_keys = ukeys;
    p.nuser_keys = 1;
    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 8);
    cr_assert_str_eq(kv[2].key, "HELIOS_RPC_PORT");
    free(kv);
    /* Direct mode with ETH_RPC_URL only in user_config is fine. */
    p.mode = DSTACK_KMS_DIRECT;
    p.nextra = 1;
    {
        static const char *const uk2[] = { "ETH_RPC_URL" };

        p.user_keys = uk2;
        cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), 0, "%s", err.msg);
        free(kv);
        /* ...but not in both places. */
        p.nextra = 2;
        cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), KC_EINVAL);
        cr_assert_not_null(strstr(err.msg, "'ETH_RPC_URL' is both"), "%s",
                           err.msg);
    }
    p.user_keys = NULL;
    p.nuser_keys = 0;
    p.kms_contract_addr = "0x12";
    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "KMS_CONTRACT_ADDR '0x12'"));
    p.kms_contract_addr = NULL;
    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), KC_EINVAL);
    p.kms_contract_addr = "0x00000000000000000000000000000000000000aa";
    p.kms_https_port = "70000";
    cr_assert_eq(dstack_kms_env(&p, &kv, &n, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "KMS_HTTPS_PORT '70000'"));
    cr_assert_eq(dstack_kms_mode_parse("light", &mode, &err), 0);
    cr_assert_eq(mode, DSTACK_KMS_LIGHT);
    cr_assert_eq(dstack_kms_mode_parse("fast", &mode, &err), KC_EINVAL);
}
