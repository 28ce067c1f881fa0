/* reconcile/hex.c: hex digits. */
#include "reconcile/hex.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

void kc_hex_encode(const void *data, size_t len, char *out)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_lower[p[i] >> 4];
        out[2 * i + 1] = hex_lower[p[i] & 15];
    }
    out[2 * len] = '\0';
}

void kc_hex_sha256(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32)
        KC_BUG("sha256 failed");
    kc_hex_encode(md, 32, out);
}

int kc_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kc_hex_pct_encode(struct kc_buf *out, const char *s, size_t len)
{
    int ret = 0;

    for (size_t i = 0; i < len && ret == 0; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~') {
            ret = kc_buf_addch(out, (char)c);
        } else {
            char esc[3] = { '%', hex_upper[c >> 4], hex_upper[c & 15] };

            ret = kc_buf_add(out, esc, 3);
        }
    }
    return ret;
}

int kc_hex_uuid4(char out[37], struct kc_err *err)
{
    unsigned char b[16];
    size_t o = 0;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return kc_err_from_ssl(err, "cannot get random bytes");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        kc_hex_encode(b + i, 1, out + o);
        o += 2;
    }
    return 0;
}
