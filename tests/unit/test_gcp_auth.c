/* tests/unit/test_gcp_auth.c: JWT RS256 signing and verification, the
 * credentials lookup order, token parsing and the shared token refresh. */
#include "resources/gcp/auth.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/gcp/codec.h"

static EVP_PKEY *new_rsa(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);

    cr_assert_not_null(k);
    return k;
}

static char *pkey_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    cr_assert_eq(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &p);
    out = kc_xstrndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

/* A service-account key file (as the IAM console writes it) for KEY. */
static char *sa_json(EVP_PKEY *key, const char *email)
{
    char *pem = pkey_pem(key);
    struct json_object *o = json_object_new_object();
    char *s;

    json_object_object_add(o, "type",
                           json_object_new_string("service_account"));
    json_object_object_add(o, "project_id", json_object_new_string("proj-1"));
    json_object_object_add(o, "private_key_id", json_object_new_string("kid1"));
    json_object_object_add(o, "private_key", json_object_new_string(pem));
    json_object_object_add(o, "client_email", json_object_new_string(email));
    json_object_object_add(o, "token_uri",
                           json_object_new_string(GCP_TOKEN_URL));
    s = kc_xstrdup(json_object_to_json_string(o));
    json_object_put(o);
    free(pem);
    return s;
}

static struct gcp_creds *sa_creds(EVP_PKEY *key)
{
    char *js = sa_json(key, "sa@proj-1.iam.gserviceaccount.com");
    struct gcp_creds *c = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(gcp_creds_parse(js, strlen(js), "test key", &c, &err), 0, "%s",
                 err.msg);
    free(js);
    return c;
}

