/* resources/chain/keystore.c: Web3 Secret Storage v3 decryption. */
#include "resources/chain/keystore.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "reconcile/json.h"
#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"
#include "resources/chain/signer.h"

/* ---- scrypt (RFC 7914) --------------------------------------------- */

static uint32_t rotl32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

/* Salsa20/8 core (RFC 7914 section 3) on 16 little-endian words. */
static void salsa20_8(uint32_t b[16])
{
    uint32_t x[16];

    memcpy(x, b, sizeof(x));
    for (int i = 0; i < 8; i += 2) {
        x[4] ^= rotl32(x[0] + x[12], 7);
        x[8] ^= rotl32(x[4] + x[0], 9);
        x[12] ^= rotl32(x[8] + x[4], 13);
        x[0] ^= rotl32(x[12] + x[8], 18);
        x[9] ^= rotl32(x[5] + x[1], 7);
        x[13] ^= rotl32(x[9] + x[5], 9);
        x[1] ^= rotl32(x[13] + x[9], 13);
        x[5] ^= rotl32(x[1] + x[13], 18);
        x[14] ^= rotl32(x[10] + x[6], 7);
        x[2] ^= rotl32(x[14] + x[10], 9);
        x[6] ^= rotl32(x[2] + x[14], 13);
        x[10] ^= rotl32(x[6] + x[2], 18);
        x[3] ^= rotl32(x[15] + x[11], 7);
        x[7] ^= rotl32(x[3] + x[15], 9);
        x[11] ^= rotl32(x[7] + x[3], 13);
        x[15] ^= rotl32(x[11] + x[7], 18);
        x[1] ^= rotl32(x[0] + x[3], 7);
        x[2] ^= rotl32(x[1] + x[0], 9);
        x[3] ^= rotl32(x[2] + x[1], 13);
        x[0] ^= rotl32(x[3] + x[2], 18);
        x[6] ^= rotl32(x[5] + x[4], 7);
        x[7] ^= rotl32(x[6] + x[5], 9);
        x[4] ^= rotl32(x[7] + x[6], 13);
        x[5] ^= rotl32(x[4] + x[7], 18);
        x[11] ^= rotl32(x[10] + x[9], 7);
        x[8] ^= rotl32(x[11] + x[10], 9);
        x[9] ^= rotl32(x[8] + x[11], 13);
        x[10] ^= rotl32(x[9] + x[8], 18);
        x[12] ^= rotl32(x[15] + x[14], 7);
        x[13] ^= rotl32(x[12] + x[15], 9);
        x[14] ^= rotl32(x[13] + x[12], 13);
        x[15] ^= rotl32(x[14] + x[13], 18);
    }
    for (int i = 0; i < 16; i++)
        b[i] += x[i];
}

/* scryptBlockMix (section 4): B is 2r blocks of 16 words; Y is scratch. */
static void block_mix(uint32_t *b, uint32_t *y, uint64_t r)
{
    uint32_t x[16];

    memcpy(x, b + (2 * r - 1) * 16, sizeof(x));
    for (uint64_t i = 0; i < 2 * r; i++) {
        for (int k = 0; k < 16; k++)
            x[k] ^= b[i * 16 + k];
        salsa20_8(x);
        /* Even blocks go to the first half, odd ones to the second. */
        memcpy(y + ((i % 2) * r + i / 2) * 16, x, sizeof(x));
    }
    memcpy(b, y, 2 * r * 64);
}

/* scryptROMix (section 5) on one 128 * r byte block, in place. */
static void romix(uint8_t *block, uint64_t n, uint64_t r, uint32_t *v,
                  uint32_t *x, uint32_t *y)
{
    size_t words = (size_t)(32 * r);

    for (size_t k = 0; k < words; k++) {
        const uint8_t *q = block + 4 * k;
        x[k] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
               (uint32_t)q[3] << 24;
    }
    for (uint64_t i = 0; i < n; i++) {
        memcpy(v + i * words, x, words * 4);
        block_mix(x, y, r);
    }
    for (uint64_t i = 0; i < n; i++) {
        /* Integerify: the first word of the last 64-byte block, mod n. */
        uint64_t j = x[(2 * r - 1) * 16] & (n - 1);
        for (size_t k = 0; k < words; k++)
            x[k] ^= v[j * words + k];
        block_mix(x, y, r);
    }
    for (size_t k = 0; k < words; k++) {
        uint8_t *q = block + 4 * k;
        q[0] = (uint8_t)x[k];
        q[1] = (uint8_t)(x[k] >> 8);
        q[2] = (uint8_t)(x[k] >> 16);
        q[3] = (uint8_t)(x[k] >> 24);
    }
}

