/* resources/chain/rlp.c: RLP encoder and strict decoder. */
#include "resources/chain/rlp.h"

static int rlp_add_header(struct kc_buf *buf, uint8_t short_base, size_t len)
{
    uint8_t hdr[9];
    size_t n = 0;

    if (len <= 55) {
        hdr[0] = (uint8_t)(short_base + len);
        return kc_buf_add(buf, hdr, 1);
    }
    for (size_t v = len; v > 0; v >>= 8)
        n++;
    hdr[0] = (uint8_t)(short_base + 55 + n);
    for (size_t i = 0; i < n; i++)
        hdr[1 + i] = (uint8_t)(len >> (8 * (n - 1 - i)));
    return kc_buf_add(buf, hdr, 1 + n);
}

int chain_rlp_add_bytes(struct kc_buf *buf, const void *data, size_t len)
{
    const uint8_t *p = data;
    int ret;

    if (len == 1 && p[0] < 0x80)
        return kc_buf_add(buf, p, 1);
    ret = rlp_add_header(buf, 0x80, len);
    if (ret == 0 && len > 0)
        ret = kc_buf_add(buf, p, len);
    return ret;
}

int chain_rlp_add_be(struct kc_buf *buf, const uint8_t *be, size_t n)
{
    while (n > 0 && be[0] == 0) {
        be++;
        n--;
    }
    return chain_rlp_add_bytes(buf, be, n);
}

int chain_rlp_add_uint(struct kc_buf *buf, uint64_t v)
{
    uint8_t be[8];

    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (8 * (7 - i)));
    return chain_rlp_add_be(buf, be, 8);
}

int chain_rlp_add_list(struct kc_buf *buf, const void *payload, size_t len)
{
    int ret = rlp_add_header(buf, 0xc0, len);

    if (ret == 0 && len > 0)
        ret = kc_buf_add(buf, payload, len);
    return ret;
}

int chain_rlp_next(const uint8_t *data, size_t len, size_t *pos,
                   struct chain_rlp_item *item, struct kc_err *err)
{
    size_t at = *pos, plen = 0, hdr = 1;
    uint8_t b;

    if (at >= len)
        return kc_err_set(err, KC_EPARSE, "rlp: no item at offset %zu", at);
    b = data[at];
    item->is_list = b >= 0xc0;
    if (b < 0x80) {
        item->p = data + at;
        item->len = 1;
        *pos = at + 1;
        return 0;
    }
    if (b <= 0xb7 || (b >= 0xc0 && b <= 0xf7)) {
        plen = b - (item->is_list ? 0xc0 : 0x80);
    } else {
        size_t n = b - (item->is_list ? 0xf7 : 0xb7);
        if (at + 1 + n > len)
            return kc_err_set(err, KC_EPARSE,
                              "rlp: length at offset %zu runs past the end",
                              at);
        if (data[at + 1] == 0)
            return kc_err_set(err, KC_EPARSE,
                              "rlp: length with a leading zero at offset %zu",
                              at);
        if (n > sizeof(size_t))
            return kc_err_set(err, KC_EPARSE,
                              "rlp: length too large at offset %zu", at);
        for (size_t i = 0; i < n; i++)
            plen = plen << 8 | data[at + 1 + i];
        if (plen <= 55)
            return kc_err_set(err, KC_EPARSE,
                              "rlp: long form for %zu bytes at offset %zu",
                              plen, at);
        hdr = 1 + n;
    }
    if (plen > len - at - hdr)
        return kc_err_set(err, KC_EPARSE,
                          "rlp: item at offset %zu runs past the end", at);
    if (!item->is_list && plen == 1 && data[at + hdr] < 0x80)
        return kc_err_set(err, KC_EPARSE,
                          "rlp: single byte below 0x80 wrapped at offset %zu",
                          at);
    item->p = data + at + hdr;
    item->len = plen;
    *pos = at + hdr + plen;
    return 0;
}

int chain_rlp_decode(const uint8_t *data, size_t len,
                     struct chain_rlp_item *item, struct kc_err *err)
{
    size_t pos = 0;
    int ret = chain_rlp_next(data, len, &pos, item, err);

    if (ret == 0 && pos != len)
        return kc_err_set(err, KC_EPARSE,
                          "rlp: %zu trailing bytes after the item", len - pos);
    return ret;
}

int chain_rlp_item_uint(const struct chain_rlp_item *item, uint64_t *out,
                        struct kc_err *err)
{
    uint64_t v = 0;

    if (item->is_list)
        return kc_err_set(err, KC_EPARSE,
                          "rlp: expected an integer, got a list");
    if (item->len > 8)
        return kc_err_set(err, KC_EPARSE, "rlp: integer over 64 bits");
    if (item->len > 0 && item->p[0] == 0)
        return kc_err_set(err, KC_EPARSE, "rlp: integer with a leading zero");
    for (size_t i = 0; i < item->len; i++)
        v = v << 8 | item->p[i];
    *out = v;
    return 0;
}
