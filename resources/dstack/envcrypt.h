/* resources/dstack/envcrypt.h: .encrypted-env for key_provider kms
 * (reference/dstack.md §1.2 GetAppEnvEncryptPubKey, §5.2 step 3).
 *
 * The KMS gives each app an X25519 public key, signed by its root k256 key.
 * dstack_env_pubkey_verify() checks that signature against the KMS key the
 * manifest or the state pins (33-byte compressed secp256k1 key, as GetMeta's
 * k256_pubkey); dstack_env_encrypt() then encrypts the variables to that key:
 *
 *   plaintext  = {"env": [{"key": K, "value": V}, ...]}  (json.dumps style,
 *                keys in byte order)
 *   eph secret = HMAC-SHA256(salt, DSTACK_ENV_LABEL_EPH || pubkey || plaintext)
 *   IV         = HMAC-SHA256(salt, DSTACK_ENV_LABEL_IV || pubkey ||
 *                plaintext)[0..12]
 *   shared     = X25519(eph secret, app public key)
 *   ciphertext = AES-256-GCM(key = shared, IV, no AAD)
 *   file       = ephemeral public key (32) || IV (12) || ciphertext || tag (16)
 *
 * written as raw bytes to .encrypted-env (the layout of dstack-cloud's
 * _encrypt_env; the tag is the last 16 bytes, as Python's AESGCM appends it).
 * The guest keeps only the variables that app-compose.json lists in
 * allowed_envs: list the keys there.
 *
 * Deterministic on purpose: the salt (32 random bytes per VM, generated once
 * and kept in the state's generated values "kms_vms.<vm>.env_salt") makes
 * the same variables and the same KMS key give the same bytes, so a plan
 * shows no change of the shared disk until a value or the KMS's key changes;
 * any change of either gives another ephemeral key and another IV. The price
 * of determinism: whoever holds the salt (the state) and the image can test
 * a guess of the variables; keep the state as private as the image.
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

#define DSTACK_ENV_SALT_LEN  32
#define DSTACK_ENV_LABEL_EPH "kmsctl/encrypted-env/v1/x25519-ephemeral"
#define DSTACK_ENV_LABEL_IV  "kmsctl/encrypted-env/v1/aes-gcm-iv"

/* Encrypts the N variables of ENV (keys are environment variable names, each
 * once) to PUBKEY as above, with SALT; appends the file bytes to OUT. Over
 * DSTACK_ENC_ENV_MAX is refused (KC_ERANGE), a bad or repeated key is
 * KC_EINVAL. */
int dstack_env_encrypt_salted(const struct dstack_kv *env, size_t n,
                              const unsigned char pubkey[32],
                              const unsigned char salt[DSTACK_ENV_SALT_LEN],
                              struct kc_buf *out, struct kc_err *err);
/* The same with a fresh random salt: other bytes every time. */
int dstack_env_encrypt(const struct dstack_kv *env, size_t n,
                       const unsigned char pubkey[32], struct kc_buf *out,
                       struct kc_err *err);
/* 32 bytes from the OS random source. */
int dstack_env_salt_new(unsigned char salt[DSTACK_ENV_SALT_LEN],
                        struct kc_err *err);

/* Parses exactly 2*N hex digits (an optional 0x first) into OUT. */
int dstack_hex_decode(const char *hex, unsigned char *out, size_t n,
                      const char *what, struct kc_err *err);

#endif
