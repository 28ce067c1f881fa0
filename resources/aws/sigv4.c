/* resources/aws/sigv4.c: AWS Signature Version 4 (signing and parsing).
 *
 * The algorithm follows "Create a signed AWS API request"
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/
 * reference_sigv-create-signed-request.html) and is checked against the
 * published SigV4 test suite (tests/unit/vectors/aws_sigv4.txt).
 */
#include "resources/aws/aws.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "reconcile/hex.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

static void hmac256(const void *key, size_t keylen, const void *msg,
                    size_t msglen, unsigned char out[32])
{
    unsigned int outlen = 0;

    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) ||
        outlen != 32)
        KC_BUG("hmac-sha256 failed");
}

/* UriEncode() of the SigV4 documentation: "URI encode every byte except the
 * unreserved characters: 'A'-'Z', 'a'-'z', '0'-'9', '-', '.', '_', and '~'",
 * "the space character ... must be encoded as %20 (and not as '+')", "letters
 * in the hexadecimal value must be uppercase". */
int aws_uri_encode(struct kc_buf *out, const char *s, size_t len)
{
    return kc_hex_pct_encode(out, s, len);
}

int aws_uri_decode(struct kc_buf *out, const char *s, size_t len, bool form)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ret;

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return KC_EINVAL;
            hi = kc_hex_digit((unsigned char)s[i + 1]);
            lo = kc_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return KC_EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && form) {
            c = ' ';
        }
        ret = kc_buf_addch(out, c);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* ------------------------------------------------------------------ */

struct qparam {
    char *key; /* encoded */
    char *value;
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : strcmp(x->value, y->value);
}

/* Re-encodes one component of the query as sent: decode, then UriEncode, so
 * that "a b", "a%20b" and "a%20b" all canonicalise alike. */
static int reencode(const char *s, size_t len, char **out)
{
    struct kc_buf dec = { 0 }, enc = { 0 };
    int ret;

    ret = aws_uri_decode(&dec, s, len, false);
    if (ret == 0)
        ret = aws_uri_encode(&enc, kc_buf_str(&dec), dec.len);
    kc_buf_release(&dec);
    if (ret < 0) {
        kc_buf_release(&enc);
        return ret;
    }
    *out = enc.data ? kc_buf_detach(&enc, NULL) : kc_xstrdup("");
    return 0;
}

/* "Sort the parameter names by character code point in ascending order.
 * Parameters with duplicate names should be sorted by value." Names and values
 * are URI-encoded; a name without a value gets an empty value. */
static int canonical_query(const char *query, struct kc_buf *out,
                           struct kc_err *err)
{
    struct qparam *params = NULL;
    size_t n = 0, cap = 0;
    const char *p = query;
    int ret = 0;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;

        if (len > 0) {
            kc_xgrow(&params, &cap, n + 1, sizeof(*params));
            params[n].key = NULL;
            params[n].value = NULL;
            ret = reencode(p, klen, &params[n].key);
            if (ret == 0)
                ret = eq ? reencode(eq + 1, len - klen - 1, &params[n].value)
                         : reencode("", 0, &params[n].value);
            n++;
            if (ret < 0) {
                kc_err_set(err, KC_EINVAL, "query string: bad %%-escape");
                goto out;
            }
        }
        p = amp ? amp + 1 : NULL;
    }
    if (n > 1)
        qsort(params, n, sizeof(*params), qparam_cmp);
    for (size_t i = 0; i < n; i++) {
        if ((i && kc_buf_addch(out, '&') < 0) ||
            kc_buf_addstr(out, params[i].key) < 0 ||
            kc_buf_addch(out, '=') < 0 ||
            kc_buf_addstr(out, params[i].value) < 0) {
            ret = kc_err_set(err, KC_ERANGE, "query string too long");
            goto out;
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(params[i].key);
        free(params[i].value);
    }
    free(params);
    return ret;
}

struct cheader {
    char *name; /* lower case */
    const char *value;
    size_t order; /* stable sort: duplicates keep their order */
};

