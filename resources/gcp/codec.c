/* resources/gcp/codec.c: base64, CRC32C, percent-encoding and UUIDs. */
#include "resources/gcp/codec.h"

#include <pthread.h>

#include "reconcile/hex.h"

/* Slicing-by-8 tables for the reflected Castagnoli polynomial, built once
 * on first use (pthread_once: hashing runs on worker threads too). */
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc32c_init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                              crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t gcp_crc32c_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (pthread_once(&crc_table_once, crc32c_init_tables) != 0)
        KC_BUG("pthread_once failed");
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                             (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);

        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
              crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes into OUT, which holds 4 * ceil(LEN / 3) + 1 bytes. */
static size_t b64_into(const unsigned char *in, size_t len, bool url, char *out)
{
    const char *alpha = url ? b64_url : b64_std;
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        if (!url) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

void gcp_crc32c_b64(uint32_t crc, char out[GCP_CRC32C_B64_LEN])
{
    unsigned char be[4] = { crc >> 24, crc >> 16, crc >> 8, crc };

    b64_into(be, sizeof(be), false, out);
}

void gcp_md5_b64(const unsigned char md5[16], char out[GCP_MD5_B64_LEN])
{
    b64_into(md5, 16, false, out);
}

int gcp_b64_encode(const void *data, size_t len, bool url, struct kc_buf *out)
{
    const unsigned char *p = data;
    char chunk[4 * 256 + 1];
    int ret = 0;

    /* Whole groups of 3 bytes per chunk, so padding only comes at the end. */
    while (len > 0 && ret == 0) {
        size_t n = len > 768 ? 768 : len;
        size_t m = b64_into(p, n, url, chunk);

        ret = kc_buf_add(out, chunk, m);
        p += n;
        len -= n;
    }
    return ret;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int gcp_b64_decode(const char *text, size_t len, struct kc_buf *out,
                   struct kc_err *err)
{
    uint32_t acc = 0;
    int bits = 0, ret;
    size_t i, n = len;

    while (n > 0 && text[n - 1] == '=')
        n--;
    if (len - n > 2 || (len != n && len % 4 != 0) || n % 4 == 1)
        return kc_err_set(err, KC_EPARSE, "base64: bad length %zu", len);
    for (i = 0; i < n; i++) {
        int v = b64_value(text[i]);
        unsigned char byte;

        if (v < 0)
            return kc_err_set(err, KC_EPARSE,
                              "base64: invalid character at offset %zu", i);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            byte = (unsigned char)(acc >> bits);
            ret = kc_buf_add(out, &byte, 1);
            if (ret < 0)
                return kc_err_set(err, ret, "base64: output too large");
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return kc_err_set(err, KC_EPARSE, "base64: non-zero trailing bits");
    return 0;
}

int gcp_pct_encode(const char *s, size_t len, struct kc_buf *out)
{
    return kc_hex_pct_encode(out, s, len);
}

int gcp_uuid4(char out[GCP_UUID_LEN], struct kc_err *err)
{
    return kc_hex_uuid4(out, err);
}
