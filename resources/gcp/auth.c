/* resources/gcp/auth.c: credentials lookup, JWT RS256 and the token cache. */
#include "resources/gcp/auth.h"

#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/gcp/codec.h"

#define ADC_FILE "application_default_credentials.json"

/* Credentials */

void gcp_creds_free(struct gcp_creds *c)
{
    if (!c)
        return;
    free(c->origin);
    free(c->project_id);
    free(c->client_email);
    free(c->private_key_id);
    kc_secret_free(c->private_key);
    free(c->client_id);
    kc_secret_free(c->client_secret);
    kc_secret_free(c->refresh_token);
    free(c->token_uri);
    kc_secret_free(c->access_token);
    free(c);
}

static int load_pkey(const struct kc_secret *pem, EVP_PKEY **out,
                     struct kc_err *err)
{
    size_t len;
    const char *bytes = kc_secret_reveal(pem, &len);
    BIO *bio = BIO_new_mem_buf(bytes, (int)len);
    EVP_PKEY *pkey;

    if (!bio)
        return kc_err_from_ssl(err, "private_key");
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pkey)
        return kc_err_from_ssl(err, "private_key: not a PEM private key");
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        return kc_err_set(err, KC_EINVAL,
                          "private_key: not an RSA key (RS256 needs one)");
    }
    *out = pkey;
    return 0;
}

/* A required non-empty string member, borrowed from O. */
static int req_nonempty(struct json_object *o, const char *key,
                        const char **out, struct kc_err *err)
{
    int ret = kc_json_get_str(o, key, out, err);

    if (ret < 0)
        return ret;
    if (!**out)
        return kc_err_set(err, KC_EINVAL, "'%s': empty", key);
    return 0;
}

/* A required non-empty string member, copied. */
static int req_str(struct json_object *o, const char *key, char **out,
                   struct kc_err *err)
{
    const char *s;
    int ret = req_nonempty(o, key, &s, err);

    if (ret == 0)
        *out = kc_xstrdup(s);
    return ret;
}

/* The same, as a secret. */
static int req_secret(struct json_object *o, const char *key,
                      struct kc_secret **out, struct kc_err *err)
{
    const char *s;
    int ret = req_nonempty(o, key, &s, err);

    if (ret == 0)
        *out = kc_secret_new(s, strlen(s));
    return ret;
}

static char *opt_dup(struct json_object *o, const char *key)
{
    const char *s = kc_json_opt_str(o, key);

    return s && *s ? kc_xstrdup(s) : NULL;
}

int gcp_creds_parse(const char *text, size_t len, const char *origin,
                    struct gcp_creds **out, struct kc_err *err)
{
    struct json_object *root = NULL;
    struct gcp_creds *c = kc_xcalloc(1, sizeof(*c));
    EVP_PKEY *pkey = NULL;
    const char *type;
    int ret;

    c->origin = kc_xstrdup(origin);
    /* The text holds a private key: parse errors must not quote it, and
     * kc_json_parse only reports positions. */
    ret = kc_json_parse(text, len, origin, &root, err);
    if (ret < 0)
        goto out;
    if (!json_object_is_type(root, json_type_object)) {
        ret = kc_err_set(err, KC_EINVAL, "%s: not a JSON object", origin);
        goto out;
    }
    ret = kc_json_get_str(root, "type", &type, err);
    if (ret < 0)
        goto prefix;
    c->project_id = opt_dup(root, "project_id");
    if (!c->project_id)
        c->project_id = opt_dup(root, "quota_project_id");
    c->token_uri = opt_dup(root, "token_uri");
    if (strcmp(type, "service_account") == 0) {
        c->kind = GCP_CRED_SERVICE_ACCOUNT;
        if ((ret = req_str(root, "client_email", &c->client_email, err)) < 0 ||
            (ret = req_secret(root, "private_key", &c->private_key, err)) < 0)
            goto prefix;
        c->private_key_id = opt_dup(root, "private_key_id");
        ret = load_pkey(c->private_key, &pkey, err);
        if (ret < 0)
            goto prefix;
    } else if (strcmp(type, "authorized_user") == 0) {
        c->kind = GCP_CRED_AUTHORIZED_USER;
        if ((ret = req_str(root, "client_id", &c->client_id, err)) < 0 ||
            (ret = req_secret(root, "client_secret", &c->client_secret, err)) <
                0 ||
            (ret = req_secret(root, "refresh_token", &c->refresh_token, err)) <
                0)
            goto prefix;
    } else {
        ret = kc_err_set(err, KC_ENOTSUP,
                         "%s: credentials of type '%.64s' are not supported "
                         "(use a service_account key or authorized_user "
                         "ADC)",
                         origin, type);
        goto out;
    }
    goto out;
prefix:
    kc_err_prefix(err, "%s", origin);
out:
    EVP_PKEY_free(pkey);
    json_object_put(root);
    if (ret < 0)
        gcp_creds_free(c);
    else
        *out = c;
    return ret;
}

