/* tests/unit/test_aws_creds.c: the credential chain and region resolution
 * (environment, shared credentials and config files, profiles) and the IMDS
 * credentials document. */
#include "resources/aws/aws.h"

#include "reconcile/file.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[64];
static char *cred_path, *conf_path;

static void setup(void)
{
    (void)kc_snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-aws-creds-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cred_path = kc_xasprintf("%s/credentials", tmpdir);
    conf_path = kc_xasprintf("%s/config", tmpdir);
}

static void teardown(void)
{
    unlink(cred_path);
    unlink(conf_path);
    rmdir(tmpdir);
    free(cred_path);
    free(conf_path);
}

TestSuite(aws_creds, .init = setup, .fini = teardown);

static void write_file(const char *path, const char *text)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_write_atomic(path, text, strlen(text), 0600, &err), 0,
                 "%s", err.msg);
}

/* An environment of VARS plus the two file locations. */
static char **make_env(const char *const *vars)
{
    size_t n = 0;
    char **env;

    while (vars && vars[n])
        n++;
    env = kc_xcalloc(n + 3, sizeof(*env));
    for (size_t i = 0; i < n; i++)
        env[i] = kc_xstrdup(vars[i]);
    env[n] = kc_xasprintf("AWS_SHARED_CREDENTIALS_FILE=%s", cred_path);
    env[n + 1] = kc_xasprintf("AWS_CONFIG_FILE=%s", conf_path);
    return env;
}