static int scrypt_builtin(const void *pw, size_t pwlen, const uint8_t *salt,
                          size_t saltlen, uint64_t n, uint64_t r, uint64_t p,
                          uint8_t *out, size_t outlen, struct kc_err *err)
{
    size_t blen = (size_t)(128 * r * p), vwords = (size_t)(32 * r * n);
    uint8_t *b = kc_xmalloc(blen);
    uint32_t *v = kc_xmalloc(vwords * 4);
    uint32_t *x = kc_xmalloc((size_t)(128 * r));
    uint32_t *y = kc_xmalloc((size_t)(128 * r));
    int ret = 0;

    if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)saltlen, 1, EVP_sha256(),
                          (int)blen, b) != 1) {
        ret = kc_err_from_ssl(err, "scrypt pbkdf2");
        goto out;
    }
    for (uint64_t i = 0; i < p; i++)
        romix(b + i * 128 * r, n, r, v, x, y);
    if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, b, (int)blen, 1, EVP_sha256(),
                          (int)outlen, out) != 1)
        ret = kc_err_from_ssl(err, "scrypt pbkdf2");
out:
    kc_memzero(b, blen);
    kc_memzero(v, vwords * 4);
    kc_memzero(x, (size_t)(128 * r));
    kc_memzero(y, (size_t)(128 * r));
    free(b);
    free(v);
    free(x);
    free(y);
    return ret;
}

int chain_scrypt(const void *password, size_t pwlen, const uint8_t *salt,
                 size_t saltlen, uint64_t n, uint64_t r, uint64_t p,
                 uint8_t *out, size_t outlen, bool builtin, struct kc_err *err)
{
    if (n < 2 || (n & (n - 1)) != 0 || r == 0 || p == 0 ||
        r * p > KEYSTORE_MAX_SCRYPT_RP || n > KEYSTORE_MAX_SCRYPT_N ||
        128 * r * n > KEYSTORE_MAX_SCRYPT_MEM || outlen > 1024)
        return kc_err_set(err, KC_EINVAL,
                          "scrypt: n must be a power of 2 (at most %u), "
                          "r * p at most %d, 128 * r * n at most %u bytes",
                          KEYSTORE_MAX_SCRYPT_N, KEYSTORE_MAX_SCRYPT_RP,
                          KEYSTORE_MAX_SCRYPT_MEM);
    /* OpenSSL enforces RFC 7914's n < 2^(16 r). */
    if (builtin || (16 * r < 64 && n >= (uint64_t)1 << (16 * r)))
        return scrypt_builtin(password, pwlen, salt, saltlen, n, r, p, out,
                              outlen, err);
    if (EVP_PBE_scrypt(password, pwlen, salt, saltlen, n, r, p,
                       128 * r * n + 128 * r * p + (1u << 20), out,
                       outlen) != 1)
        return kc_err_from_ssl(err, "scrypt");
    return 0;
}

/* ---- keystore ------------------------------------------------------- */

static int get_uint(struct json_object *o, const char *path, uint64_t max,
                    uint64_t *out, const char *what, struct kc_err *err)
{
    int64_t v;
    int ret = kc_json_get_int(o, path, &v, err);

    if (ret < 0)
        return kc_err_prefix(err, "keystore '%s'", what);
    if (v < 1 || (uint64_t)v > max)
        return kc_err_set(err, KC_EINVAL,
                          "keystore '%s': %s = %lld is out of range (1..%llu)",
                          what, path, (long long)v, (unsigned long long)max);
    *out = (uint64_t)v;
    return 0;
}

