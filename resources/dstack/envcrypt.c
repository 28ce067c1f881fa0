/* resources/dstack/envcrypt.c: the app env key's signature check and the
 * X25519 + AES-256-GCM encryption of .encrypted-env. */
#include "resources/dstack/envcrypt.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "reconcile/json.h"
#include "resources/chain/keccak.h"
#include "resources/dstack/dstack.h"

#define ENV_PREFIX "dstack-env-encrypt-pubkey:"

int dstack_hex_decode(const char *hex, unsigned char *out, size_t n,
                      const char *what, struct kc_err *err)
{
    if (hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X'))
        hex += 2;
    if (strlen(hex) != 2 * n)
        return kc_err_set(err, KC_EPARSE, "%s: expected %zu bytes of hex", what,
                          n);
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;

        if (v < 0)
            return kc_err_set(err, KC_EPARSE, "%s: not hex", what);
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return 0;
}

/* True if SIG over DIGEST recovers to the compressed key PINNED. */
static bool recovers_to(const secp256k1_context *ctx,
                        const unsigned char digest[32],
                        const unsigned char sig[65],
                        const unsigned char pinned[33])
{
    secp256k1_ecdsa_recoverable_signature rs;
    secp256k1_pubkey pk;
    unsigned char ser[33];
    size_t len = sizeof(ser);
    int v = sig[64];

    if (v >= 27)
        v -= 27;
    if (v < 0 || v > 3 ||
        !secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rs, sig,
                                                             v) ||
        !secp256k1_ecdsa_recover(ctx, &pk, &rs, digest) ||
        !secp256k1_ec_pubkey_serialize(ctx, ser, &len, &pk,
                                       SECP256K1_EC_COMPRESSED))
        return false;
    return len == 33 && memcmp(ser, pinned, 33) == 0;
}

int dstack_env_pubkey_verify(const unsigned char app_id[20],
                             const unsigned char pubkey[32],
                             const unsigned char sig[65],
                             const unsigned char *sig_v1, uint64_t timestamp,
                             const unsigned char pinned[33], struct kc_err *err)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    struct chain_keccak k;
    unsigned char digest[32], ts[8];
    bool ok = false;

    if (!ctx)
        return kc_err_set(err, KC_ECRYPTO, "secp256k1 context failed");
    chain_keccak_init(&k);
    chain_keccak_update(&k, ENV_PREFIX, strlen(ENV_PREFIX));
    chain_keccak_update(&k, app_id, 20);
    chain_keccak_update(&k, pubkey, 32);
    chain_keccak_final(&k, digest);
    ok = sig && recovers_to(ctx, digest, sig, pinned);
    if (!ok && sig_v1) {
        for (int i = 0; i < 8; i++)
            ts[i] = (unsigned char)(timestamp >> (56 - 8 * i));
        chain_keccak_init(&k);
        chain_keccak_update(&k, ENV_PREFIX, strlen(ENV_PREFIX));
        chain_keccak_update(&k, app_id, 20);
        chain_keccak_update(&k, ts, 8);
        chain_keccak_update(&k, pubkey, 32);
        chain_keccak_final(&k, digest);
        ok = recovers_to(ctx, digest, sig_v1, pinned);
    }
    secp256k1_context_destroy(ctx);
    if (!ok)
        return kc_err_set(err, KC_ECRYPTO,
                          "env encryption key of the app is not signed by "
                          "the pinned KMS key");
    return 0;
}

