/* tests/unit/test_aws_sigv4.c: SigV4 against the published test suite
 * (tests/unit/vectors/aws_sigv4.txt), key derivation against the AWS
 * documentation's example, and the Authorization header parser. */
#include "resources/aws/aws.h"

#include "reconcile/file.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#define NVECTORS 19

static const char SUITE_SECRET[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

struct vector {
    char name[64];
    char method[8];
    char path[128];
    char query[256];
    struct aws_header headers[8];
    char *hbuf[8];
    size_t nheaders;
    char token[512];
    char body[64];
    char sts[65];
    char authorization[256];
};

static void vector_release(struct vector *v)
{
    for (size_t i = 0; i < v->nheaders; i++)
        free(v->hbuf[i]);
}

static void copy(char *dst, size_t size, const char *src)
{
    cr_assert_eq(kc_snprintf(dst, size, "%s", src), 0, "field too long: %s",
                 src);
}

/* Loads vector number INDEX (0-based); returns the number of vectors. */
static int load_vector(int index, struct vector *v)
{
    char *path =
        kc_xasprintf("%s/tests/unit/vectors/aws_sigv4.txt",
                     getenv("KC_SRC_DIR") ? getenv("KC_SRC_DIR") : ".");
    char *text = NULL, *line, *next;
    struct kc_err err = { 0 };
    int n = -1;

    memset(v, 0, sizeof(*v));
    cr_assert_eq(kc_file_read(path, 1 << 20, &text, NULL, &err), 0, "%s",
                 err.msg);
    for (line = text; line; line = next) {
        char *colon;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || !line[0])
            continue;
        colon = strstr(line, ": ");
        cr_assert_not_null(colon, "bad vector line '%s'", line);
        *colon = '\0';
        colon += 2;
        if (strcmp(line, "name") == 0)
            n++;
        if (n != index)
            continue;
        if (strcmp(line, "name") == 0) {
            copy(v->name, sizeof(v->name), colon);
        } else if (strcmp(line, "method") == 0) {
            copy(v->method, sizeof(v->method), colon);
        } else if (strcmp(line, "path") == 0) {
            copy(v->path, sizeof(v->path), colon);
        } else if (strcmp(line, "query") == 0) {
            copy(v->query, sizeof(v->query), colon);
        } else if (strcmp(line, "header") == 0) {
            char *sep = strchr(colon, ':');

            cr_assert_not_null(sep);
            cr_assert_lt(v->nheaders, 8);
            v->hbuf[v->nheaders] = kc_xstrdup(colon);
            sep = v->hbuf[v->nheaders] + (sep - colon);
            *sep = '\0';
            v->headers[v->nheaders].name = v->hbuf[v->nheaders];
            v->headers[v->nheaders].value = sep + 1;
            v->nheaders++;
        } else if (strcmp(line, "token") == 0) {
            copy(v->token, sizeof(v->token), colon);
        } else if (strcmp(line, "body") == 0) {
            copy(v->body, sizeof(v->body), colon);
        } else if (strcmp(line, "sts") == 0) {
            copy(v->sts, sizeof(v->sts), colon);
        } else if (strcmp(line, "authorization") == 0) {
            copy(v->authorization, sizeof(v->authorization), colon);
        } else {
            cr_assert_fail("unknown vector field '%s'", line);
        }
    }
    free(text);
    free(path);
    return n + 1;
}

Test(aws_sigv4, vector_file_holds_every_vector)
{
    struct vector v;

    cr_assert_eq(load_vector(0, &v), NVECTORS);
    vector_release(&v);
}

ParameterizedTestParameters(aws_sigv4, suite_vector_signs_as_published)
{
    static int idx[NVECTORS];

    for (int i = 0; i < NVECTORS; i++)
        idx[i] = i;
    return cr_make_param_array(int, idx, NVECTORS);
}

ParameterizedTest(int *i, aws_sigv4, suite_vector_signs_as_published)
{
    struct vector v;
    struct kc_secret *secret = kc_secret_new(SUITE_SECRET, 40);
    struct kc_buf auth = { 0 }, sts = { 0 };
    struct kc_err err = { 0 };
    struct aws_sigv4_req req = { 0 };

    load_vector(*i, &v);
    cr_assert(v.name[0], "vector %d missing", *i);
    if (v.token[0]) {
        /* post-sts-header-before: the token is a signed header. */
        v.headers[v.nheaders].name = "X-Amz-Security-Token";
        v.headers[v.nheaders].value = v.token;
        v.nheaders++;
    }
    req.method = v.method;
    req.path = v.path;
    req.query = v.query[0] ? v.query : NULL;
    req.headers = v.headers;
    req.nheaders = v.nheaders;
    req.body = v.body;
    req.body_len = strlen(v.body);
    req.amz_date = "20150830T123600Z";
    req.region = "us-east-1";
    req.service = "service";
    cr_assert_eq(
        aws_sigv4_authorization(&req, "AKIDEXAMPLE", secret, &auth, &err), 0,
        "%s: %s", v.name, err.msg);
    cr_assert_str_eq(kc_buf_str(&auth), v.authorization, "%s", v.name);
    if (v.sts[0]) {
        cr_assert_eq(aws_sigv4_string_to_sign(&req, &sts, &err), 0);
        cr_assert_not_null(strstr(kc_buf_str(&sts), v.sts), "%s: %s", v.name,
                           kc_buf_str(&sts));
    }
    if (v.token[0])
        v.nheaders--; /* the static header is not ours to free */
    vector_release(&v);
    kc_buf_release(&auth);
    kc_buf_release(&sts);
    kc_secret_free(secret);
}