static int cheader_cmp(const void *a, const void *b)
{
    const struct cheader *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Trim(): "remove any leading or trailing whitespace"; sequential spaces in
 * the value are converted to a single space (the test suite's
 * get-header-value-trim). */
static int add_trimmed(struct kc_buf *out, const char *v)
{
    const char *end = v + strlen(v);
    bool space = false;

    while (v < end && isspace((unsigned char)*v))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    for (; v < end; v++) {
        if (isspace((unsigned char)*v)) {
            space = true;
            continue;
        }
        if (space && kc_buf_addch(out, ' ') < 0)
            return KC_ERANGE;
        space = false;
        if (kc_buf_addch(out, *v) < 0)
            return KC_ERANGE;
    }
    return 0;
}

/* CanonicalHeaders: "Lowercase(<HeaderName>)+':'+Trim(<value>)+'\n'" sorted by
 * name; a header given more than once has its values joined with ','. */
static int canonical_headers(const struct aws_sigv4_req *req,
                             struct kc_buf *out, struct kc_buf *signed_headers,
                             struct kc_err *err)
{
    struct cheader h[AWS_SIGV4_MAX_HEADERS];
    size_t n = req->nheaders;
    int ret = 0;

    if (n > AWS_SIGV4_MAX_HEADERS)
        return kc_err_set(err, KC_ERANGE, "more than %d headers to sign",
                          AWS_SIGV4_MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        h[i].name = kc_xstrdup(req->headers[i].name);
        for (char *c = h[i].name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        h[i].value = req->headers[i].value ? req->headers[i].value : "";
        h[i].order = i;
    }
    if (n > 1)
        qsort(h, n, sizeof(*h), cheader_cmp);
    for (size_t i = 0; i < n && ret == 0; i++) {
        bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;

        if (same) {
            /* Replace the previous '\n' with ',' and append the value. */
            out->data[out->len - 1] = ',';
        } else {
            if (signed_headers &&
                ((signed_headers->len && kc_buf_addch(signed_headers, ';')) ||
                 kc_buf_addstr(signed_headers, h[i].name) < 0))
                ret = KC_ERANGE;
            if (kc_buf_addstr(out, h[i].name) < 0 || kc_buf_addch(out, ':') < 0)
                ret = KC_ERANGE;
        }
        if (ret == 0 &&
            (add_trimmed(out, h[i].value) < 0 || kc_buf_addch(out, '\n') < 0))
            ret = KC_ERANGE;
    }
    for (size_t i = 0; i < n; i++)
        free(h[i].name);
    if (ret < 0)
        return kc_err_set(err, ret, "canonical headers too long");
    return 0;
}

int aws_sigv4_canonical_request(const struct aws_sigv4_req *req,
                                struct kc_buf *out,
                                struct kc_buf *signed_headers,
                                struct kc_err *err)
{
    struct kc_buf sh = { 0 };
    const char *path = req->path && *req->path ? req->path : "/";
    char payload[65];
    int ret;

    if (!req->method || !*req->method)
        return kc_err_set(err, KC_EINVAL, "sigv4: no method");
    /* CanonicalURI: the URI-encoded path, '/' kept. EC2 always uses "/". */
    ret = kc_buf_addstr(out, req->method) < 0 || kc_buf_addch(out, '\n') < 0;
    for (const char *p = path; ret == 0 && *p; p++) {
        if (*p == '/')
            ret = kc_buf_addch(out, '/');
        else
            ret = aws_uri_encode(out, p, 1);
    }
    if (ret != 0 || kc_buf_addch(out, '\n') < 0)
        return kc_err_set(err, KC_ERANGE, "canonical request too long");
    ret = canonical_query(req->query, out, err);
    if (ret < 0)
        return ret;
    if (kc_buf_addch(out, '\n') < 0)
        return kc_err_set(err, KC_ERANGE, "canonical request too long");
    ret = canonical_headers(req, out, &sh, err);
    if (ret < 0)
        goto out;
    if (req->payload_hash)
        ret = kc_snprintf(payload, sizeof(payload), "%s", req->payload_hash);
    else
        kc_hex_sha256(req->body ? req->body : "", req->body_len, payload);
    if (ret < 0 || kc_buf_addch(out, '\n') < 0 ||
        kc_buf_add(out, sh.data ? sh.data : "", sh.len) < 0 ||
        kc_buf_addch(out, '\n') < 0 || kc_buf_addstr(out, payload) < 0) {
        ret = kc_err_set(err, KC_ERANGE, "canonical request too long");
        goto out;
    }
    if (signed_headers && kc_buf_add(signed_headers, kc_buf_str(&sh), sh.len))
        ret = kc_err_set(err, KC_ERANGE, "signed headers too long");
out:
    kc_buf_release(&sh);
    return ret;
}

static int check_scope(const struct aws_sigv4_req *req, struct kc_err *err)
{
    if (!req->amz_date || aws_sigv4_parse_amz_date(req->amz_date) == -1)
        return kc_err_set(err, KC_EINVAL, "sigv4: bad X-Amz-Date '%s'",
                          req->amz_date ? req->amz_date : "");
    if (!req->region || !*req->region || strchr(req->region, '/'))
        return kc_err_set(err, KC_EINVAL, "sigv4: bad region");
    if (!req->service || !*req->service || strchr(req->service, '/'))
        return kc_err_set(err, KC_EINVAL, "sigv4: bad service");
    return 0;
}

/* StringToSign = Algorithm \n RequestDateTime \n CredentialScope \n
 * HashedCanonicalRequest; CredentialScope = date8/region/service/aws4_request.
 */
int aws_sigv4_string_to_sign(const struct aws_sigv4_req *req,
                             struct kc_buf *out, struct kc_err *err)
{
    struct kc_buf creq = { 0 };
    char hash[65];
    int ret;

    ret = check_scope(req, err);
    if (ret == 0)
        ret = aws_sigv4_canonical_request(req, &creq, NULL, err);
    if (ret < 0)
        goto out;
    kc_hex_sha256(kc_buf_str(&creq), creq.len, hash);
    if (kc_buf_addf(out, SIGV4_ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s",
                    req->amz_date, req->amz_date, req->region, req->service,
                    hash) < 0)
        ret = kc_err_set(err, KC_ERANGE, "string to sign too long");
out:
    kc_buf_release(&creq);
    return ret;
}

void aws_sigv4_signing_key(const struct kc_secret *secret, const char *date8,
                           const char *region, const char *service,
                           unsigned char key[32])
{
    size_t slen = 0;
    const char *s = kc_secret_reveal(secret, &slen);
    unsigned char *k = kc_xmalloc(slen + 4);
    unsigned char kdate[32], kregion[32], kservice[32];

    memcpy(k, "AWS4", 4);
    if (slen)
        memcpy(k + 4, s, slen);
    hmac256(k, slen + 4, date8, strlen(date8), kdate);
    hmac256(kdate, 32, region, strlen(region), kregion);
    hmac256(kregion, 32, service, strlen(service), kservice);
    hmac256(kservice, 32, "aws4_request", 12, key);
    kc_memzero(k, slen + 4);
    kc_memzero(kdate, sizeof(kdate));
    kc_memzero(kregion, sizeof(kregion));
    kc_memzero(kservice, sizeof(kservice));
    free(k);
}

int aws_sigv4_signature(const struct aws_sigv4_req *req,
                        const struct kc_secret *secret, char sig[65],
                        struct kc_err *err)
{
    struct kc_buf sts = { 0 };
    unsigned char key[32], mac[32];
    char date8[9];
    int ret;

    ret = aws_sigv4_string_to_sign(req, &sts, err);
    if (ret < 0)
        goto out;
    memcpy(date8, req->amz_date, 8);
    date8[8] = '\0';
    aws_sigv4_signing_key(secret, date8, req->region, req->service, key);
    hmac256(key, 32, kc_buf_str(&sts), sts.len, mac);
    kc_hex_encode(mac, 32, sig);
    kc_memzero(key, sizeof(key));
out:
    kc_buf_release(&sts);
    return ret;
}

int aws_sigv4_authorization(const struct aws_sigv4_req *req,
                            const char *access_key,
                            const struct kc_secret *secret, struct kc_buf *out,
                            struct kc_err *err)
{
    struct kc_buf creq = { 0 }, sh = { 0 };
    char sig[65];
    int ret;

    if (!access_key || !*access_key || strchr(access_key, '/') ||
        strchr(access_key, ','))
        return kc_err_set(err, KC_EINVAL, "sigv4: bad access key id");
    ret = aws_sigv4_canonical_request(req, &creq, &sh, err);
    if (ret == 0)
        ret = aws_sigv4_signature(req, secret, sig, err);
    if (ret == 0 &&
        kc_buf_addf(out,
                    SIGV4_ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, "
                                    "SignedHeaders=%s, Signature=%s",
                    access_key, req->amz_date, req->region, req->service,
                    kc_buf_str(&sh), sig) < 0)
        ret = kc_err_set(err, KC_ERANGE, "authorization header too long");
    kc_buf_release(&creq);
    kc_buf_release(&sh);
    return ret;
}

void aws_sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        KC_BUG("cannot format time %lld", (long long)t);
}

time_t aws_sigv4_parse_amz_date(const char *s)
{
    struct tm tm = { 0 };
    const char *end;

    if (!s || strlen(s) != 16)
        return -1;
    for (int i = 0; i < 16; i++) {
        bool want_digit = i != 8 && i != 15;

        if (want_digit != (bool)isdigit((unsigned char)s[i]))
            return -1;
    }
    if (s[8] != 'T' || s[15] != 'Z')
        return -1;
    end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || *end)
        return -1;
    return timegm(&tm);
}