static int creds_from_file(const char *path, const char *why,
                           struct gcp_creds **out, struct kc_err *err)
{
    char *text = NULL, *origin;
    size_t len = 0;
    int ret;

    origin = kc_xasprintf("file '%s' (%s)", path, why);
    ret = kc_file_read(path, GCP_KEYFILE_MAX, &text, &len, err);
    if (ret < 0)
        kc_err_prefix(err, "credentials from %s", why);
    else
        ret = gcp_creds_parse(text, len, origin, out, err);
    if (text) {
        kc_memzero(text, len);
        free(text);
    }
    free(origin);
    return ret;
}

static struct gcp_creds *creds_new(enum gcp_cred_kind kind, const char *origin)
{
    struct gcp_creds *c = kc_xcalloc(1, sizeof(*c));

    c->kind = kind;
    c->origin = kc_xstrdup(origin);
    return c;
}

void gcp_creds_env_from_process(struct gcp_creds_env *env,
                                const struct kc_secret *credentials,
                                const char *base_dir)
{
    memset(env, 0, sizeof(*env));
    env->credentials = credentials;
    env->base_dir = base_dir;
    env->access_token = getenv("GOOGLE_OAUTH_ACCESS_TOKEN");
    env->app_credentials = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    env->cloudsdk_config = getenv("CLOUDSDK_CONFIG");
    env->home = getenv("HOME");
}

int gcp_creds_find(const struct gcp_creds_env *env, struct gcp_creds **out,
                   struct kc_err *err)
{
    char *adc = NULL;
    int ret;