int dstack_env_pubkey_from_json(struct json_object *resp,
                                const unsigned char app_id[20],
                                const unsigned char pinned[33],
                                unsigned char pubkey[32], struct kc_err *err)
{
    const char *pk = NULL, *sig = NULL, *sig1;
    unsigned char s[65], s1[65];
    int64_t ts = 0;
    int ret;

    if ((ret = kc_json_get_str(resp, "public_key", &pk, err)) < 0 ||
        (ret = kc_json_get_str(resp, "signature", &sig, err)) < 0)
        return kc_err_prefix(err, "GetAppEnvEncryptPubKey");
    if ((ret = dstack_hex_decode(pk, pubkey, 32, "public_key", err)) < 0 ||
        (ret = dstack_hex_decode(sig, s, 65, "signature", err)) < 0)
        return kc_err_prefix(err, "GetAppEnvEncryptPubKey");
    sig1 = kc_json_opt_str(resp, "signature_v1");
    if (sig1 && *sig1) {
        if ((ret = kc_json_get_int(resp, "timestamp", &ts, err)) < 0 ||
            (ret = dstack_hex_decode(sig1, s1, 65, "signature_v1", err)) < 0)
            return kc_err_prefix(err, "GetAppEnvEncryptPubKey");
    }
    return dstack_env_pubkey_verify(app_id, pubkey, s,
                                    sig1 && *sig1 ? s1 : NULL, (uint64_t)ts,
                                    pinned, err);
}

/* The plaintext: {"env": [{"key": K, "value": V}, ...]} with the keys in
 * byte order, so that the bytes depend on the variables only, not on the
 * order the manifest lists them in. */
static int env_plaintext(const struct dstack_kv *env, size_t n,
                         struct kc_buf *pt, struct kc_err *err)
{
    const struct dstack_kv **sorted = NULL;
    int ret = 0;

    sorted = kc_xcalloc(n + 1, sizeof(*sorted));
    for (size_t i = 0; i < n; i++) {
        size_t j = i;

        if (!dstack_is_env_name(env[i].key)) {
            ret = kc_err_set(err, KC_EINVAL,
                             "env key '%.64s' is not an environment variable "
                             "name",
                             env[i].key ? env[i].key : "");
            goto out;
        }
        /* Insertion sort: a handful of variables. */
        while (j > 0 && strcmp(sorted[j - 1]->key, env[i].key) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        if (j > 0 && strcmp(sorted[j - 1]->key, env[i].key) == 0) {
            ret = kc_err_set(err, KC_EINVAL, "env key '%s' given twice",
                             env[i].key);
            goto out;
        }
        sorted[j] = &env[i];
    }
    kc_buf_addstr(pt, "{\"env\": [");
    for (size_t i = 0; i < n; i++) {
        kc_buf_addstr(pt, i ? ", {\"key\": " : "{\"key\": ");
        dstack_json_str(pt, sorted[i]->key, "env key", err);
        kc_buf_addstr(pt, ", \"value\": ");
        if ((ret = dstack_json_str(pt, sorted[i]->value, sorted[i]->key, err)) <
            0)
            goto out;
        kc_buf_addch(pt, '}');
    }
    kc_buf_addstr(pt, "]}");
out:
    free(sorted);
    return ret;
}

/* HMAC-SHA256(SALT, LABEL (with its NUL) || PUBKEY || PT) into OUT. */
static int derive(const unsigned char salt[DSTACK_ENV_SALT_LEN],
                  const char *label, const unsigned char pubkey[32],
                  const struct kc_buf *pt, unsigned char out[32],
                  struct kc_err *err)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                         KC_UNCONST("SHA256"), 0),
        OSSL_PARAM_construct_end(),
    };
    size_t len = 0;
    int ret = 0;

    if (!ctx || EVP_MAC_init(ctx, salt, DSTACK_ENV_SALT_LEN, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)label, strlen(label) + 1) !=
            1 ||
        EVP_MAC_update(ctx, pubkey, 32) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)pt->data, pt->len) != 1 ||
        EVP_MAC_final(ctx, out, &len, 32) != 1 || len != 32)
        ret = kc_err_from_ssl(err, "HMAC-SHA256");
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ret;
}

/* X25519 with the private key SK: EPH gets its public key, SHARED the
 * agreement with PEER. */