Test(aws_sigv4, canonical_request_of_form_post_is_as_published)
{
    /* post-x-www-form-urlencoded's canonical request, from the suite. */
    static const char want[] =
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
    const struct aws_header h[] = {
        { "Content-Type", "application/x-www-form-urlencoded" },
        { "Host", "example.amazonaws.com" },
        { "X-Amz-Date", "20150830T123600Z" },
    };
    struct aws_sigv4_req req = {
        .method = "POST",
        .path = "/",
        .headers = h,
        .nheaders = 3,
        .body = "Param1=value1",
        .body_len = 13,
        .amz_date = "20150830T123600Z",
        .region = "us-east-1",
        .service = "service",
    };
    struct kc_buf out = { 0 }, sh = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(aws_sigv4_canonical_request(&req, &out, &sh, &err), 0);
    cr_assert_str_eq(kc_buf_str(&out), want);
    cr_assert_str_eq(kc_buf_str(&sh), "content-type;host;x-amz-date");
    kc_buf_release(&out);
    kc_buf_release(&sh);
}

Test(aws_sigv4, signing_key_matches_documentation_example)
{
    /* "Examples of how to derive a signing key": secret, 20150830,
     * us-east-1, iam; then the signature of that example's string to sign
     * (hashed canonical request f536975d...). */
    struct kc_secret *secret = kc_secret_new(SUITE_SECRET, 40);
    unsigned char key[32];
    char hex[65];

    aws_sigv4_signing_key(secret, "20150830", "us-east-1", "iam", key);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    cr_assert_str_eq(
        hex,
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    kc_secret_free(secret);
}

Test(aws_sigv4, changing_the_body_changes_the_signature)
{
    struct kc_secret *secret = kc_secret_new(SUITE_SECRET, 40);
    const struct aws_header h[] = {
        { "Host", "ec2.us-east-1.amazonaws.com" },
        { "X-Amz-Date", "20261125T100000Z" },
    };
    struct aws_sigv4_req req = {
        .method = "POST",
        .path = "/",
        .headers = h,
        .nheaders = 2,
        .body = "Action=DescribeVpcs",
        .body_len = 19,
        .amz_date = "20261125T100000Z",
        .region = "us-east-1",
        .service = "ec2",
    };
    char a[65], b[65];
    struct kc_err err = { 0 };

    cr_assert_eq(aws_sigv4_signature(&req, secret, a, &err), 0);
    req.body = "Action=DescribeVpct";
    cr_assert_eq(aws_sigv4_signature(&req, secret, b, &err), 0);
    cr_assert_str_neq(a, b);
    kc_secret_free(secret);
}

Test(aws_sigv4, bad_escape_in_query_is_an_error)
{
    const struct aws_header h[] = { { "Host", "x" } };
    struct aws_sigv4_req req = {
        .method = "GET",
        .path = "/",
        .query = "a=%G1",
        .headers = h,
        .nheaders = 1,
        .amz_date = "20150830T123600Z",
        .region = "us-east-1",
        .service = "service",
    };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(aws_sigv4_canonical_request(&req, &out, NULL, &err),
                 KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "escape"));
    kc_buf_release(&out);
}

Test(aws_sigv4, parses_the_authorization_it_produces)
{
    struct aws_sigv4_auth a;
    struct kc_err err = { 0 };

    cr_assert_eq(
        aws_sigv4_parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/"
            "service/aws4_request, SignedHeaders=host;x-amz-date, "
            "Signature="
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            &a, &err),
        0, "%s", err.msg);
    cr_assert_str_eq(a.access_key, "AKIDEXAMPLE");
    cr_assert_str_eq(a.date8, "20150830");
    cr_assert_str_eq(a.region, "us-east-1");
    cr_assert_str_eq(a.service, "service");
    cr_assert_str_eq(a.signed_headers, "host;x-amz-date");
    cr_assert_eq(strlen(a.signature), 64);
}

Test(aws_sigv4, rejects_malformed_authorization)
{
    static const char *const bad[] = {
        "AWS4-HMAC-SHA1 Credential=A/20150830/r/s/aws4_request, "
        "SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws5_request, "
        "SignedHeaders=host, Signature="
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, "
        "Signature="
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, "
        "SignedHeaders=host, Signature=short",
        "",
    };
    struct aws_sigv4_auth a;

    for (size_t i = 0; i < KC_ARRAY_SIZE(bad); i++) {
        struct kc_err err = { 0 };

        cr_assert_eq(aws_sigv4_parse_authorization(bad[i], &a, &err), KC_EINVAL,
                     "accepted '%s'", bad[i]);
        cr_assert(err.msg[0]);
    }
}

Test(aws_sigv4, amz_date_round_trips_and_rejects_garbage)
{
    char s[17];

    aws_sigv4_amz_date(1440938160, s);
    cr_assert_str_eq(s, "20150830T123600Z");
    cr_assert_eq(aws_sigv4_parse_amz_date(s), 1440938160);
    cr_assert_eq(aws_sigv4_parse_amz_date("20150830T1236000"), -1);
    cr_assert_eq(aws_sigv4_parse_amz_date("2015-08-30T12:36"), -1);
    cr_assert_eq(aws_sigv4_parse_amz_date(NULL), -1);
}

Test(aws_sigv4, uri_encode_keeps_only_unreserved)
{
    struct kc_buf b = { 0 };

    cr_assert_eq(aws_uri_encode(&b, "a b/~+*\xe1\x88\xb4", 10), 0);
    cr_assert_str_eq(kc_buf_str(&b), "a%20b%2F~%2B%2A%E1%88%B4");
    kc_buf_release(&b);
}
