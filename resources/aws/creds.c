/* resources/aws/creds.c: the AWS CLI's credential chain and region
 * resolution (static part: environment and the shared files), and the IMDS
 * role-credentials document.
 *
 * Precedence, as in "Configuration and credentials precedence"
 * (https://docs.aws.amazon.com/cli/latest/userguide/
 * cli-chap-configure.html#configure-precedence): command line options,
 * environment variables, ..., the credentials file, ..., the config file,
 * ..., Amazon EC2 instance profile credentials (IMDS). The manifest's
 * providers.aws.profile plays the part of --profile: as in the CLI, an
 * explicitly named profile makes the environment's key pair ignored, while
 * AWS_PROFILE only selects the profile; so does providers.aws.credentials_file
 * (the CLI has no such option). Assume-role, SSO and
 * credential_process profiles are refused with a clear error (not
 * implemented).
 *
 * Files: AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials) with
 * [name] sections, AWS_CONFIG_FILE (default ~/.aws/config) with [default]
 * and [profile name] sections
 * (https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html).
 * Region: the manifest, AWS_REGION, AWS_DEFAULT_REGION, then the profile's
 * "region" in the config file
 * (https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-envvars.html).
 */
#include "resources/aws/aws.h"

#include "reconcile/file.h"
#include "reconcile/json.h"

#include <ctype.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"

void aws_creds_release(struct aws_creds *c)
{
    if (!c)
        return;
    kc_secret_free(c->secret_key);
    kc_secret_free(c->session_token);
    memset(c, 0, sizeof(*c));
}

void aws_creds_copy(struct aws_creds *dst, const struct aws_creds *src)
{
    aws_creds_release(dst);
    *dst = *src;
    dst->secret_key = kc_secret_dup(src->secret_key);
    dst->session_token = kc_secret_dup(src->session_token);
}

