/* resources/chain/keystore.h: Ethereum JSON keystore files, version 3 (the
 * Web3 Secret Storage Definition).
 *
 * The key is derived from the password with scrypt (OpenSSL EVP_PBE_scrypt)
 * or PBKDF2-HMAC-SHA256; the MAC keccak256(dk[16..32] || ciphertext) is
 * checked before anything is decrypted; the cipher is AES-128-CTR with
 * dk[0..16]. KDF parameters are bounded (KEYSTORE_MAX_*) so a hostile file
 * cannot make kmsctl allocate or spin without end.
 *
 * Decryption is deliberately slow (that is the point of the KDF): run it off
 * the loop thread (uv_queue_work) or before the loop starts.
 */
#ifndef KC_RESOURCES_CHAIN_KEYSTORE_H
#define KC_RESOURCES_CHAIN_KEYSTORE_H

#include <json-c/json.h>

#include "reconcile/kc.h"
#include "reconcile/secret.h"

#define KEYSTORE_MAX_SCRYPT_N  (1u << 20)
#define KEYSTORE_MAX_SCRYPT_RP 128 /* r * p */
/* 128 * r * n: geth's default (n = 2^18, r = 8) needs 256 MiB. */
#define KEYSTORE_MAX_SCRYPT_MEM (256u << 20)
#define KEYSTORE_MAX_PBKDF2_C   (1u << 24)
#define KEYSTORE_MAX_CIPHERTEXT 64

/* scrypt (RFC 7914) of PASSWORD and SALT into OUT. OpenSSL's EVP_PBE_scrypt
 * refuses n >= 2^(16 r), a bound of the RFC that Ethereum keystores ignore
 * (the Web3 Secret Storage test vector has n = 2^18, r = 1): those
 * parameters, or BUILTIN, use the implementation here (Salsa20/8 BlockMix
 * and ROMix of RFC 7914 around OpenSSL's PBKDF2-HMAC-SHA256). N must be a
 * power of 2 above 1; the caller bounds the memory, 128 * r * n bytes. */
int chain_scrypt(const void *password, size_t pwlen, const uint8_t *salt,
                 size_t saltlen, uint64_t n, uint64_t r, uint64_t p,
                 uint8_t *out, size_t outlen, bool builtin, struct kc_err *err);

/* Decrypts keystore JSON KS with PASSWORD into the 32-byte private KEY
 * (wipe it after use). WHAT names the file in errors. KC_EPERM for a wrong
 * password (MAC mismatch), KC_EINVAL for a malformed or unsupported file. If
 * the file has an "address", it must match the key's address. */
int chain_keystore_decrypt(struct json_object *ks,
                           const struct kc_secret *password, const char *what,
                           uint8_t key[32], struct kc_err *err);

#endif