    if (env->credentials) {
        size_t len;
        const char *v = kc_secret_reveal(env->credentials, &len);
        size_t i = 0;

        while (i < len &&
               (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r'))
            i++;
        if (i < len && v[i] == '{')
            return gcp_creds_parse(v, len, "providers.gcp.credentials", out,
                                   err);
        if (len == 0 || memchr(v, '\0', len))
            return kc_err_set(err, KC_EINVAL,
                              "providers.gcp.credentials: neither a path "
                              "nor a key file's JSON");
        adc = kc_file_resolve(env->base_dir, v);
        ret = creds_from_file(adc, "providers.gcp.credentials", out, err);
        free(adc);
        return ret;
    }
    if (env->access_token && *env->access_token) {
        struct gcp_creds *c =
            creds_new(GCP_CRED_ACCESS_TOKEN, "GOOGLE_OAUTH_ACCESS_TOKEN");

        c->access_token =
            kc_secret_new(env->access_token, strlen(env->access_token));
        *out = c;
        return 0;
    }
    if (env->app_credentials && *env->app_credentials)
        return creds_from_file(env->app_credentials,
                               "GOOGLE_APPLICATION_CREDENTIALS", out, err);
    if (env->cloudsdk_config && *env->cloudsdk_config)
        adc = kc_xasprintf("%s/" ADC_FILE, env->cloudsdk_config);
    else if (env->home && *env->home)
        adc = kc_xasprintf("%s/.config/gcloud/" ADC_FILE, env->home);
    if (adc && access(adc, F_OK) == 0) {
        ret = creds_from_file(adc, "gcloud application default credentials",
                              out, err);
        free(adc);
        return ret;
    }
    if (!env->no_metadata) {
        free(adc);
        *out = creds_new(GCP_CRED_METADATA, "the GCE metadata server");
        return 0;
    }
    ret = kc_err_set(err, KC_ENOENT,
                     "no Google credentials: set providers.gcp.credentials, "
                     "GOOGLE_OAUTH_ACCESS_TOKEN or "
                     "GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth "
                     "application-default login` (no file at '%s')",
                     adc ? adc : "$HOME/.config/gcloud/" ADC_FILE);
    free(adc);
    return ret;
}

char *gcp_creds_describe(const struct gcp_creds *c)
{
    switch (c->kind) {
    case GCP_CRED_SERVICE_ACCOUNT:
        return kc_xasprintf("service account '%s' from %s", c->client_email,
                            c->origin);
    case GCP_CRED_AUTHORIZED_USER:
        return kc_xasprintf("authorized user (client '%s') from %s",
                            c->client_id, c->origin);
    case GCP_CRED_ACCESS_TOKEN:
        return kc_xasprintf("access token from %s", c->origin);
    case GCP_CRED_METADATA:
        break;
    }
    return kc_xasprintf("%s", c->origin);
}

/* JWT */

static int b64url_json(struct json_object *o, struct kc_buf *out)
{
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    return gcp_b64_encode(s, strlen(s), true, out);
}

int gcp_jwt_sign(const struct gcp_creds *c, const char *aud, const char *scope,
                 int64_t now, struct kc_secret **out, struct kc_err *err)
{
    struct json_object *hdr = json_object_new_object();
    struct json_object *claims = json_object_new_object();
    struct kc_buf jwt = { 0 };
    EVP_MD_CTX *md = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int ret;

    if (c->kind != GCP_CRED_SERVICE_ACCOUNT || !c->private_key) {
        ret = kc_err_set(err, KC_EINVAL, "JWT: not a service account");
        goto out;
    }
    json_object_object_add(hdr, "alg", json_object_new_string("RS256"));
    json_object_object_add(hdr, "typ", json_object_new_string("JWT"));
    if (c->private_key_id)
        json_object_object_add(hdr, "kid",
                               json_object_new_string(c->private_key_id));
    json_object_object_add(claims, "iss",
                           json_object_new_string(c->client_email));
    json_object_object_add(claims, "scope", json_object_new_string(scope));
    json_object_object_add(claims, "aud", json_object_new_string(aud));
    json_object_object_add(claims, "iat", json_object_new_int64(now));
    json_object_object_add(claims, "exp",
                           json_object_new_int64(now + GCP_JWT_LIFETIME_S));
    kc_buf_init(&jwt, GCP_JWT_MAX);
    if ((ret = b64url_json(hdr, &jwt)) < 0 ||
        (ret = kc_buf_addch(&jwt, '.')) < 0 ||
        (ret = b64url_json(claims, &jwt)) < 0) {
        kc_err_set(err, ret, "JWT: too large");
        goto out;
    }
    ret = load_pkey(c->private_key, &pkey, err);
    if (ret < 0)
        goto out;
    md = EVP_MD_CTX_new();
    /* RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), the default
     * padding of an RSA key in EVP_DigestSign. */
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)jwt.data,
                       jwt.len) != 1) {
        ret = kc_err_from_ssl(err, "JWT: RS256 signature");
        goto out;
    }
    sig = kc_xmalloc(siglen);
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)jwt.data,
                       jwt.len) != 1) {
        ret = kc_err_from_ssl(err, "JWT: RS256 signature");
        goto out;
    }
    if ((ret = kc_buf_addch(&jwt, '.')) < 0 ||
        (ret = gcp_b64_encode(sig, siglen, true, &jwt)) < 0) {
        kc_err_set(err, ret, "JWT: too large");
        goto out;
    }
    *out = kc_secret_new(jwt.data, jwt.len);
out:
    free(sig);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    kc_buf_release_wipe(&jwt);
    json_object_put(hdr);
    json_object_put(claims);
    return ret;
}

static int jwt_part_json(const char *s, size_t len, const char *what,
                         struct json_object **out, struct kc_err *err)
{
    struct kc_buf raw = { 0 };
    int ret;

    kc_buf_init(&raw, GCP_JWT_MAX);
    ret = gcp_b64_decode(s, len, &raw, err);
    if (ret == 0)
        ret = kc_json_parse(kc_buf_str(&raw), raw.len, what, out, err);
    else
        kc_err_prefix(err, "%s", what);
    if (ret == 0 && !json_object_is_type(*out, json_type_object)) {
        json_object_put(*out);
        *out = NULL;
        ret = kc_err_set(err, KC_EPARSE, "%s: not a JSON object", what);
    }
    kc_buf_release(&raw);
    return ret;
}

int gcp_jwt_verify(const char *jwt, size_t len, EVP_PKEY *pub,
                   struct json_object **header, struct json_object **claims,
                   struct kc_err *err)
{
    const char *dot1, *dot2, *alg;
    struct json_object *hdr = NULL, *cl = NULL;
    struct kc_buf sig = { 0 };
    EVP_MD_CTX *md = NULL;
    int ret;

