/* resources/chain/tx.h: Ethereum transactions, signed and serialised.
 *
 * Type 2 (EIP-1559): 0x02 || rlp([chain_id, nonce, max_priority_fee,
 * max_fee, gas, to, value, data, access_list, y_parity, r, s]), signing hash
 * keccak256(0x02 || rlp(first nine fields)). The access list is always empty.
 *
 * Legacy with EIP-155 replay protection: rlp([nonce, gas_price, gas, to,
 * value, data, v, r, s]) with v = recid + chain_id * 2 + 35, signing hash
 * keccak256(rlp([nonce, gas_price, gas, to, value, data, chain_id, 0, 0])).
 *
 * The transaction hash is keccak256 of the serialised signed transaction.
 */
#ifndef KC_RESOURCES_CHAIN_TX_H
#define KC_RESOURCES_CHAIN_TX_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "resources/chain/signer.h"

enum chain_tx_type {
    CHAIN_TX_LEGACY = 0,
    CHAIN_TX_EIP1559 = 2,
};

struct chain_tx {
    enum chain_tx_type type;
    uint64_t chain_id;
    uint64_t nonce;
    uint64_t gas;
    uint64_t gas_price;        /* legacy, wei */
    uint64_t max_priority_fee; /* EIP-1559, wei */
    uint64_t max_fee;          /* EIP-1559, wei */
    bool has_to;               /* false: contract creation */
    uint8_t to[20];
    uint8_t value[32];   /* big-endian wei */
    const uint8_t *data; /* borrowed */
    size_t data_len;
};

/* Appends the bytes that are hashed for signing to OUT. */
int chain_tx_signing_payload(const struct chain_tx *tx, struct kc_buf *out);
/* Signs TX with SIGNER: appends the serialised signed transaction to RAW and
 * writes its hash to HASH. */
int chain_tx_sign(const struct chain_tx *tx, const struct chain_signer *signer,
                  struct kc_buf *raw, uint8_t hash[32], struct kc_err *err);
/* Serialises TX with a given signature (for tests and re-broadcasts). */
int chain_tx_serialize(const struct chain_tx *tx, const struct chain_sig *sig,
                       struct kc_buf *raw, struct kc_err *err);

/* The address a CREATE from SENDER at NONCE makes:
 * keccak256(rlp([sender, nonce]))[12:]. */
void chain_create_address(const uint8_t sender[20], uint64_t nonce,
                          uint8_t out[20]);

#endif