static int x25519_shared(const unsigned char sk[32],
                         const unsigned char peer[32], unsigned char eph[32],
                         unsigned char shared[32], struct kc_err *err)
{
    EVP_PKEY_CTX *dctx = NULL;
    EVP_PKEY *mine = NULL, *theirs = NULL;
    size_t len = 32;
    int ret = 0;

    mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, 32);
    if (!mine || EVP_PKEY_get_raw_public_key(mine, eph, &len) != 1 ||
        len != 32) {
        ret = kc_err_from_ssl(err, "X25519 key");
        goto out;
    }
    theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    dctx = theirs ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
    len = 32;
    if (!dctx || EVP_PKEY_derive_init(dctx) != 1 ||
        EVP_PKEY_derive_set_peer(dctx, theirs) != 1 ||
        EVP_PKEY_derive(dctx, shared, &len) != 1 || len != 32) {
        ret = kc_err_from_ssl(err, "X25519 key agreement");
        goto out;
    }
out:
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(theirs);
    return ret;
}

int dstack_env_salt_new(unsigned char salt[DSTACK_ENV_SALT_LEN],
                        struct kc_err *err)
{
    if (RAND_bytes(salt, DSTACK_ENV_SALT_LEN) != 1)
        return kc_err_from_ssl(err, "RAND_bytes");
    return 0;
}

int dstack_env_encrypt_salted(const struct dstack_kv *env, size_t n,
                              const unsigned char pubkey[32],
                              const unsigned char salt[DSTACK_ENV_SALT_LEN],
                              struct kc_buf *out, struct kc_err *err)
{
    struct kc_buf pt = { 0 };
    unsigned char eph[32], sk[32], key[32], ivfull[32], tag[16], *ct = NULL;
    EVP_CIPHER_CTX *c = NULL;
    int len = 0, fin = 0, ret;

    if ((ret = env_plaintext(env, n, &pt, err)) < 0)
        goto out;
    if (pt.len + 60 > DSTACK_ENC_ENV_MAX) {
        ret = kc_err_set(err, KC_ERANGE,
                         ".encrypted-env would be over the guest's limit of "
                         "%u bytes",
                         DSTACK_ENC_ENV_MAX);
        goto out;
    }
    /* Same salt, KMS key and variables: same bytes (a plan shows no change);
     * anything else changes the ephemeral key and the IV together, so no
     * key and IV pair ever encrypts two plaintexts. */
    if ((ret = derive(salt, DSTACK_ENV_LABEL_EPH, pubkey, &pt, sk, err)) < 0 ||
        (ret = derive(salt, DSTACK_ENV_LABEL_IV, pubkey, &pt, ivfull, err)) <
            0 ||
        (ret = x25519_shared(sk, pubkey, eph, key, err)) < 0)
        goto out;
    ct = kc_xmalloc(pt.len + 16);
    c = EVP_CIPHER_CTX_new();
    if (!c || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, key, ivfull) != 1 ||
        EVP_EncryptUpdate(c, ct, &len, (const unsigned char *)pt.data,
                          (int)pt.len) != 1 ||
        EVP_EncryptFinal_ex(c, ct + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) {
        ret = kc_err_from_ssl(err, "AES-256-GCM");
        goto out;
    }
    kc_buf_add(out, eph, 32);
    kc_buf_add(out, ivfull, 12);
    kc_buf_add(out, ct, (size_t)(len + fin));
    kc_buf_add(out, tag, 16);
out:
    EVP_CIPHER_CTX_free(c);
    kc_memzero(sk, sizeof(sk));
    kc_memzero(key, sizeof(key));
    if (ct) {
        kc_memzero(ct, pt.len + 16);
        free(ct);
    }
    kc_buf_release_wipe(&pt);
    return ret;
}

int dstack_env_encrypt(const struct dstack_kv *env, size_t n,
                       const unsigned char pubkey[32], struct kc_buf *out,
                       struct kc_err *err)
{
    unsigned char salt[DSTACK_ENV_SALT_LEN];
    int ret = dstack_env_salt_new(salt, err);

    if (ret == 0)
        ret = dstack_env_encrypt_salted(env, n, pubkey, salt, out, err);
    kc_memzero(salt, sizeof(salt));
    return ret;
}