Test(gcp_jwt, signed_token_verifies_with_the_public_key_and_has_the_claims)
{
    EVP_PKEY *key = new_rsa();
    struct gcp_creds *c = sa_creds(key);
    struct kc_secret *jwt = NULL;
    struct json_object *hdr = NULL, *cl = NULL;
    struct kc_err err = { 0 };
    const char *s;
    int64_t n;
    size_t len;

    cr_assert_eq(gcp_jwt_sign(c, GCP_TOKEN_URL, GCP_SCOPE_CLOUD_PLATFORM,
                              1700000000, &jwt, &err),
                 0, "%s", err.msg);
    s = kc_secret_reveal(jwt, &len);
    cr_assert_eq(gcp_jwt_verify(s, len, key, &hdr, &cl, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(kc_json_opt_str(hdr, "alg"), "RS256");
    cr_assert_str_eq(kc_json_opt_str(hdr, "typ"), "JWT");
    cr_assert_str_eq(kc_json_opt_str(hdr, "kid"), "kid1");
    cr_assert_str_eq(kc_json_opt_str(cl, "iss"),
                     "sa@proj-1.iam.gserviceaccount.com");
    cr_assert_str_eq(kc_json_opt_str(cl, "aud"), GCP_TOKEN_URL);
    cr_assert_str_eq(kc_json_opt_str(cl, "scope"), GCP_SCOPE_CLOUD_PLATFORM);
    cr_assert_eq(kc_json_get_int(cl, "iat", &n, &err), 0);
    cr_assert_eq(n, 1700000000);
    cr_assert_eq(kc_json_get_int(cl, "exp", &n, &err), 0);
    cr_assert_eq(n, 1700000000 + 3600);
    /* No padding and only URL-safe characters (RFC 7515 §2). */
    cr_assert_null(strpbrk(s, "=+/"));
    json_object_put(hdr);
    json_object_put(cl);
    kc_secret_free(jwt);
    gcp_creds_free(c);
    EVP_PKEY_free(key);
}

/* Checks the signature without gcp_jwt_verify: SHA-256 over "h.c" and
 * RSA PKCS#1 v1.5 with the raw EVP API, so sign and verify are not only
 * consistent with each other. */
Test(gcp_jwt, signature_is_pkcs1_v15_sha256_over_header_dot_claims)
{
    EVP_PKEY *key = new_rsa();
    struct gcp_creds *c = sa_creds(key);
    struct kc_secret *jwt = NULL;
    struct kc_err err = { 0 };
    struct kc_buf sig = { 0 };
    const char *s, *dot;
    unsigned char digest[32];
    unsigned char dec[512];
    size_t len, declen = sizeof(dec);
    EVP_PKEY_CTX *pctx;

    cr_assert_eq(gcp_jwt_sign(c, "aud", "scope", 1, &jwt, &err), 0);
    s = kc_secret_reveal(jwt, &len);
    dot = strrchr(s, '.');
    cr_assert_eq(gcp_b64_decode(dot + 1, strlen(dot + 1), &sig, &err), 0);
    cr_assert_eq(sig.len, 256);
    cr_assert_eq(
        EVP_Digest(s, (size_t)(dot - s), digest, NULL, EVP_sha256(), NULL), 1);
    /* Recover the signed DigestInfo with the public key. */
    pctx = EVP_PKEY_CTX_new(key, NULL);
    cr_assert_eq(EVP_PKEY_verify_recover_init(pctx), 1);
    cr_assert_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
    cr_assert_eq(EVP_PKEY_verify_recover(pctx, dec, &declen,
                                         (unsigned char *)sig.data, sig.len),
                 1);
    /* DigestInfo for SHA-256 (RFC 8017 §9.2 note 1) then the digest. */
    static const unsigned char prefix[] = { 0x30, 0x31, 0x30, 0x0d, 0x06,
                                            0x09, 0x60, 0x86, 0x48, 0x01,
                                            0x65, 0x03, 0x04, 0x02, 0x01,
                                            0x05, 0x00, 0x04, 0x20 };
    cr_assert_eq(declen, sizeof(prefix) + 32);
    cr_assert_eq(memcmp(dec, prefix, sizeof(prefix)), 0);
    cr_assert_eq(memcmp(dec + sizeof(prefix), digest, 32), 0);
    EVP_PKEY_CTX_free(pctx);
    kc_buf_release(&sig);
    kc_secret_free(jwt);
    gcp_creds_free(c);
    EVP_PKEY_free(key);
}

Test(gcp_jwt, tampered_token_or_other_key_is_refused)
{
    EVP_PKEY *key = new_rsa(), *other = new_rsa();
    struct gcp_creds *c = sa_creds(key);
    struct kc_secret *jwt = NULL;
    struct kc_err err = { 0 };
    char *copy, *p;
    size_t len;

    cr_assert_eq(gcp_jwt_sign(c, "a", "s", 1000, &jwt, &err), 0);
    copy = kc_xstrdup(kc_secret_reveal(jwt, &len));
    cr_assert_eq(gcp_jwt_verify(copy, len, other, NULL, NULL, &err),
                 KC_ECRYPTO);
    cr_assert_not_null(strstr(err.msg, "does not verify"));
    /* Change the claims: "iat":1000 becomes another value. */
    p = strchr(copy, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    cr_assert_lt(gcp_jwt_verify(copy, len, key, NULL, NULL, &err), 0);
    cr_assert_eq(gcp_jwt_verify("a.b", 3, key, NULL, NULL, &err), KC_EPARSE);
    /* alg none is refused before any signature check. */
    cr_assert_eq(
        gcp_jwt_verify("eyJhbGciOiJub25lIn0.e30.", 24, key, NULL, NULL, &err),
        KC_ECRYPTO);
    cr_assert_not_null(strstr(err.msg, "RS256"));
    free(copy);
    kc_secret_free(jwt);
    gcp_creds_free(c);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* The simulator's test key signs too (its public half checks the JWTs). */
Test(gcp_jwt, test_service_account_file_signs)
{
    char *path = kc_xasprintf("%s/tests/sim/creds/gcp-service-account.json",
                              getenv("KC_SRC_DIR"));
    struct gcp_creds_env env = { 0 };
    struct gcp_creds *c = NULL;
    struct kc_secret *jwt = NULL;
    struct kc_err err = { 0 };
    EVP_PKEY *key = NULL;
    BIO *b;
    size_t len;
    const char *pem;

    env.app_credentials = path;
    env.no_metadata = true;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c->kind, GCP_CRED_SERVICE_ACCOUNT);
    cr_assert_str_eq(c->project_id, "kmsctl-sandbox");
    cr_assert_eq(gcp_jwt_sign(c, GCP_TOKEN_URL, "s", 5, &jwt, &err), 0);
    pem = kc_secret_reveal(c->private_key, &len);
    b = BIO_new_mem_buf(pem, (int)len);
    key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    cr_assert_not_null(key);
    pem = kc_secret_reveal(jwt, &len);
    cr_assert_eq(gcp_jwt_verify(pem, len, key, NULL, NULL, &err), 0);
    BIO_free(b);
    EVP_PKEY_free(key);
    kc_secret_free(jwt);
    gcp_creds_free(c);
    free(path);
}

/* Lookup order */

static char tmpdir[64];

static void mk_tmp(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-gcp-auth-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tmp(void)
{
    cr_assert_eq(nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static char *write_tmp(const char *name, const char *text)
{
    char *p = kc_xasprintf("%s/%s", tmpdir, name);
    char *dir = kc_file_dirname(p);
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_mkdirs(dir, 0700, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_file_write_atomic(p, text, strlen(text), 0600, &err), 0);
    free(dir);
    return p;
}

static const char user_json[] =
    "{\"type\":\"authorized_user\",\"client_id\":\"cid.apps\","
    "\"client_secret\":\"csecret\",\"refresh_token\":\"1//rt\","
    "\"quota_project_id\":\"qp\"}";

TestSuite(gcp_creds, .init = mk_tmp, .fini = rm_tmp);

Test(gcp_creds, lookup_order_manifest_env_token_gac_adc_metadata)
{
    EVP_PKEY *key = new_rsa();
    char *sa = sa_json(key, "a@b.iam.gserviceaccount.com");
    char *sa_path = write_tmp("keys/sa.json", sa);
    char *home = kc_xasprintf("%s/home", tmpdir);
    char *adc = write_tmp("home/.config/gcloud/"
                          "application_default_credentials.json",
                          user_json);
    struct kc_secret *manifest = kc_secret_new("keys/sa.json", 12);
    struct gcp_creds_env env = { 0 };
    struct gcp_creds *c = NULL;
    struct kc_err err = { 0 };

    env.home = home;
    env.base_dir = tmpdir;
    env.credentials = manifest;
    env.access_token = "ya29.env";
    env.app_credentials = "/nonexistent/x.json";
    /* 1. The manifest wins over everything (relative to the manifest). */
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c->kind, GCP_CRED_SERVICE_ACCOUNT);
    cr_assert_not_null(strstr(c->origin, "providers.gcp.credentials"));
    gcp_creds_free(c);
    /* 2. Then the access token from the environment. */
    env.credentials = NULL;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0);
    cr_assert_eq(c->kind, GCP_CRED_ACCESS_TOKEN);
    cr_assert_str_eq(kc_secret_reveal(c->access_token, NULL), "ya29.env");
    gcp_creds_free(c);
    /* 3. GOOGLE_APPLICATION_CREDENTIALS: named but missing is an error. */
    env.access_token = NULL;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), KC_ENOENT);
    cr_assert_not_null(strstr(err.msg, "GOOGLE_APPLICATION_CREDENTIALS"));
    cr_assert_not_null(strstr(err.msg, "/nonexistent/x.json"));
    env.app_credentials = sa_path;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0);
    cr_assert_eq(c->kind, GCP_CRED_SERVICE_ACCOUNT);
    cr_assert_str_eq(c->client_email, "a@b.iam.gserviceaccount.com");
    gcp_creds_free(c);
    /* 4. gcloud's ADC file under HOME. */
    env.app_credentials = NULL;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c->kind, GCP_CRED_AUTHORIZED_USER);
    cr_assert_str_eq(c->client_id, "cid.apps");
    cr_assert_str_eq(c->project_id, "qp");
    cr_assert_not_null(strstr(c->origin, adc));
    gcp_creds_free(c);
    /* CLOUDSDK_CONFIG moves it. */
    env.cloudsdk_config = tmpdir;
    /* 5. Nothing there: the metadata server, or an error listing sources. */
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0);
    cr_assert_eq(c->kind, GCP_CRED_METADATA);
    gcp_creds_free(c);
    env.no_metadata = true;
    cr_assert_eq(gcp_creds_find(&env, &c, &err), KC_ENOENT);
    cr_assert_not_null(strstr(err.msg, "GOOGLE_APPLICATION_CREDENTIALS"));
    kc_secret_free(manifest);
    free(adc);
    free(home);
    free(sa_path);
    free(sa);
    EVP_PKEY_free(key);
}