static void free_env(char **env)
{
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

static int resolve(const char *profile, const char *region,
                   const char *const *vars, struct aws_chain *out,
                   struct kc_err *err)
{
    char **env = make_env(vars);
    struct aws_chain_opts o = { .profile = profile,
                                .region = region,
                                .env = env };
    int ret = aws_chain_resolve(&o, out, err);

    free_env(env);
    return ret;
}

static const char FILES_CREDS[] = "# test\n"
                                  "[default]\n"
                                  "aws_access_key_id = AKIDDEFAULT\n"
                                  "aws_secret_access_key = secretdefault\n"
                                  "\n"
                                  "[work]\n"
                                  "aws_access_key_id=AKIDWORK\n"
                                  "aws_secret_access_key=secretwork\n"
                                  "aws_session_token = tokenwork\n";

static const char FILES_CONF[] = "[default]\n"
                                 "region = eu-west-1\n"
                                 "[profile work]\n"
                                 "region = ap-south-1\n"
                                 "s3 =\n"
                                 "  max_concurrent_requests = 10\n"
                                 "[profile conf-only]\n"
                                 "aws_access_key_id = AKIDCONF\n"
                                 "aws_secret_access_key = secretconf\n"
                                 "[work]\n"
                                 "region = us-west-2\n"
                                 "[profile assumer]\n"
                                 "role_arn = arn:aws:iam::123456789012:role/x\n"
                                 "source_profile = default\n";

Test(aws_creds, environment_keys_come_first)
{
    const char *vars[] = { "AWS_ACCESS_KEY_ID=AKIDENV",
                           "AWS_SECRET_ACCESS_KEY=secretenv",
                           "AWS_SESSION_TOKEN=tokenenv", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDENV");
    cr_assert_str_eq(kc_secret_reveal(c.creds.secret_key, NULL), "secretenv");
    cr_assert_str_eq(kc_secret_reveal(c.creds.session_token, NULL), "tokenenv");
    cr_assert_not_null(strstr(c.creds.source, "environment"));
    cr_assert_eq(c.creds.expiration, 0);
    aws_chain_release(&c);
}

Test(aws_creds, half_an_environment_key_pair_is_an_error)
{
    const char *vars[] = { "AWS_ACCESS_KEY_ID=AKIDENV", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "aws_secret_access_key"), "%s", err.msg);
}

Test(aws_creds, default_profile_from_credentials_file)
{
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve(NULL, NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.profile, "default");
    cr_assert_str_eq(c.creds.access_key, "AKIDDEFAULT");
    cr_assert_null(c.creds.session_token);
    cr_assert_str_eq(c.region, "eu-west-1");
    cr_assert_not_null(strstr(c.region_source, "profile 'default'"));
    aws_chain_release(&c);
}

Test(aws_creds, aws_profile_selects_profile_and_its_config_region)
{
    const char *vars[] = { "AWS_PROFILE=work", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDWORK");
    cr_assert_str_eq(kc_secret_reveal(c.creds.session_token, NULL),
                     "tokenwork");
    /* [profile work], not the [work] section the CLI ignores in config. */
    cr_assert_str_eq(c.region, "ap-south-1");
    aws_chain_release(&c);
}

Test(aws_creds, aws_profile_does_not_override_environment_keys)
{
    const char *vars[] = { "AWS_PROFILE=work", "AWS_ACCESS_KEY_ID=AKIDENV",
                           "AWS_SECRET_ACCESS_KEY=secretenv", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDENV");
    aws_chain_release(&c);
}

Test(aws_creds, manifest_profile_beats_environment_like_cli_option)
{
    const char *vars[] = { "AWS_PROFILE=default", "AWS_ACCESS_KEY_ID=AKIDENV",
                           "AWS_SECRET_ACCESS_KEY=secretenv", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve("work", NULL, vars, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.profile, "work");
    cr_assert_str_eq(c.creds.access_key, "AKIDWORK");
    cr_assert_not_null(strstr(c.creds.source, "profile 'work'"));
    aws_chain_release(&c);
}

Test(aws_creds, config_file_keys_used_when_credentials_file_lacks_them)
{
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve("conf-only", NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDCONF");
    cr_assert_not_null(strstr(c.creds.source, "config"));
    aws_chain_release(&c);
}

Test(aws_creds, unknown_named_profile_is_an_error_naming_both_files)
{
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    cr_assert_eq(resolve("nope", NULL, NULL, &c, &err), KC_ENOENT);
    cr_assert_not_null(strstr(err.msg, "'nope'"));
    cr_assert_not_null(strstr(err.msg, cred_path));
}

Test(aws_creds, assume_role_profile_is_refused_clearly)
{
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve("assumer", NULL, NULL, &c, &err), KC_ENOTSUP);
    cr_assert_not_null(strstr(err.msg, "role_arn"), "%s", err.msg);
}

Test(aws_creds, no_credentials_anywhere_leaves_imds)
{
    struct aws_chain c;
    struct kc_err err = { 0 };

    cr_assert_eq(resolve(NULL, NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "");
    cr_assert(c.imds_allowed);
    cr_assert_str_eq(c.imds_endpoint, "http://169.254.169.254");
    cr_assert_str_eq(c.region, "");
    aws_chain_release(&c);
}

Test(aws_creds, imds_endpoint_and_disable_from_environment)
{
    const char *vars[] = {
        "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9/",
        "AWS_EC2_METADATA_DISABLED=true", NULL
    };
    struct aws_chain c;
    struct kc_err err = { 0 };

    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.imds_endpoint, "http://127.0.0.1:9");
    cr_assert_not(c.imds_allowed);
    aws_chain_release(&c);
}

Test(aws_creds, region_precedence_manifest_then_env_then_profile)
{
    const char *both[] = { "AWS_REGION=us-east-2",
                           "AWS_DEFAULT_REGION=us-west-1", NULL };
    const char *dflt[] = { "AWS_DEFAULT_REGION=us-west-1", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(conf_path, FILES_CONF);
    cr_assert_eq(resolve(NULL, "ca-central-1", both, &c, &err), 0);
    cr_assert_str_eq(c.region, "ca-central-1");
    cr_assert_str_eq(c.region_source, "providers.aws.region");
    aws_chain_release(&c);
    cr_assert_eq(resolve(NULL, NULL, both, &c, &err), 0);
    cr_assert_str_eq(c.region, "us-east-2");
    aws_chain_release(&c);
    cr_assert_eq(resolve(NULL, NULL, dflt, &c, &err), 0);
    cr_assert_str_eq(c.region, "us-west-1");
    aws_chain_release(&c);
    cr_assert_eq(resolve(NULL, NULL, NULL, &c, &err), 0);
    cr_assert_str_eq(c.region, "eu-west-1");
    aws_chain_release(&c);
}

Test(aws_creds, bad_region_names_its_source)
{
    const char *vars[] = { "AWS_REGION=us east 1", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    cr_assert_eq(resolve(NULL, NULL, vars, &c, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "AWS_REGION"), "%s", err.msg);
}

Test(aws_creds, repository_test_credentials_resolve)
{
    char *path =
        kc_xasprintf("AWS_SHARED_CREDENTIALS_FILE=%s/tests/sim/creds/"
                     "aws-credentials",
                     getenv("KC_SRC_DIR") ? getenv("KC_SRC_DIR") : ".");
    char *env[] = { path, "AWS_CONFIG_FILE=/nonexistent", NULL };
    struct aws_chain_opts o = { .region = "us-east-1", .env = env };
    struct aws_chain c;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_chain_resolve(&o, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDKMSCTLSANDBOX01");
    aws_chain_release(&c);
    free(path);
}

Test(aws_creds, imds_document_parses_with_expiry)
{
    static const char doc[] =
        "{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-25T10:00:00Z\","
        "\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAIMDS\","
        "\"SecretAccessKey\":\"imdssecret\",\"Token\":\"imdstoken\","
        "\"Expiration\":\"2026-11-25T16:00:00Z\"}";
    struct aws_creds c;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_creds_from_imds_json(doc, strlen(doc), &c, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(c.access_key, "ASIAIMDS");
    cr_assert_str_eq(kc_secret_reveal(c.session_token, NULL), "imdstoken");
    cr_assert_eq(c.expiration, aws_parse_iso8601("2026-11-25T16:00:00Z"));
    cr_assert(aws_creds_expiring(&c, c.expiration - 100, 300));
    cr_assert_not(aws_creds_expiring(&c, c.expiration - 1000, 300));
    aws_creds_release(&c);
}

Test(aws_creds, imds_document_errors_name_the_field)
{
    static const char nocode[] = "{\"Code\":\"Failure\"}";
    static const char noexp[] =
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"t\"}";
    static const char badexp[] =
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
        "\"Expiration\":\"tomorrow\"}";
    struct aws_creds c;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_creds_from_imds_json(nocode, strlen(nocode), &c, &err),
                 KC_EREMOTE);
    cr_assert_lt(aws_creds_from_imds_json(noexp, strlen(noexp), &c, &err), 0);
    cr_assert_not_null(strstr(err.msg, "Expiration"), "%s", err.msg);
    cr_assert_eq(aws_creds_from_imds_json(badexp, strlen(badexp), &c, &err),
                 KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "tomorrow"));
}

Test(aws_creds, iso8601_accepts_fractions_and_rejects_offsets)
{
    cr_assert_eq(aws_parse_iso8601("1970-01-01T00:01:00Z"), 60);
    cr_assert_eq(aws_parse_iso8601("1970-01-01T00:01:00.123Z"), 60);
    cr_assert_eq(aws_parse_iso8601("1970-01-01T00:01:00+02:00"), -1);
    cr_assert_eq(aws_parse_iso8601("1970-01-01"), -1);
}

Test(aws_creds, manifest_credentials_file_must_exist)
{
    struct aws_chain_opts o = { .credentials_file = "/nonexistent/creds",
                                .region = "us-east-1" };
    char *env[] = { "HOME=/nonexistent", NULL };
    struct aws_chain c;
    struct kc_err err = { 0 };

    o.env = env;
    cr_assert_lt(aws_chain_resolve(&o, &c, &err), 0);
    cr_assert_not_null(strstr(err.msg, "providers.aws.credentials_file "
                                       "'/nonexistent/creds'"),
                       "%s", err.msg);
}

Test(aws_creds, manifest_files_override_environment_files)
{
    const char *vars[] = { "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", NULL };
    char **env = make_env(vars);
    struct aws_chain_opts o = { .credentials_file = cred_path,
                                .config_file = conf_path,
                                .env = env };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    write_file(conf_path, FILES_CONF);
    cr_assert_eq(aws_chain_resolve(&o, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDDEFAULT");
    cr_assert_str_eq(c.region, "eu-west-1");
    aws_chain_release(&c);
    free_env(env);
}

/* A credentials file named in the manifest wins over keys in the
 * environment (another account's, left in a CI job), as a named profile
 * does; AWS_SHARED_CREDENTIALS_FILE alone does not. */
Test(aws_creds, manifest_credentials_file_beats_environment_keys)
{
    const char *vars[] = { "AWS_ACCESS_KEY_ID=AKIDENV",
                           "AWS_SECRET_ACCESS_KEY=secretenv", NULL };
    char **env = make_env(vars);
    struct aws_chain_opts o = { .credentials_file = cred_path, .env = env };
    struct aws_chain c;
    struct kc_err err = { 0 };

    write_file(cred_path, FILES_CREDS);
    cr_assert_eq(aws_chain_resolve(&o, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.creds.access_key, "AKIDDEFAULT");
    cr_assert_not_null(strstr(c.creds.source, "profile 'default'"), "%s",
                       c.creds.source);
    aws_chain_release(&c);
    free_env(env);
}