    if (len > GCP_JWT_MAX)
        return kc_err_set(err, KC_ERANGE, "JWT: over %u bytes", GCP_JWT_MAX);
    dot1 = memchr(jwt, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt)))
        return kc_err_set(err, KC_EPARSE,
                          "JWT: expected three dot-separated parts");
    ret = jwt_part_json(jwt, (size_t)(dot1 - jwt), "JWT header", &hdr, err);
    if (ret < 0)
        goto out;
    ret = jwt_part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), "JWT claims", &cl,
                        err);
    if (ret < 0)
        goto out;
    ret = kc_json_get_str(hdr, "alg", &alg, err);
    if (ret < 0) {
        kc_err_prefix(err, "JWT header");
        goto out;
    }
    if (strcmp(alg, "RS256") != 0) {
        ret = kc_err_set(err, KC_ECRYPTO, "JWT: alg '%.32s', expected RS256",
                         alg);
        goto out;
    }
    kc_buf_init(&sig, 4096);
    ret = gcp_b64_decode(dot2 + 1, len - (size_t)(dot2 + 1 - jwt), &sig, err);
    if (ret < 0) {
        kc_err_prefix(err, "JWT signature");
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) != 1) {
        ret = kc_err_from_ssl(err, "JWT: verify");
        goto out;
    }
    if (EVP_DigestVerify(md, (const unsigned char *)sig.data, sig.len,
                         (const unsigned char *)jwt,
                         (size_t)(dot2 - jwt)) != 1) {
        ERR_clear_error();
        ret = kc_err_set(err, KC_ECRYPTO,
                         "JWT: signature does not verify with the key");
        goto out;
    }
    if (header) {
        *header = hdr;
        hdr = NULL;
    }
    if (claims) {
        *claims = cl;
        cl = NULL;
    }
out:
    EVP_MD_CTX_free(md);
    kc_buf_release(&sig);
    json_object_put(hdr);
    json_object_put(cl);
    return ret;
}

/* Token responses */

int gcp_token_parse(long code, const char *body, size_t len, const char *what,
                    struct kc_secret **token, int64_t *expires_in,
                    struct kc_err *err)
{
    struct json_object *o = NULL;
    const char *tok, *e, *desc;
    int64_t exp;
    int ret;

    ret = kc_json_parse(body ? body : "", len, what, &o, err);
    if (code < 200 || code > 299) {
        if (ret == 0 && (e = kc_json_opt_str(o, "error")) != NULL) {
            desc = kc_json_opt_str(o, "error_description");
            ret = kc_err_set(err, KC_EREMOTE, "%s: %ld %.100s%s%.200s", what,
                             code, e, desc ? ": " : "", desc ? desc : "");
        } else if (ret == 0 && (e = kc_json_opt_str(o, "error.message"))) {
            ret = kc_err_set(err, KC_EREMOTE, "%s: %ld %.300s", what, code, e);
        } else {
            ret = kc_err_set(err, KC_EREMOTE, "%s: HTTP %ld", what, code);
        }
        goto out;
    }
    if (ret < 0)
        goto out;
    if ((ret = kc_json_get_str(o, "access_token", &tok, err)) < 0 ||
        (ret = kc_json_get_int(o, "expires_in", &exp, err)) < 0) {
        kc_err_prefix(err, "%s", what);
        goto out;
    }
    if (!*tok || exp <= 0) {
        ret = kc_err_set(err, KC_EPARSE, "%s: empty token or expires_in %lld",
                         what, (long long)exp);
        goto out;
    }
    *token = kc_secret_new(tok, strlen(tok));
    *expires_in = exp;
out:
    json_object_put(o);
    return ret;
}

/* Token cache */

struct gcp_auth {
    struct gcp_creds *creds;
    char *token_url, *metadata_token_url, *scope;
    gcp_token_send_fn send;
    void *send_arg;
    gcp_clock_fn clock;
    void *clock_arg;
    struct kc_log *log;

    struct kc_secret *token;
    int64_t expires_at, fresh_until; /* epoch seconds; 0: never expires */
    bool in_flight;
    struct gcp_token_fetch fetch;
    struct kc_secret *fetch_body;
    struct gcp_auth_req *waiters, **tail;
    struct gcp_auth_stats stats;
};

static int64_t auth_now(const struct gcp_auth *a)
{
    return a->clock ? a->clock(a->clock_arg) : (int64_t)time(NULL);
}