Test(gcp_creds, manifest_credentials_may_be_the_json_itself)
{
    struct kc_secret *js = kc_secret_new(user_json, strlen(user_json));
    struct gcp_creds_env env = { .credentials = js, .no_metadata = true };
    struct gcp_creds *c = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c->kind, GCP_CRED_AUTHORIZED_USER);
    gcp_creds_free(c);
    kc_secret_free(js);
}

Test(gcp_creds, broken_files_are_named_and_secrets_not_quoted)
{
    static const char bad_key[] =
        "{\"type\":\"service_account\",\"client_email\":\"x@y\","
        "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nSECRETBYTES\\n"
        "-----END PRIVATE KEY-----\\n\"}";
    static const char ext[] = "{\"type\":\"external_account\"}";
    static const char nomail[] =
        "{\"type\":\"service_account\",\"private_key\":\"k\"}";
    struct gcp_creds *c = NULL;
    struct kc_err err = { 0 };

    cr_assert_lt(
        gcp_creds_parse(bad_key, strlen(bad_key), "file 'k.json'", &c, &err),
        0);
    cr_assert_not_null(strstr(err.msg, "k.json"));
    cr_assert_not_null(strstr(err.msg, "private_key"));
    cr_assert_null(strstr(err.msg, "SECRETBYTES"));
    cr_assert_eq(gcp_creds_parse(ext, strlen(ext), "f", &c, &err), KC_ENOTSUP);
    cr_assert_not_null(strstr(err.msg, "external_account"));
    cr_assert_eq(gcp_creds_parse(nomail, strlen(nomail), "f", &c, &err),
                 KC_ENOENT);
    cr_assert_not_null(strstr(err.msg, "client_email"));
    cr_assert_eq(gcp_creds_parse("[1]", 3, "f", &c, &err), KC_EINVAL);
}