bool aws_creds_expiring(const struct aws_creds *c, time_t now, long margin)
{
    return c->expiration != 0 && c->expiration - now <= margin;
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);

    for (char **e = env ? env : environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static const char *env_nonempty(char **env, const char *name)
{
    const char *v = env_get(env, name);

    return v && *v ? v : NULL;
}

/* ------------------------------------------------------------------ */
/* INI files as the CLI reads them. */

static char *trim(char *s)
{
    char *end;

    while (*s && isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Normalises a section header's inner text: "profile   x" -> "profile x". */
static void squeeze(char *s)
{
    char *w = s;
    bool space = false;

    for (char *r = s; *r; r++) {
        if (isspace((unsigned char)*r)) {
            space = true;
            continue;
        }
        if (space && w != s)
            *w++ = ' ';
        space = false;
        *w++ = *r;
    }
    *w = '\0';
}

int aws_ini_section(const char *text, const char *section, aws_ini_cb cb,
                    void *data)
{
    char *copy = kc_xstrdup(text ? text : "");
    char *line = copy, *next;
    bool in = false;
    int seen = 0;

    for (; line; line = next) {
        char *s;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* Indented lines continue a nested value ("s3 =\n  max_..."). */
        if (*line == ' ' || *line == '\t') {
            continue;
        }
        s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *close = strrchr(s, ']');

            if (!close) {
                in = false;
                continue;
            }
            *close = '\0';
            s = trim(s + 1);
            squeeze(s);
            in = strcmp(s, section) == 0;
            seen += in;
            continue;
        }
        if (in) {
            char *eq = strchr(s, '=');

            if (!eq)
                continue;
            *eq = '\0';
            cb(data, trim(s), trim(eq + 1));
        }
    }
    kc_memzero(copy, strlen(text ? text : ""));
    free(copy);
    return seen;
}

struct profile_vals {
    char *access_key, *secret_key, *session_token, *region;
    char unsupported[64]; /* first key we refuse to ignore */
};

static void profile_vals_release(struct profile_vals *v)
{
    free(v->access_key);
    free(v->region);
    if (v->secret_key)
        kc_memzero(v->secret_key, strlen(v->secret_key));
    free(v->secret_key);
    if (v->session_token)
        kc_memzero(v->session_token, strlen(v->session_token));
    free(v->session_token);
    memset(v, 0, sizeof(*v));
}

static void set_str(char **dst, const char *v)
{
    if (*dst) {
        kc_memzero(*dst, strlen(*dst));
        free(*dst);
    }
    *dst = kc_xstrdup(v);
}

static void on_profile_key(void *data, const char *key, const char *value)
{
    struct profile_vals *v = data;
    static const char *const refused[] = {
        "role_arn",      "credential_process",      "sso_session",
        "sso_start_url", "web_identity_token_file", "credential_source",
    };

    if (strcmp(key, "aws_access_key_id") == 0)
        set_str(&v->access_key, value);
    else if (strcmp(key, "aws_secret_access_key") == 0)
        set_str(&v->secret_key, value);
    else if (strcmp(key, "aws_session_token") == 0 ||
             strcmp(key, "aws_security_token") == 0)
        set_str(&v->session_token, value);
    else if (strcmp(key, "region") == 0)
        set_str(&v->region, value);
    for (size_t i = 0; i < KC_ARRAY_SIZE(refused); i++)
        if (strcmp(key, refused[i]) == 0 && !v->unsupported[0])
            (void)kc_snprintf(v->unsupported, sizeof(v->unsupported), "%s",
                              key); /* names are short */
}

/* Reads PATH's SECTION into V. A missing file is fine (*FOUND false). */
static int read_profile(const char *path, const char *section,
                        struct profile_vals *v, bool *found, struct kc_err *err)
{
    char *text = NULL;
    int ret;

    *found = false;
    if (access(path, F_OK) != 0)
        return 0;
    ret = kc_file_read(path, AWS_CONFIG_MAX_BYTES, &text, NULL, err);
    if (ret < 0)
        return kc_err_prefix(err, "aws credentials");
    *found = aws_ini_section(text, section, on_profile_key, v) > 0;
    kc_memzero(text, strlen(text));
    free(text);
    return 0;
}

static int set_creds(struct aws_creds *c, const char *akid, const char *secret,
                     const char *token, const char *source, struct kc_err *err)
{
    if (!akid || !*akid || !secret || !*secret)
        return kc_err_set(err, KC_EINVAL,
                          "%s: aws_access_key_id and aws_secret_access_key "
                          "must both be set",
                          source);
    if (kc_snprintf(c->access_key, sizeof(c->access_key), "%s", akid) < 0)
        return kc_err_set(err, KC_EINVAL, "%s: access key id too long", source);
    for (const char *p = akid; *p; p++)
        if (!isalnum((unsigned char)*p))
            return kc_err_set(err, KC_EINVAL,
                              "%s: access key id '%s' is not alphanumeric",
                              source, c->access_key);
    c->secret_key = kc_secret_new(secret, strlen(secret));
    c->session_token =
        token && *token ? kc_secret_new(token, strlen(token)) : NULL;
    c->expiration = 0;
    (void)kc_snprintf(c->source, sizeof(c->source), "%s", source);
    return 0;
}

static char *default_path(char **env, const char *var, const char *rel)
{
    const char *v = env_nonempty(env, var);
    const char *home = env_nonempty(env, "HOME");

    if (v)
        return kc_xstrdup(v);
    return kc_xasprintf("%s/%s", home ? home : ".", rel);
}

void aws_chain_release(struct aws_chain *c)
{
    if (!c)
        return;
    aws_creds_release(&c->creds);
    memset(c, 0, sizeof(*c));
}

int aws_chain_resolve(const struct aws_chain_opts *opts, struct aws_chain *out,
                      struct kc_err *err)
{
    static const struct aws_chain_opts none = { 0 };
    struct profile_vals cv = { 0 }, fv = { 0 };
    char *cred_path = NULL, *conf_path = NULL, *section = NULL;
    char source[160];
    const char *profile, *v;
    bool explicit_profile, explicit_file, in_creds = false, in_conf = false;
    int ret;

    if (!opts)
        opts = &none;
    memset(out, 0, sizeof(*out));
    explicit_profile = opts->profile && *opts->profile;
    /* A credentials file named in the manifest is a choice as explicit as a
     * named profile: keys left in the environment (another account's, in a
     * CI job) must not silently win over it. Stricter than the CLI, which
     * has no such option. */
    explicit_file = opts->credentials_file && *opts->credentials_file;
    profile = explicit_profile ? opts->profile
                               : env_nonempty(opts->env, "AWS_PROFILE");
    if (!profile)
        profile = "default";
    if (kc_snprintf(out->profile, sizeof(out->profile), "%s", profile) < 0 ||
        strpbrk(profile, "[]\n"))
        return kc_err_set(err, KC_EINVAL,
                          "aws profile name '%.64s' is not "
                          "valid",
                          profile);

    cred_path = opts->credentials_file && *opts->credentials_file
                    ? kc_xstrdup(opts->credentials_file)
                    : default_path(opts->env, "AWS_SHARED_CREDENTIALS_FILE",
                                   ".aws/credentials");
    conf_path = opts->config_file && *opts->config_file
                    ? kc_xstrdup(opts->config_file)
                    : default_path(opts->env, "AWS_CONFIG_FILE", ".aws/config");
    /* A file named in the manifest must be there (the environment's and the
     * default ones may be missing, as for the CLI). Relative paths are
     * relative to the working directory. */
    if (opts->credentials_file && *opts->credentials_file &&
        access(cred_path, R_OK) != 0) {
        ret = kc_err_from_errno(
            err, errno, "providers.aws.credentials_file '%s'", cred_path);
        goto out;
    }
    if (opts->config_file && *opts->config_file &&
        access(conf_path, R_OK) != 0) {
        ret = kc_err_from_errno(err, errno, "providers.aws.config_file '%s'",
                                conf_path);
        goto out;
    }
    ret = read_profile(cred_path, profile, &cv, &in_creds, err);
    if (ret < 0)
        goto out;
    section = strcmp(profile, "default") == 0
                  ? kc_xstrdup("default")
                  : kc_xasprintf("profile %s", profile);
    ret = read_profile(conf_path, section, &fv, &in_conf, err);
    if (ret < 0)
        goto out;
    if (strcmp(profile, "default") != 0 && !in_creds && !in_conf) {
        ret = kc_err_set(err, KC_ENOENT,
                         "aws profile '%s' not found in '%s' nor '%s'", profile,
                         cred_path, conf_path);
        goto out;
    }

    /* Credentials. */
    if (!explicit_profile && !explicit_file &&
        (env_nonempty(opts->env, "AWS_ACCESS_KEY_ID") ||
         env_nonempty(opts->env, "AWS_SECRET_ACCESS_KEY"))) {
        ret = set_creds(&out->creds, env_get(opts->env, "AWS_ACCESS_KEY_ID"),
                        env_get(opts->env, "AWS_SECRET_ACCESS_KEY"),
                        env_get(opts->env, "AWS_SESSION_TOKEN"),
                        "environment (AWS_ACCESS_KEY_ID)", err);
    } else if (cv.access_key || cv.secret_key) {
        (void)kc_snprintf(source, sizeof(source), "profile '%s' in '%s'",
                          profile, cred_path); /* truncation is fine */
        ret = set_creds(&out->creds, cv.access_key, cv.secret_key,
                        cv.session_token, source, err);
    } else if (fv.access_key || fv.secret_key) {
        (void)kc_snprintf(source, sizeof(source), "profile '%s' in '%s'",
                          profile, conf_path); /* truncation is fine */
        ret = set_creds(&out->creds, fv.access_key, fv.secret_key,
                        fv.session_token, source, err);
    } else if (cv.unsupported[0] || fv.unsupported[0]) {
        ret = kc_err_set(err, KC_ENOTSUP,
                         "aws profile '%s' uses '%s', which kmsctl does not "
                         "support: give it aws_access_key_id and "
                         "aws_secret_access_key, or use the environment",
                         profile,
                         cv.unsupported[0] ? cv.unsupported : fv.unsupported);
    }
    if (ret < 0)
        goto out;

    /* Region. */
    if (opts->region && *opts->region) {
        v = opts->region;
        (void)kc_snprintf(out->region_source, sizeof(out->region_source),
                          "providers.aws.region");
    } else if ((v = env_nonempty(opts->env, "AWS_REGION"))) {
        (void)kc_snprintf(out->region_source, sizeof(out->region_source),
                          "AWS_REGION");
    } else if ((v = env_nonempty(opts->env, "AWS_DEFAULT_REGION"))) {
        (void)kc_snprintf(out->region_source, sizeof(out->region_source),
                          "AWS_DEFAULT_REGION");
    } else if ((v = fv.region) && *v) {
        (void)kc_snprintf(out->region_source, sizeof(out->region_source),
                          "profile '%s' in '%s'", profile, conf_path);
    } else {
        v = NULL;
    }
    if (v) {
        for (const char *p = v; *p; p++)
            if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) &&
                *p != '-') {
                ret = kc_err_set(err, KC_EINVAL,
                                 "aws region '%.64s' (from %s) is not a "
                                 "region name",
                                 v, out->region_source);
                goto out;
            }
        if (kc_snprintf(out->region, sizeof(out->region), "%s", v) < 0) {
            ret = kc_err_set(err, KC_EINVAL, "aws region too long");
            goto out;
        }
    }

    /* IMDS: AWS_EC2_METADATA_DISABLED and AWS_EC2_METADATA_SERVICE_ENDPOINT
     * as the SDKs read them. */
    v = env_get(opts->env, "AWS_EC2_METADATA_DISABLED");
    out->imds_allowed = !(v && strcasecmp(v, "true") == 0);
    v = opts->imds_endpoint && *opts->imds_endpoint
            ? opts->imds_endpoint
            : env_nonempty(opts->env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (kc_snprintf(out->imds_endpoint, sizeof(out->imds_endpoint), "%s",
                    v ? v : IMDS_DEFAULT_ENDPOINT) < 0 ||
        (strncmp(out->imds_endpoint, "http://", 7) != 0 &&
         strncmp(out->imds_endpoint, "https://", 8) != 0)) {
        ret = kc_err_set(err, KC_EINVAL,
                         "the instance metadata endpoint is not an http(s) "
                         "url");
        goto out;
    }
    /* No trailing slash: paths are appended. */
    for (size_t n = strlen(out->imds_endpoint);
         n > 0 && out->imds_endpoint[n - 1] == '/'; n--)
        out->imds_endpoint[n - 1] = '\0';
out:
    if (ret < 0)
        aws_chain_release(out);
    profile_vals_release(&cv);
    profile_vals_release(&fv);
    free(cred_path);
    free(conf_path);
    free(section);
    return ret;
}

/* ------------------------------------------------------------------ */

time_t aws_parse_iso8601(const char *s)
{
    struct tm tm = { 0 };
    const char *end;

    if (!s)
        return -1;
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    if (*end == '.') {
        end++;
        if (!isdigit((unsigned char)*end))
            return -1;
        while (isdigit((unsigned char)*end))
            end++;
    }
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
        return -1;
    return timegm(&tm);
}

/* The document of GET /latest/meta-data/iam/security-credentials/<role>
 * ("Retrieve security credentials from instance metadata",
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/
 * instance-metadata-security-credentials.html). */
int aws_creds_from_imds_json(const char *text, size_t len,
                             struct aws_creds *out, struct kc_err *err)
{
    struct json_object *root = NULL;
    const char *code, *akid = NULL, *secret = NULL, *token = NULL, *exp = NULL;
    time_t expiration;
    int ret;

    memset(out, 0, sizeof(*out));
    ret = kc_json_parse(text, len, "imds credentials", &root, err);
    if (ret < 0)
        return ret;
    code = kc_json_opt_str(root, "Code");
    if (code && strcmp(code, "Success") != 0) {
        ret = kc_err_set(err, KC_EREMOTE, "imds credentials: Code is '%.64s'",
                         code);
        goto out;
    }
    if ((ret = kc_json_get_str(root, "AccessKeyId", &akid, err)) < 0 ||
        (ret = kc_json_get_str(root, "SecretAccessKey", &secret, err)) < 0 ||
        (ret = kc_json_get_str(root, "Token", &token, err)) < 0 ||
        (ret = kc_json_get_str(root, "Expiration", &exp, err)) < 0) {
        kc_err_prefix(err, "imds credentials");
        goto out;
    }
    expiration = aws_parse_iso8601(exp);
    if (expiration == -1) {
        ret = kc_err_set(err, KC_EINVAL,
                         "imds credentials: Expiration '%.40s' is not an "
                         "ISO 8601 UTC time",
                         exp);
        goto out;
    }
    ret =
        set_creds(out, akid, secret, token, "instance metadata (IMDSv2)", err);
    if (ret == 0)
        out->expiration = expiration;
out:
    json_object_put(root);
    if (ret < 0)
        aws_creds_release(out);
    return ret;
}