static int get_hex(struct json_object *o, const char *path, size_t max,
                   uint8_t **out, size_t *len, const char *what,
                   struct kc_err *err)
{
    const char *s;
    int ret = kc_json_get_str(o, path, &s, err);

    if (ret == 0)
        ret = chain_hex_decode_alloc(s, max, out, len, path, err);
    if (ret < 0)
        kc_err_prefix(err, "keystore '%s'", what);
    return ret;
}

static int derive_key(struct json_object *crypto,
                      const struct kc_secret *password, const char *what,
                      uint8_t dk[32], struct kc_err *err)
{
    const char *kdf;
    uint8_t *salt = NULL;
    size_t saltlen = 0, pwlen;
    const char *pw = kc_secret_reveal(password, &pwlen);
    uint64_t dklen = 0, n = 0, r = 0, p = 0,
             c = 0; /* gcc -O3: get_uint sets them */
    int ret;

    ret = kc_json_get_str(crypto, "kdf", &kdf, err);
    if (ret < 0)
        return kc_err_prefix(err, "keystore '%s'", what);
    ret = get_uint(crypto, "kdfparams.dklen", 64, &dklen, what, err);
    if (ret == 0 && dklen != 32)
        ret =
            kc_err_set(err, KC_EINVAL, "keystore '%s': dklen must be 32", what);
    if (ret == 0)
        ret =
            get_hex(crypto, "kdfparams.salt", 1024, &salt, &saltlen, what, err);
    if (ret < 0)
        goto out;
    if (strcmp(kdf, "scrypt") == 0) {
        ret = get_uint(crypto, "kdfparams.n", KEYSTORE_MAX_SCRYPT_N, &n, what,
                       err);
        if (ret == 0)
            ret = get_uint(crypto, "kdfparams.r", KEYSTORE_MAX_SCRYPT_RP, &r,
                           what, err);
        if (ret == 0)
            ret = get_uint(crypto, "kdfparams.p", KEYSTORE_MAX_SCRYPT_RP, &p,
                           what, err);
        if (ret < 0)
            goto out;
        ret =
            chain_scrypt(pw, pwlen, salt, saltlen, n, r, p, dk, 32, false, err);
        if (ret < 0)
            kc_err_prefix(err, "keystore '%s'", what);
    } else if (strcmp(kdf, "pbkdf2") == 0) {
        const char *prf;
        ret = kc_json_get_str(crypto, "kdfparams.prf", &prf, err);
        if (ret < 0) {
            kc_err_prefix(err, "keystore '%s'", what);
            goto out;
        }
        if (strcmp(prf, "hmac-sha256") != 0) {
            ret = kc_err_set(err, KC_EINVAL,
                             "keystore '%s': pbkdf2 prf '%.40s' is not "
                             "supported (hmac-sha256 is)",
                             what, prf);
            goto out;
        }
        ret = get_uint(crypto, "kdfparams.c", KEYSTORE_MAX_PBKDF2_C, &c, what,
                       err);
        if (ret < 0)
            goto out;
        if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)saltlen, (int)c,
                              EVP_sha256(), 32, dk) != 1) {
            ret = kc_err_from_ssl(err, "keystore pbkdf2");
            kc_err_prefix(err, "keystore '%s'", what);
        }
    } else {
        ret = kc_err_set(err, KC_EINVAL,
                         "keystore '%s': kdf '%.40s' is not supported "
                         "(scrypt and pbkdf2 are)",
                         what, kdf);
    }
out:
    free(salt);
    return ret;
}

static int aes_ctr_decrypt(const uint8_t key[16], const uint8_t iv[16],
                           const uint8_t *in, size_t len, uint8_t *out,
                           struct kc_err *err)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0, ret = 0;

    if (!ctx)
        return kc_err_from_ssl(err, "keystore aes");
    if (EVP_DecryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, key, iv) != 1 ||
        EVP_DecryptUpdate(ctx, out, &n1, in, (int)len) != 1 ||
        EVP_DecryptFinal_ex(ctx, out + n1, &n2) != 1 ||
        (size_t)(n1 + n2) != len)
        ret = kc_err_from_ssl(err, "keystore aes-128-ctr");
    EVP_CIPHER_CTX_free(ctx);
    return ret;
}