/* Token responses */

Test(gcp_token, parse_success_and_google_errors)
{
    struct kc_secret *t = NULL;
    struct kc_err err = { 0 };
    int64_t exp = 0;
    const char ok[] = "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,"
                      "\"token_type\":\"Bearer\"}";
    const char bad[] = "{\"error\":\"invalid_grant\",\"error_description\":"
                       "\"Invalid JWT Signature.\"}";

    cr_assert_eq(gcp_token_parse(200, ok, strlen(ok), "token", &t, &exp, &err),
                 0);
    cr_assert_str_eq(kc_secret_reveal(t, NULL), "ya29.abc");
    cr_assert_eq(exp, 3599);
    kc_secret_free(t);
    cr_assert_eq(
        gcp_token_parse(400, bad, strlen(bad), "token from x", &t, &exp, &err),
        KC_EREMOTE);
    cr_assert_str_eq(err.msg, "token from x: 400 invalid_grant: Invalid JWT "
                              "Signature.");
    cr_assert_eq(gcp_token_parse(503, "oops", 4, "t", &t, &exp, &err),
                 KC_EREMOTE);
    cr_assert_str_eq(err.msg, "t: HTTP 503");
    cr_assert_eq(gcp_token_parse(200, "{}", 2, "t", &t, &exp, &err), KC_ENOENT);
}

/* Token cache with a fake transport on a real loop */

struct fake {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct gcp_token_fetch *pending;
    int sends;
    long code;
    const char *resp;
    int fail; /* transport failure status */
    char last_method[8];
    char last_url[256];
    char last_header[64];
    struct kc_buf last_body;
    int64_t now;
};

static void on_fake_timer(uv_timer_t *t)
{
    struct fake *f = t->data;
    struct gcp_token_fetch *fe = f->pending;
    struct kc_err err = { 0 };

    f->pending = NULL;
    if (f->fail) {
        kc_err_set(&err, f->fail, "connection refused");
        gcp_token_fetch_done(fe, f->fail, &err);
        return;
    }
    fe->code = f->code;
    cr_assert_eq(kc_buf_addstr(&fe->resp, f->resp), 0);
    gcp_token_fetch_done(fe, 0, NULL);
}

static int fake_send(void *arg, struct gcp_token_fetch *fe, struct kc_err *err)
{
    struct fake *f = arg;

    (void)err;
    cr_assert_null(f->pending, "two fetches at once");
    f->sends++;
    f->pending = fe;
    snprintf(f->last_method, sizeof(f->last_method), "%s", fe->method);
    snprintf(f->last_url, sizeof(f->last_url), "%s", fe->url);
    snprintf(f->last_header, sizeof(f->last_header), "%s: %s",
             fe->header_name ? fe->header_name : "",
             fe->header_value ? fe->header_value : "");
    kc_buf_reset(&f->last_body);
    if (fe->body)
        cr_assert_eq(
            kc_buf_addstr(&f->last_body, kc_secret_reveal(fe->body, NULL)), 0);
    cr_assert_eq(uv_timer_start(&f->timer, on_fake_timer, 5, 0), 0);
    return 0;
}

static int64_t fake_clock(void *arg)
{
    return ((struct fake *)arg)->now;
}

struct waiter {
    struct gcp_auth_req req;
    int calls, status;
};

static void on_token(struct gcp_auth_req *req, int status)
{
    struct waiter *w = kc_container_of(req, struct waiter, req);

    w->calls++;
    w->status = status;
}

