/* resources/chain/rlp.h: Recursive Length Prefix encoding (Ethereum Yellow
 * Paper, appendix B).
 *
 * Encoding appends to a struct kc_buf. A list is encoded by building its
 * payload in a buffer of its own and wrapping it with chain_rlp_add_list().
 * Integers are big-endian with no leading zero bytes (0 is the empty string).
 *
 * Decoding is strict (canonical): a single byte below 0x80 must not be
 * wrapped, long forms must not be used for short payloads, lengths must have
 * no leading zeros and items must fit in their parent. Errors are
 * KC_EPARSE with the offset.
 */
#ifndef KC_RESOURCES_CHAIN_RLP_H
#define KC_RESOURCES_CHAIN_RLP_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

int chain_rlp_add_bytes(struct kc_buf *buf, const void *data, size_t len);
int chain_rlp_add_uint(struct kc_buf *buf, uint64_t v);
/* A big-endian integer of N bytes, leading zeros stripped. */
int chain_rlp_add_be(struct kc_buf *buf, const uint8_t *be, size_t n);
/* Wraps the encoded items of PAYLOAD (LEN bytes) as a list. */
int chain_rlp_add_list(struct kc_buf *buf, const void *payload, size_t len);

struct chain_rlp_item {
    bool is_list;
    const uint8_t *p; /* payload (borrowed from the input) */
    size_t len;
};

/* Reads the item at *POS of DATA[0..LEN) and advances *POS past it. */
int chain_rlp_next(const uint8_t *data, size_t len, size_t *pos,
                   struct chain_rlp_item *item, struct kc_err *err);
/* Decodes DATA as exactly one item (no trailing bytes). */
int chain_rlp_decode(const uint8_t *data, size_t len,
                     struct chain_rlp_item *item, struct kc_err *err);
/* The integer value of a string item (at most 8 bytes, canonical). */
int chain_rlp_item_uint(const struct chain_rlp_item *item, uint64_t *out,
                        struct kc_err *err);

#endif