int chain_keystore_decrypt(struct json_object *ks,
                           const struct kc_secret *password, const char *what,
                           uint8_t key[32], struct kc_err *err)
{
    struct json_object *crypto = NULL;
    uint8_t dk[32], mac[32], want[32], iv[16], addr[20], file_addr[20];
    uint8_t *ct = NULL, plain[KEYSTORE_MAX_CIPHERTEXT];
    size_t ctlen = 0;
    const char *cipher, *s;
    struct chain_keccak k;
    struct chain_signer *signer = NULL;
    int64_t version;
    int ret;

    ret = kc_json_get_int(ks, "version", &version, err);
    if (ret == 0 && version != 3)
        ret = kc_err_set(err, KC_EINVAL, "version %lld is not supported (3 is)",
                         (long long)version);
    /* "crypto", or "Crypto" as some tools write it. */
    if (ret == 0 && !json_object_object_get_ex(ks, "crypto", &crypto) &&
        !json_object_object_get_ex(ks, "Crypto", &crypto))
        ret = kc_err_set(err, KC_EINVAL, "crypto: missing");
    if (ret == 0)
        ret = kc_json_get_str(crypto, "cipher", &cipher, err);
    if (ret == 0 && strcmp(cipher, "aes-128-ctr") != 0)
        ret = kc_err_set(err, KC_EINVAL,
                         "cipher '%.40s' is not supported (aes-128-ctr is)",
                         cipher);
    if (ret == 0)
        ret = kc_json_get_str(crypto, "cipherparams.iv", &s, err);
    if (ret == 0)
        ret = chain_hex_decode_fixed(s, strlen(s), iv, 16, "cipherparams.iv",
                                     err);
    if (ret == 0)
        ret = kc_json_get_str(crypto, "mac", &s, err);
    if (ret == 0)
        ret = chain_hex_decode_fixed(s, strlen(s), want, 32, "mac", err);
    if (ret < 0) {
        kc_err_prefix(err, "keystore '%s'", what);
        goto out;
    }
    ret = get_hex(crypto, "ciphertext", KEYSTORE_MAX_CIPHERTEXT, &ct, &ctlen,
                  what, err);
    if (ret == 0 && ctlen != 32)
        ret = kc_err_set(err, KC_EINVAL,
                         "keystore '%s': ciphertext is %zu bytes, expected 32",
                         what, ctlen);
    if (ret == 0)
        ret = derive_key(crypto, password, what, dk, err);
    if (ret < 0)
        goto out;
    chain_keccak_init(&k);
    chain_keccak_update(&k, dk + 16, 16);
    chain_keccak_update(&k, ct, ctlen);
    chain_keccak_final(&k, mac);
    if (CRYPTO_memcmp(mac, want, 32) != 0) {
        ret = kc_err_set(err, KC_EPERM,
                         "keystore '%s': wrong password (MAC mismatch)", what);
        goto out;
    }
    ret = aes_ctr_decrypt(dk, iv, ct, ctlen, plain, err);
    if (ret < 0)
        goto out;
    ret = chain_signer_new(plain, &signer, err);
    if (ret < 0) {
        kc_err_prefix(err, "keystore '%s'", what);
        goto out;
    }
    memcpy(addr, chain_signer_address(signer), 20);
    s = kc_json_opt_str(ks, "address");
    if (s && (chain_hex_decode_fixed(s, strlen(s), file_addr, 20, "address",
                                     NULL) < 0 ||
              memcmp(file_addr, addr, 20) != 0)) {
        ret = kc_err_set(err, KC_EINVAL,
                         "keystore '%s': the key does not match the file's "
                         "address '%.42s'",
                         what, s);
        goto out;
    }
    memcpy(key, plain, 32);
out:
    chain_signer_free(signer);
    kc_memzero(dk, sizeof(dk));
    kc_memzero(plain, sizeof(plain));
    free(ct);
    return ret;
}
