/* resources/dstack/envcrypt.h: .encrypted-env for key_provider kms
 * (reference/dstack.md §1.2 GetAppEnvEncryptPubKey, §5.2 step 3).
 *
 * The KMS gives each app an X25519 public key, signed by its root k256 key.
 * dstack_env_pubkey_verify() checks that signature against the KMS key the
 * manifest or the state pins (33-byte compressed secp256k1 key, as GetMeta's
 * k256_pubkey); dstack_env_encrypt() then encrypts the variables to that key:
 *
 *   plaintext  = {"env": [{"key": K, "value": V}, ...]}  (json.dumps style)
 *   shared     = X25519(fresh ephemeral private key, app public key)
 *   ciphertext = AES-256-GCM(key = shared, 12-byte random IV, no AAD)
 *   file       = ephemeral public key (32) || IV (12) || ciphertext || tag (16)
 *
 * written as raw bytes to .encrypted-env (as dstack-cloud's _encrypt_env
 * does; the tag is the last 16 bytes, as Python's AESGCM appends it). The
 * guest keeps only the variables
 * that app-compose.json lists in allowed_envs: list the keys there.
 *
 * Fetching the key: resources/dstack/kmsrpc.h (GetAppEnvEncryptPubKey)
 * passes the response JSON to dstack_env_pubkey_from_json().
 */
#ifndef KC_RESOURCES_DSTACK_ENVCRYPT_H
#define KC_RESOURCES_DSTACK_ENVCRYPT_H

#include <json-c/json.h>

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "resources/dstack/compose.h"

/* Checks a GetAppEnvEncryptPubKey answer for APP_ID: SIG (65 bytes r||s||v,
 * v in {0,1} or {27,28}) over Keccak-256("dstack-env-encrypt-pubkey" ":"
 * app_id pubkey), or SIG_V1 (may be NULL) over the same with the 8-byte
 * big-endian TIMESTAMP after app_id, must recover to PINNED (compressed).
 * Either one valid is enough. KC_ECRYPTO when neither is. */
int dstack_env_pubkey_verify(const unsigned char app_id[20],
                             const unsigned char pubkey[32],
                             const unsigned char sig[65],
                             const unsigned char *sig_v1, uint64_t timestamp,
                             const unsigned char pinned[33],
                             struct kc_err *err);

/* Parses the response JSON ({"public_key", "signature", "timestamp",
 * "signature_v1"}, hex with or without 0x), verifies it as above and puts the
 * key in PUBKEY. KC_EPARSE for a malformed answer. */
int dstack_env_pubkey_from_json(struct json_object *resp,
                                const unsigned char app_id[20],
                                const unsigned char pinned[33],
                                unsigned char pubkey[32], struct kc_err *err);

/* Encrypts the N variables of ENV (keys are environment variable names) to
 * PUBKEY; appends the file bytes to OUT. Output is random (fresh key and
 * IV) and over DSTACK_ENC_ENV_MAX is refused (KC_ERANGE). */
int dstack_env_encrypt(const struct dstack_kv *env, size_t n,
                       const unsigned char pubkey[32], struct kc_buf *out,
                       struct kc_err *err);

/* Parses exactly 2*N hex digits (an optional 0x first) into OUT. */
int dstack_hex_decode(const char *hex, unsigned char *out, size_t n,
                      const char *what, struct kc_err *err);

#endif
