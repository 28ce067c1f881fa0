/* resources/chain/signer.c: secp256k1 keys and signatures (libsecp256k1). */
#include "resources/chain/signer.h"

#include <ctype.h>

#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"

struct chain_signer {
    secp256k1_context *ctx;
    uint8_t key[32];
    uint8_t address[20];
};

void chain_address_from_pubkey(const uint8_t pub[64], uint8_t out[20])
{
    uint8_t h[32];

    chain_keccak256(pub, 64, h);
    memcpy(out, h + 12, 20);
}

static int pubkey_address(const secp256k1_context *ctx,
                          const secp256k1_pubkey *pk, uint8_t out[20])
{
    uint8_t ser[65];
    size_t n = sizeof(ser);

    if (!secp256k1_ec_pubkey_serialize(ctx, ser, &n, pk,
                                       SECP256K1_EC_UNCOMPRESSED) ||
        n != 65)
        return KC_ECRYPTO;
    chain_address_from_pubkey(ser + 1, out);
    return 0;
}

int chain_signer_new(const uint8_t key[32], struct chain_signer **out,
                     struct kc_err *err)
{
    struct chain_signer *s;
    secp256k1_pubkey pk;
    uint8_t seed[32];

    *out = NULL;
    s = kc_xcalloc(1, sizeof(*s));
    s->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (!s->ctx) {
        free(s);
        return kc_err_set(err, KC_ECRYPTO, "secp256k1: cannot create context");
    }
    /* Blinding against side channels, as the library recommends. */
    if (RAND_bytes(seed, sizeof(seed)) != 1 ||
        !secp256k1_context_randomize(s->ctx, seed)) {
        chain_signer_free(s);
        return kc_err_set(err, KC_ECRYPTO,
                          "secp256k1: cannot randomize the context");
    }
    if (!secp256k1_ec_seckey_verify(s->ctx, key)) {
        chain_signer_free(s);
        return kc_err_set(err, KC_EINVAL,
                          "private key is zero or not below the curve order");
    }
    memcpy(s->key, key, 32);
    if (!secp256k1_ec_pubkey_create(s->ctx, &pk, s->key) ||
        pubkey_address(s->ctx, &pk, s->address) < 0) {
        chain_signer_free(s);
        return kc_err_set(err, KC_ECRYPTO, "secp256k1: cannot derive the key");
    }
    *out = s;
    return 0;
}

int chain_signer_from_hex(const struct kc_secret *hex,
                          struct chain_signer **out, struct kc_err *err)
{
    size_t len;
    const char *p = kc_secret_reveal(hex, &len);
    uint8_t key[32];
    int ret;

    while (len > 0 && isspace((unsigned char)*p)) {
        p++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)p[len - 1]))
        len--;
    /* Decode without echoing the input in the error. */
    ret = chain_hex_decode_fixed(p, len, key, 32, "private key", NULL);
    if (ret < 0) {
        kc_memzero(key, sizeof(key));
        return kc_err_set(err, KC_EINVAL,
                          "private key: expected 64 hex digits (0x optional)");
    }
    ret = chain_signer_new(key, out, err);
    kc_memzero(key, sizeof(key));
    return ret;
}

void chain_signer_free(struct chain_signer *s)
{
    if (!s)
        return;
    if (s->ctx)
        secp256k1_context_destroy(s->ctx);
    kc_memzero(s, sizeof(*s));
    free(s);
}

const uint8_t *chain_signer_address(const struct chain_signer *s)
{
    return s->address;
}

int chain_signer_sign(const struct chain_signer *s, const uint8_t hash[32],
                      struct chain_sig *sig, struct kc_err *err)
{
    secp256k1_ecdsa_recoverable_signature rs;
    uint8_t compact[64];
    int recid = 0;

    /* NULL nonce function: secp256k1_nonce_function_rfc6979. */
    if (!secp256k1_ecdsa_sign_recoverable(s->ctx, &rs, hash, s->key, NULL,
                                          NULL) ||
        !secp256k1_ecdsa_recoverable_signature_serialize_compact(
            s->ctx, compact, &recid, &rs))
        return kc_err_set(err, KC_ECRYPTO, "secp256k1: signing failed");
    memcpy(sig->r, compact, 32);
    memcpy(sig->s, compact + 32, 32);
    sig->recid = recid;
    return 0;
}

int chain_recover_address(const uint8_t hash[32], const struct chain_sig *sig,
                          uint8_t out[20], struct kc_err *err)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_ecdsa_recoverable_signature rs;
    secp256k1_pubkey pk;
    uint8_t compact[64];
    int ret = 0;

    if (!ctx)
        return kc_err_set(err, KC_ECRYPTO, "secp256k1: cannot create context");
    memcpy(compact, sig->r, 32);
    memcpy(compact + 32, sig->s, 32);
    if (sig->recid < 0 || sig->recid > 3 ||
        !secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rs, compact,
                                                             sig->recid) ||
        !secp256k1_ecdsa_recover(ctx, &pk, &rs, hash) ||
        pubkey_address(ctx, &pk, out) < 0)
        ret = kc_err_set(err, KC_ECRYPTO, "secp256k1: cannot recover signer");
    secp256k1_context_destroy(ctx);
    return ret;
}
