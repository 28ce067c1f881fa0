/* resources/chain/hex.c: hex strings, quantities, addresses. */
#include "resources/chain/hex.h"

#include <ctype.h>

#include "reconcile/hex.h"
#include "resources/chain/keccak.h"

static const char hex_digits[] = "0123456789abcdef";

void chain_hex_encode(const void *data, size_t len, bool prefix, char *out,
                      size_t outsz)
{
    size_t o = 0;

    if (outsz < 2 * len + 1 + (prefix ? 2 : 0))
        KC_BUG("hex buffer of %zu bytes for %zu bytes", outsz, len);
    if (prefix) {
        out[o++] = '0';
        out[o++] = 'x';
    }
    kc_hex_encode(data, len, out + o);
}

int chain_hex_add(struct kc_buf *buf, const void *data, size_t len)
{
    const uint8_t *p = data;
    int ret = kc_buf_add(buf, "0x", 2);

    for (size_t i = 0; i < len && ret == 0; i++) {
        char two[3];

        kc_hex_encode(p + i, 1, two);
        ret = kc_buf_add(buf, two, 2);
    }
    return ret;
}

static void skip_prefix(const char **s, size_t *slen)
{
    if (*slen >= 2 && (*s)[0] == '0' && ((*s)[1] == 'x' || (*s)[1] == 'X')) {
        *s += 2;
        *slen -= 2;
    }
}

static int hex_decode_into(const char *s, size_t slen, uint8_t *out,
                           const char *what, struct kc_err *err)
{
    for (size_t i = 0; i < slen; i += 2) {
        int hi = kc_hex_digit((unsigned char)s[i]);
        int lo = kc_hex_digit((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return kc_err_set(
                err, KC_EINVAL, "%s: '%c%c' at offset %zu is not hex", what,
                isprint((unsigned char)s[i]) ? s[i] : '?',
                isprint((unsigned char)s[i + 1]) ? s[i + 1] : '?', i);
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int chain_hex_decode_fixed(const char *s, size_t slen, uint8_t *out, size_t n,
                           const char *what, struct kc_err *err)
{
    skip_prefix(&s, &slen);
    if (slen != 2 * n)
        return kc_err_set(err, KC_EINVAL,
                          "%s: expected %zu hex digits, got %zu", what, 2 * n,
                          slen);
    return hex_decode_into(s, slen, out, what, err);
}

int chain_hex_decode_alloc(const char *s, size_t max, uint8_t **out,
                           size_t *len, const char *what, struct kc_err *err)
{
    size_t slen = strlen(s);
    uint8_t *p;
    int ret;

    *out = NULL;
    *len = 0;
    skip_prefix(&s, &slen);
    if (slen % 2)
        return kc_err_set(err, KC_EINVAL, "%s: odd number of hex digits", what);
    if (slen / 2 > max)
        return kc_err_set(err, KC_ERANGE, "%s: %zu bytes, more than %zu", what,
                          slen / 2, max);
    p = kc_xmalloc(slen / 2 + 1);
    ret = hex_decode_into(s, slen, p, what, err);
    if (ret < 0) {
        free(p);
        return ret;
    }
    *out = p;
    *len = slen / 2;
    return 0;
}

static int quantity_digits(const char **s, size_t *n, const char *what,
                           struct kc_err *err)
{
    if (!*s || strncmp(*s, "0x", 2) != 0)
        return kc_err_set(err, KC_EINVAL, "%s: expected a 0x quantity", what);
    *s += 2;
    *n = strlen(*s);
    if (*n == 0)
        return kc_err_set(err, KC_EINVAL, "%s: empty quantity", what);
    for (size_t i = 0; i < *n; i++)
        if (kc_hex_digit((unsigned char)(*s)[i]) < 0)
            return kc_err_set(err, KC_EINVAL, "%s: quantity is not hex", what);
    /* Skip leading zeros: some nodes send "0x00". */
    while (*n > 1 && (*s)[0] == '0') {
        (*s)++;
        (*n)--;
    }
    return 0;
}

int chain_quantity_parse(const char *s, uint64_t *out, const char *what,
                         struct kc_err *err)
{
    size_t n;
    uint64_t v = 0;
    int ret = quantity_digits(&s, &n, what, err);

    if (ret < 0)
        return ret;
    if (n > 16)
        return kc_err_set(err, KC_ERANGE, "%s: quantity over 64 bits", what);
    for (size_t i = 0; i < n; i++)
        v = v << 4 | (uint64_t)kc_hex_digit((unsigned char)s[i]);
    *out = v;
    return 0;
}

int chain_quantity_parse_u256(const char *s, uint8_t out[32], const char *what,
                              struct kc_err *err)
{
    size_t n;
    int ret = quantity_digits(&s, &n, what, err);

    if (ret < 0)
        return ret;
    if (n > 64)
        return kc_err_set(err, KC_ERANGE, "%s: quantity over 256 bits", what);
    memset(out, 0, 32);
    for (size_t i = 0; i < n; i++) {
        size_t nib = n - 1 - i; /* nibble index from the right */
        int v = kc_hex_digit((unsigned char)s[i]);
        out[31 - nib / 2] |= (uint8_t)(nib % 2 ? v << 4 : v);
    }
    return 0;
}

void chain_quantity_format(uint64_t v, char out[19])
{
    int shift = 60;
    size_t o = 2;

    out[0] = '0';
    out[1] = 'x';
    while (shift > 0 && ((v >> shift) & 15) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        out[o++] = hex_digits[(v >> shift) & 15];
    out[o] = '\0';
}

int chain_address_parse(const char *s, uint8_t out[20], const char *what,
                        struct kc_err *err)
{
    size_t slen = strlen(s);
    bool upper = false, lower = false;
    char want[43];
    int ret;

    skip_prefix(&s, &slen);
    ret = chain_hex_decode_fixed(s, slen, out, 20, what, err);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < slen; i++) {
        upper |= s[i] >= 'A' && s[i] <= 'F';
        lower |= s[i] >= 'a' && s[i] <= 'f';
    }
    if (upper && lower) {
        chain_address_format(out, want);
        if (memcmp(want + 2, s, 40) != 0)
            return kc_err_set(err, KC_EINVAL,
                              "%s: bad EIP-55 checksum (expected %s)", what,
                              want);
    }
    return 0;
}

void chain_address_format(const uint8_t addr[20], char out[43])
{
    char lower[41];
    uint8_t h[32];

    chain_hex_encode(addr, 20, false, lower, sizeof(lower));
    chain_keccak256(lower, 40, h);
    out[0] = '0';
    out[1] = 'x';
    for (int i = 0; i < 40; i++) {
        int nib = i % 2 ? h[i / 2] & 15 : h[i / 2] >> 4;
        char c = lower[i];
        out[2 + i] = (c >= 'a' && nib >= 8) ? (char)(c - 'a' + 'A') : c;
    }
    out[42] = '\0';
}

void chain_u256_from_u64(uint64_t v, uint8_t out[32])
{
    memset(out, 0, 32);
    for (int i = 0; i < 8; i++)
        out[31 - i] = (uint8_t)(v >> (8 * i));
}

int chain_u256_to_u64(const uint8_t v[32], uint64_t *out)
{
    uint64_t r = 0;

    if (!chain_is_zero(v, 24))
        return KC_ERANGE;
    for (int i = 24; i < 32; i++)
        r = r << 8 | v[i];
    *out = r;
    return 0;
}

bool chain_is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t acc = 0;

    for (size_t i = 0; i < n; i++)
        acc |= b[i];
    return acc == 0;
}
