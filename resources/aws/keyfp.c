/* resources/aws/keyfp.c: the fingerprint EC2 gives an imported OpenSSH
 * public key, so kmsctl can tell whether an existing key pair is the one in
 * the manifest (and kmsctl-sim can compute the same). */
#include "resources/aws/aws.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

static void colon_hex(const unsigned char *md, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 3 * i, 4, "%02x%s", md[i], i + 1 < n ? ":" : "");
}

/* Reads one SSH wire string at *P (of *LEFT bytes). */
static bool ssh_string(const unsigned char **p, size_t *left,
                       const unsigned char **s, size_t *len)
{
    uint32_t n;

    if (*left < 4)
        return false;
    n = (uint32_t)(*p)[0] << 24 | (uint32_t)(*p)[1] << 16 |
        (uint32_t)(*p)[2] << 8 | (*p)[3];
    if (n > *left - 4)
        return false;
    *s = *p + 4;
    *len = n;
    *p += 4 + n;
    *left -= 4 + n;
    return true;
}

/* ImportKeyPair's fingerprint ("Describe your key pairs" in the EC2 user
 * guide): RSA: MD5 of the DER SubjectPublicKeyInfo; ED25519: base64 SHA-256
 * of the key blob (as ssh-keygen -l shows it, without "SHA256:"). *TYPE gets
 * "rsa" or "ed25519". Returns false if the material is not such a key. */
bool aws_key_import_fingerprint(const char *line, char *fp, size_t fpsize,
                                const char **type)
{
    char kind[32] = "", b64[8192] = "";
    unsigned char blob[6144], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const unsigned char *p = blob, *s;
    size_t left, len;
    int n;

    if (sscanf(line, "%31s %8191s", kind, b64) != 2)
        return false;
    n = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)strlen(b64));
    if (n <= 0)
        return false;
    left = (size_t)n;
    /* EVP_DecodeBlock counts the '=' padding as zero bytes. */
    for (size_t i = strlen(b64); i > 0 && b64[i - 1] == '='; i--)
        left--;
    if (!ssh_string(&p, &left, &s, &len) || len != strlen(kind) ||
        memcmp(s, kind, len) != 0)
        return false;
    if (strcmp(kind, "ssh-ed25519") == 0) {
        unsigned char out[64];
        size_t bloblen = (size_t)(p - blob);

        if (!ssh_string(&p, &left, &s, &len) || len != 32 || left != 0)
            return false;
        bloblen = (size_t)(p - blob);
        if (EVP_Digest(blob, bloblen, md, &mdlen, EVP_sha256(), NULL) != 1)
            return false;
        n = EVP_EncodeBlock(out, md, (int)mdlen);
        while (n > 0 && out[n - 1] == '=')
            n--;
        if ((size_t)n >= fpsize)
            return false;
        memcpy(fp, out, (size_t)n);
        fp[n] = '\0';
        *type = "ed25519";
        return true;
    }
    if (strcmp(kind, "ssh-rsa") == 0) {
        const unsigned char *e, *m;
        size_t elen, mlen;
        BIGNUM *bn_e, *bn_n;
        OSSL_PARAM_BLD *bld;
        OSSL_PARAM *params;
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *pkey = NULL;
        unsigned char *der = NULL;
        int derlen;

        if (!ssh_string(&p, &left, &e, &elen) ||
            !ssh_string(&p, &left, &m, &mlen) || left != 0 || mlen < 128)
            return false;
        bn_e = BN_bin2bn(e, (int)elen, NULL);
        bn_n = BN_bin2bn(m, (int)mlen, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!bn_e || !bn_n || !bld ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
            KC_BUG("openssl param build");
        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
            pkey = NULL;
        derlen = pkey ? i2d_PUBKEY(pkey, &der) : -1;
        if (derlen > 0 &&
            EVP_Digest(der, (size_t)derlen, md, &mdlen, EVP_md5(), NULL) == 1 &&
            fpsize >= 48)
            colon_hex(md, mdlen, fp);
        else
            derlen = -1;
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn_e);
        BN_free(bn_n);
        *type = "rsa";
        return derlen > 0;
    }
    return false;
}
