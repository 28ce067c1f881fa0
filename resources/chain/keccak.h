/* resources/chain/keccak.h: Keccak-256 as Ethereum uses it (the original
 * Keccak padding 0x01...0x80, not the 0x06 of FIPS 202 SHA3-256).
 *
 * A zeroed struct chain_keccak is not valid: call chain_keccak_init().
 */
#ifndef KC_RESOURCES_CHAIN_KECCAK_H
#define KC_RESOURCES_CHAIN_KECCAK_H

#include "reconcile/kc.h"

#define CHAIN_KECCAK_RATE 136 /* bytes absorbed per permutation (1088 bits) */

struct chain_keccak {
    /* private */
    uint64_t st[25];
    uint8_t buf[CHAIN_KECCAK_RATE];
    size_t n; /* bytes in buf */
};

void chain_keccak_init(struct chain_keccak *k);
void chain_keccak_update(struct chain_keccak *k, const void *data, size_t len);
/* Writes the digest to OUT; K must be initialised again before reuse. */
void chain_keccak_final(struct chain_keccak *k, uint8_t out[32]);
/* One-shot Keccak-256 of LEN bytes of DATA. */
void chain_keccak256(const void *data, size_t len, uint8_t out[32]);
/* The 4-byte selector of a canonical signature ("owner()"). */
void chain_selector(const char *signature, uint8_t out[4]);

#endif
