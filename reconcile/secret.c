/* reconcile/secret.c: secrets that wipe themselves and never print. */
#include "reconcile/secret.h"

#include <openssl/evp.h>

#include "reconcile/hex.h"

struct kc_secret {
    size_t len;
    char data[];
};

struct kc_secret *kc_secret_new(const void *data, size_t len)
{
    struct kc_secret *s = kc_xmalloc(sizeof(*s) + len + 1);

    s->len = len;
    if (len)
        memcpy(s->data, data, len);
    s->data[len] = '\0';
    return s;
}

struct kc_secret *kc_secret_dup(const struct kc_secret *s)
{
    return s ? kc_secret_new(s->data, s->len) : NULL;
}

const char *kc_secret_reveal(const struct kc_secret *s, size_t *len)
{
    if (len)
        *len = s ? s->len : 0;
    return s ? s->data : NULL;
}

size_t kc_secret_len(const struct kc_secret *s)
{
    return s ? s->len : 0;
}

void kc_secret_free(struct kc_secret *s)
{
    if (!s)
        return;
    kc_memzero(s->data, s->len);
    free(s);
}

void kc_secret_digest(const void *data, size_t len, const char *salt,
                      char out[72])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        (salt && EVP_DigestUpdate(ctx, salt, strlen(salt)) != 1) ||
        EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        KC_BUG("sha256 failed");
    EVP_MD_CTX_free(ctx);
    memcpy(out, "sha256:", 7);
    kc_hex_encode(md, 32, out + 7);
}