/* Copies the text between P and the next DELIM (or the end) into DST. */
static const char *take_field(const char *p, char delim, char *dst, size_t size)
{
    const char *end = strchr(p, delim);
    size_t len = end ? (size_t)(end - p) : strlen(p);

    if (len == 0 || len >= size)
        return NULL;
    memcpy(dst, p, len);
    dst[len] = '\0';
    return end ? end + 1 : p + len;
}

int aws_sigv4_parse_authorization(const char *value, struct aws_sigv4_auth *out,
                                  struct kc_err *err)
{
    static const char alg[] = SIGV4_ALGORITHM " ";
    const char *p = value;
    char terminal[32];
    bool cred = false, sh = false, sig = false;

    memset(out, 0, sizeof(*out));
    if (!p || strncmp(p, alg, sizeof(alg) - 1) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "authorization header is not " SIGV4_ALGORITHM);
    p += sizeof(alg) - 1;
    while (*p) {
        char part[768];
        const char *next;

        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        next = take_field(p, ',', part, sizeof(part));
        if (!next)
            return kc_err_set(err, KC_EINVAL,
                              "authorization header: bad "
                              "component");
        if (strncmp(part, "Credential=", 11) == 0) {
            const char *c = part + 11;

            if (!(c = take_field(c, '/', out->access_key,
                                 sizeof(out->access_key))) ||
                !(c = take_field(c, '/', out->date8, sizeof(out->date8))) ||
                !(c = take_field(c, '/', out->region, sizeof(out->region))) ||
                !(c = take_field(c, '/', out->service, sizeof(out->service))) ||
                !(c = take_field(c, '/', terminal, sizeof(terminal))) || *c ||
                strcmp(terminal, "aws4_request") != 0 ||
                strlen(out->date8) != 8)
                return kc_err_set(err, KC_EINVAL,
                                  "authorization header: bad Credential");
            cred = true;
        } else if (strncmp(part, "SignedHeaders=", 14) == 0) {
            if (kc_snprintf(out->signed_headers, sizeof(out->signed_headers),
                            "%s", part + 14) < 0 ||
                !out->signed_headers[0])
                return kc_err_set(err, KC_EINVAL,
                                  "authorization header: bad SignedHeaders");
            sh = true;
        } else if (strncmp(part, "Signature=", 10) == 0) {
            if (strlen(part + 10) != 64 ||
                kc_snprintf(out->signature, sizeof(out->signature), "%s",
                            part + 10) < 0)
                return kc_err_set(err, KC_EINVAL,
                                  "authorization header: bad Signature");
            sig = true;
        } else {
            return kc_err_set(err, KC_EINVAL,
                              "authorization header: unknown component");
        }
        p = next;
    }
    if (!cred || !sh || !sig)
        return kc_err_set(err, KC_EINVAL, "authorization header: missing %s",
                          !cred ? "Credential"
                          : !sh ? "SignedHeaders"
                                : "Signature");
    return 0;
}