static struct gcp_auth *fake_auth(struct fake *f, uv_loop_t *loop,
                                  struct gcp_creds *c)
{
    struct gcp_auth_config cfg = { 0 };
    struct gcp_auth *a = NULL;
    struct kc_err err = { 0 };

    f->loop = loop;
    f->now = 1700000000;
    f->code = 200;
    f->resp = "{\"access_token\":\"tok-1\",\"expires_in\":3600}";
    cr_assert_eq(uv_timer_init(loop, &f->timer), 0);
    f->timer.data = f;
    cfg.creds = c;
    cfg.token_url = "http://127.0.0.1:1/token";
    cfg.metadata_url = "http://127.0.0.1:2";
    cfg.send = fake_send;
    cfg.send_arg = f;
    cfg.clock = fake_clock;
    cfg.clock_arg = f;
    cr_assert_eq(gcp_auth_new(&cfg, &a, &err), 0);
    return a;
}

static void fake_close(struct fake *f, uv_loop_t *loop)
{
    uv_close((uv_handle_t *)&f->timer, NULL);
    cr_assert_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(loop), 0);
    kc_buf_release(&f->last_body);
}

Test(gcp_auth, concurrent_refreshes_share_one_fetch, .timeout = 10)
{
    uv_loop_t loop;
    struct fake f = { 0 };
    EVP_PKEY *key = new_rsa();
    struct gcp_auth *a;
    struct waiter w[3] = { 0 };
    struct gcp_auth_stats st;
    struct kc_err err = { 0 };
    struct json_object *claims = NULL;
    const char *assertion;
    const char *form_prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3A"
                              "grant-type%3Ajwt-bearer&assertion=";

    cr_assert_eq(uv_loop_init(&loop), 0);
    a = fake_auth(&f, &loop, sa_creds(key));
    cr_assert_null(gcp_auth_token(a));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gcp_auth_refresh(a, &w[i].req, on_token, &err), 0);
    /* Never called back inside the start call. */
    cr_assert_eq(w[0].calls + w[1].calls + w[2].calls, 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].status, 0);
    }
    cr_assert_eq(f.sends, 1);
    gcp_auth_get_stats(a, &st);
    cr_assert_eq(st.fetches, 1);
    cr_assert_eq(st.joined, 2);
    cr_assert_str_eq(kc_secret_reveal(gcp_auth_token(a), NULL), "tok-1");
    /* The request: a form POST with the JWT grant, signed for the URL. */
    cr_assert_str_eq(f.last_method, "POST");
    cr_assert_str_eq(f.last_url, "http://127.0.0.1:1/token");
    cr_assert_eq(
        strncmp(kc_buf_str(&f.last_body), form_prefix, strlen(form_prefix)), 0);
    assertion = kc_buf_str(&f.last_body) + strlen(form_prefix);
    cr_assert_eq(
        gcp_jwt_verify(assertion, strlen(assertion), key, NULL, &claims, &err),
        0, "%s", err.msg);
    cr_assert_str_eq(kc_json_opt_str(claims, "aud"),
                     "http://127.0.0.1:1/token");
    json_object_put(claims);
    /* Cached while fresh: 300 s before expiry it is due again. */
    f.now += 3600 - 301;
    cr_assert_not_null(gcp_auth_token(a));
    f.now += 2;
    cr_assert_null(gcp_auth_token(a));
    gcp_auth_free(a);
    fake_close(&f, &loop);
    EVP_PKEY_free(key);
}