int gcp_auth_new(const struct gcp_auth_config *cfg, struct gcp_auth **out,
                 struct kc_err *err)
{
    struct gcp_auth *a;
    const char *host;

    if (!cfg->creds || !cfg->send) {
        gcp_creds_free(cfg->creds);
        return kc_err_set(err, KC_EINVAL, "gcp auth: no credentials or send");
    }
    a = kc_xcalloc(1, sizeof(*a));
    a->creds = cfg->creds;
    if (cfg->token_url)
        a->token_url = kc_xstrdup(cfg->token_url);
    else
        a->token_url = kc_xstrdup(a->creds->token_uri ? a->creds->token_uri
                                                      : GCP_TOKEN_URL);
    host = getenv("GCE_METADATA_HOST");
    if (cfg->metadata_url)
        a->metadata_token_url =
            kc_xasprintf("%s" GCP_METADATA_TOKEN_PATH, cfg->metadata_url);
    else if (host && *host)
        a->metadata_token_url =
            kc_xasprintf("http://%s" GCP_METADATA_TOKEN_PATH, host);
    else
        a->metadata_token_url =
            kc_xstrdup(GCP_METADATA_URL GCP_METADATA_TOKEN_PATH);
    a->scope = kc_xstrdup(cfg->scope ? cfg->scope : GCP_SCOPE_CLOUD_PLATFORM);
    a->send = cfg->send;
    a->send_arg = cfg->send_arg;
    a->clock = cfg->clock;
    a->clock_arg = cfg->clock_arg;
    a->log = cfg->log;
    a->tail = &a->waiters;
    if (a->creds->kind == GCP_CRED_ACCESS_TOKEN) {
        /* Used as given: no expiry known, never refreshed. */
        a->token = kc_secret_dup(a->creds->access_token);
        kc_log_add_secret(a->log, kc_secret_reveal(a->token, NULL),
                          kc_secret_len(a->token));
    }
    *out = a;
    return 0;
}

void gcp_auth_free(struct gcp_auth *a)
{
    if (!a)
        return;
    if (a->in_flight)
        KC_BUG("gcp_auth_free with a token fetch in flight");
    gcp_creds_free(a->creds);
    free(a->token_url);
    free(a->metadata_token_url);
    free(a->scope);
    kc_secret_free(a->token);
    free(a);
}

const struct kc_secret *gcp_auth_token(struct gcp_auth *a)
{
    if (!a->token)
        return NULL;
    if (a->fresh_until && auth_now(a) >= a->fresh_until)
        return NULL;
    return a->token;
}

void gcp_auth_invalidate(struct gcp_auth *a, const struct kc_secret *token)
{
    size_t n1, n2;
    const char *t1, *t2;

    if (!a->token || !token)
        return;
    t1 = kc_secret_reveal(a->token, &n1);
    t2 = kc_secret_reveal(token, &n2);
    if (a->token == token || (n1 == n2 && memcmp(t1, t2, n1) == 0)) {
        kc_secret_free(a->token);
        a->token = NULL;
        a->expires_at = a->fresh_until = 0;
    }
}

const char *gcp_auth_project(const struct gcp_auth *a)
{
    return a->creds->project_id;
}

const struct gcp_creds *gcp_auth_creds(const struct gcp_auth *a)
{
    return a->creds;
}

void gcp_auth_get_stats(const struct gcp_auth *a, struct gcp_auth_stats *out)
{
    *out = a->stats;
}

static int form_add(struct kc_buf *b, const char *key, const char *val,
                    size_t len)
{
    int ret = 0;

    if (b->len)
        ret = kc_buf_addch(b, '&');
    if (ret == 0)
        ret = kc_buf_addstr(b, key);
    if (ret == 0)
        ret = kc_buf_addch(b, '=');
    if (ret == 0)
        ret = gcp_pct_encode(val, len, b);
    return ret;
}

