/* resources/chain/signer.h: a secp256k1 key that signs Ethereum hashes.
 *
 * Signatures come from libsecp256k1: recoverable, low-s (the library only
 * produces lower-S signatures), nonces by RFC 6979 (its default nonce
 * function). The private key lives only inside the signer and is wiped on
 * free; nothing here prints it.
 */
#ifndef KC_RESOURCES_CHAIN_SIGNER_H
#define KC_RESOURCES_CHAIN_SIGNER_H

#include "reconcile/kc.h"
#include "reconcile/secret.h"

struct chain_signer;

struct chain_sig {
    uint8_t r[32];
    uint8_t s[32];
    int recid; /* 0 or 1: the parity of R's y coordinate */
};

/* A signer for the 32-byte private key KEY. KC_EINVAL if KEY is zero or not
 * below the curve order. Caller frees. */
int chain_signer_new(const uint8_t key[32], struct chain_signer **out,
                     struct kc_err *err);
/* A signer for a hex private key (64 digits, "0x" optional, surrounding
 * whitespace ignored). The error never contains the key. */
int chain_signer_from_hex(const struct kc_secret *hex,
                          struct chain_signer **out, struct kc_err *err);
void chain_signer_free(struct chain_signer *s);

/* The signer's address (20 bytes), borrowed. */
const uint8_t *chain_signer_address(const struct chain_signer *s);
/* Signs the 32-byte HASH. */
int chain_signer_sign(const struct chain_signer *s, const uint8_t hash[32],
                      struct chain_sig *sig, struct kc_err *err);

/* The address of an uncompressed public key (64 bytes X || Y). */
void chain_address_from_pubkey(const uint8_t pub[64], uint8_t out[20]);
/* Recovers the address that signed HASH with SIG. */
int chain_recover_address(const uint8_t hash[32], const struct chain_sig *sig,
                          uint8_t out[20], struct kc_err *err);

#endif