Test(gcp_auth, invalidate_drops_only_the_refused_token, .timeout = 10)
{
    uv_loop_t loop;
    struct fake f = { 0 };
    EVP_PKEY *key = new_rsa();
    struct gcp_auth *a;
    struct waiter w = { 0 };
    struct kc_err err = { 0 };
    struct kc_secret *old;

    cr_assert_eq(uv_loop_init(&loop), 0);
    a = fake_auth(&f, &loop, sa_creds(key));
    cr_assert_eq(gcp_auth_refresh(a, &w.req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    old = kc_secret_dup(gcp_auth_token(a));
    /* A 401 with the current token: dropped, the next refresh fetches. */
    gcp_auth_invalidate(a, old);
    cr_assert_null(gcp_auth_token(a));
    f.resp = "{\"access_token\":\"tok-2\",\"expires_in\":3600}";
    cr_assert_eq(gcp_auth_refresh(a, &w.req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(w.calls, 2);
    cr_assert_str_eq(kc_secret_reveal(gcp_auth_token(a), NULL), "tok-2");
    /* A late 401 for the old token does not drop the new one. */
    gcp_auth_invalidate(a, old);
    cr_assert_str_eq(kc_secret_reveal(gcp_auth_token(a), NULL), "tok-2");
    cr_assert_eq(f.sends, 2);
    kc_secret_free(old);
    gcp_auth_free(a);
    fake_close(&f, &loop);
    EVP_PKEY_free(key);
}

Test(gcp_auth, failures_reach_every_waiter, .timeout = 10)
{
    uv_loop_t loop;
    struct fake f = { 0 };
    EVP_PKEY *key = new_rsa();
    struct gcp_auth *a;
    struct waiter w[2] = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    a = fake_auth(&f, &loop, sa_creds(key));
    f.code = 400;
    f.resp = "{\"error\":\"invalid_grant\",\"error_description\":"
             "\"Invalid JWT Signature.\"}";
    cr_assert_eq(gcp_auth_refresh(a, &w[0].req, on_token, &err), 0);
    cr_assert_eq(gcp_auth_refresh(a, &w[1].req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].status, KC_EREMOTE);
        cr_assert_not_null(strstr(w[i].req.err.msg, "Invalid JWT Signature"),
                           "%s", w[i].req.err.msg);
        cr_assert_not_null(strstr(w[i].req.err.msg, "test key"));
    }
    cr_assert_null(gcp_auth_token(a));
    /* A transport failure too. */
    f.fail = KC_EHTTP;
    cr_assert_eq(gcp_auth_refresh(a, &w[0].req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(w[0].status, KC_EHTTP);
    cr_assert_str_eq(w[0].req.err.msg, "connection refused");
    gcp_auth_free(a);
    fake_close(&f, &loop);
    EVP_PKEY_free(key);
}

Test(gcp_auth, authorized_user_and_metadata_requests, .timeout = 10)
{
    uv_loop_t loop;
    struct fake f = { 0 };
    struct gcp_auth *a;
    struct gcp_creds *c = NULL;
    struct gcp_creds_env env = { 0 };
    struct waiter w = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(gcp_creds_parse(user_json, strlen(user_json), "adc", &c, &err),
                 0);
    a = fake_auth(&f, &loop, c);
    cr_assert_eq(gcp_auth_refresh(a, &w.req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(w.status, 0);
    cr_assert_str_eq(kc_buf_str(&f.last_body),
                     "grant_type=refresh_token&client_id=cid.apps&"
                     "client_secret=csecret&refresh_token=1%2F%2Frt");
    gcp_auth_free(a);
    fake_close(&f, &loop);

    cr_assert_eq(uv_loop_init(&loop), 0);
    env.home = "/nonexistent";
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0);
    a = fake_auth(&f, &loop, c);
    cr_assert_eq(gcp_auth_refresh(a, &w.req, on_token, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(w.status, 0);
    cr_assert_str_eq(f.last_method, "GET");
    cr_assert_str_eq(f.last_url, "http://127.0.0.1:2/computeMetadata/v1/"
                                 "instance/service-accounts/default/token");
    cr_assert_str_eq(f.last_header, "Metadata-Flavor: Google");
    cr_assert_str_eq(kc_buf_str(&f.last_body), "");
    gcp_auth_free(a);
    fake_close(&f, &loop);
}

Test(gcp_auth, environment_token_is_used_and_never_refreshed, .timeout = 10)
{
    uv_loop_t loop;
    struct fake f = { 0 };
    struct gcp_auth *a;
    struct gcp_creds *c = NULL;
    struct gcp_creds_env env = { .access_token = "ya29.fromenv" };
    struct waiter w = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(gcp_creds_find(&env, &c, &err), 0);
    a = fake_auth(&f, &loop, c);
    cr_assert_str_eq(kc_secret_reveal(gcp_auth_token(a), NULL), "ya29.fromenv");
    f.now += 86400; /* no expiry known: still used */
    cr_assert_not_null(gcp_auth_token(a));
    gcp_auth_invalidate(a, gcp_auth_token(a));
    cr_assert_eq(gcp_auth_refresh(a, &w.req, on_token, &err), KC_EPERM);
    cr_assert_not_null(strstr(err.msg, "GOOGLE_OAUTH_ACCESS_TOKEN"));
    cr_assert_eq(f.sends, 0);
    cr_assert_eq(w.calls, 0);
    gcp_auth_free(a);
    fake_close(&f, &loop);
}