/* Builds the fetch for the credentials' kind into a->fetch. */
static int fetch_prepare(struct gcp_auth *a, struct kc_err *err)
{
    struct gcp_token_fetch *f = &a->fetch;
    struct kc_secret *jwt = NULL;
    struct kc_buf body = { 0 };
    const struct gcp_creds *c = a->creds;
    const char *s;
    size_t n;
    int ret = 0;

    kc_buf_release(&f->resp);
    memset(f, 0, sizeof(*f));
    f->auth = a;
    kc_buf_init(&f->resp, 1u << 20);
    switch (c->kind) {
    case GCP_CRED_SERVICE_ACCOUNT:
        ret = gcp_jwt_sign(c, a->token_url, a->scope, auth_now(a), &jwt, err);
        if (ret < 0)
            return ret;
        s = kc_secret_reveal(jwt, &n);
        ret = form_add(&body, "grant_type", GCP_JWT_GRANT_TYPE,
                       strlen(GCP_JWT_GRANT_TYPE));
        if (ret == 0)
            ret = form_add(&body, "assertion", s, n);
        kc_secret_free(jwt);
        break;
    case GCP_CRED_AUTHORIZED_USER:
        ret = form_add(&body, "grant_type", "refresh_token", 13);
        if (ret == 0)
            ret = form_add(&body, "client_id", c->client_id,
                           strlen(c->client_id));
        if (ret == 0) {
            s = kc_secret_reveal(c->client_secret, &n);
            ret = form_add(&body, "client_secret", s, n);
        }
        if (ret == 0) {
            s = kc_secret_reveal(c->refresh_token, &n);
            ret = form_add(&body, "refresh_token", s, n);
        }
        break;
    case GCP_CRED_METADATA:
        f->method = "GET";
        f->url = a->metadata_token_url;
        f->header_name = "Metadata-Flavor";
        f->header_value = "Google";
        return 0;
    case GCP_CRED_ACCESS_TOKEN:
        return kc_err_set(err, KC_EPERM,
                          "the access token from GOOGLE_OAUTH_ACCESS_TOKEN "
                          "was refused and cannot be refreshed: set a fresh "
                          "one (gcloud auth print-access-token) or use a key "
                          "file");
    }
    if (ret < 0) {
        kc_buf_release_wipe(&body);
        return kc_err_set(err, ret, "token request too large");
    }
    f->method = "POST";
    f->url = a->token_url;
    f->content_type = "application/x-www-form-urlencoded";
    kc_secret_free(a->fetch_body);
    a->fetch_body = kc_secret_new(body.data ? body.data : "", body.len);
    f->body = a->fetch_body;
    kc_buf_release_wipe(&body);
    return 0;
}

int gcp_auth_refresh(struct gcp_auth *a, struct gcp_auth_req *req,
                     gcp_auth_cb cb, struct kc_err *err)
{
    int ret;

    if (a->in_flight) {
        a->stats.joined++;
    } else {
        ret = fetch_prepare(a, err);
        if (ret < 0)
            return ret;
        a->in_flight = true;
        a->stats.fetches++;
        ret = a->send(a->send_arg, &a->fetch, err);
        if (ret < 0) {
            a->in_flight = false;
            a->stats.failures++;
            kc_err_prefix(err, "token from %s", a->creds->origin);
            return ret;
        }
    }
    req->cb = cb;
    req->next = NULL;
    kc_err_clear(&req->err);
    *a->tail = req;
    a->tail = &req->next;
    return 0;
}

void gcp_token_fetch_done(struct gcp_token_fetch *f, int status,
                          const struct kc_err *terr)
{
    struct gcp_auth *a = f->auth;
    struct gcp_auth_req *w, *next;
    struct kc_secret *tok = NULL;
    struct kc_err err = { 0 };
    char *what = NULL;
    int64_t exp = 0, now, slack;

    if (status < 0) {
        err = *terr;
    } else {
        what = kc_xasprintf("token from %s", a->creds->origin);
        status = gcp_token_parse(f->code, kc_buf_str(&f->resp), f->resp.len,
                                 what, &tok, &exp, &err);
    }
    kc_buf_release_wipe(&f->resp);
    kc_secret_free(a->fetch_body);
    a->fetch_body = NULL;
    a->in_flight = false;
    if (status == 0) {
        kc_log_add_secret(a->log, kc_secret_reveal(tok, NULL),
                          kc_secret_len(tok));
        kc_secret_free(a->token);
        a->token = tok;
        now = auth_now(a);
        slack = exp / 2 < GCP_AUTH_SLACK_S ? exp / 2 : GCP_AUTH_SLACK_S;
        a->expires_at = now + exp;
        a->fresh_until = a->expires_at - slack;
    } else {
        a->stats.failures++;
        if (status != err.code || !err.msg[0])
            kc_err_set(&err, status, "token fetch failed");
    }
    free(what);
    w = a->waiters;
    a->waiters = NULL;
    a->tail = &a->waiters;
    for (; w; w = next) {
        next = w->next;
        if (status < 0)
            w->err = err;
        w->cb(w, status);
    }
}
