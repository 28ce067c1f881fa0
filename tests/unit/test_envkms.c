/* tests/unit/test_envkms.c: the deterministic .encrypted-env of key_provider
 * kms (resources/dstack/envcrypt.h): the ephemeral secret and the IV are
 * recomputed here with OpenSSL's HMAC() from the documented formula, the
 * file is decrypted with OpenSSL EVP (X25519 with the app's key, AES-256-GCM
 * with its tag checked), equal inputs give equal bytes, and every change of
 * a value, the KMS key or the salt gives another ephemeral key and IV. */
#include "resources/dstack/envcrypt.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

TestSuite(envkms, .timeout = 30);

struct app_key {
    EVP_PKEY *sk;
    unsigned char pub[32];
};

static void app_key_new(struct app_key *k)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    size_t len = 32;

    k->sk = NULL;
    cr_assert_not_null(c);
    cr_assert_eq(EVP_PKEY_keygen_init(c), 1);
    cr_assert_eq(EVP_PKEY_keygen(c, &k->sk), 1);
    cr_assert_eq(EVP_PKEY_get_raw_public_key(k->sk, k->pub, &len), 1);
    cr_assert_eq(len, 32);
    EVP_PKEY_CTX_free(c);
}

/* Decrypts FILE (eph || iv || ct || tag) with the app's key; the plaintext
 * (NUL-terminated) in OUT, its length returned; -1 if the tag is wrong. */
static int decrypt(const struct app_key *k, const unsigned char *file, size_t n,
                   unsigned char *out)
{
    EVP_PKEY *eph =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, file, 32);
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new(k->sk, NULL);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char shared[32];
    size_t slen = 32;
    int len = 0, fin = 0, ok;

    cr_assert(eph && d && c && n >= 60);
    cr_assert_eq(EVP_PKEY_derive_init(d), 1);
    cr_assert_eq(EVP_PKEY_derive_set_peer(d, eph), 1);
    cr_assert_eq(EVP_PKEY_derive(d, shared, &slen), 1);
    cr_assert_eq(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL), 1);
    cr_assert_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL), 1);
    cr_assert_eq(EVP_DecryptInit_ex(c, NULL, NULL, shared, file + 32), 1);
    cr_assert_eq(EVP_DecryptUpdate(c, out, &len, file + 44, (int)(n - 60)), 1);
    cr_assert_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
                                     KC_UNCONST(file + n - 16)),
                 1);
    ok = EVP_DecryptFinal_ex(c, out + len, &fin);
    out[len + fin] = '\0';
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_CTX_free(d);
    EVP_PKEY_free(eph);
    return ok == 1 ? len + fin : -1;
}

/* HMAC-SHA256(SALT, LABEL\0 || PUB || PT) with OpenSSL's one-shot HMAC(). */
static void hmac(const unsigned char salt[32], const char *label,
                 const unsigned char pub[32], const char *pt,
                 unsigned char out[32])
{
    unsigned char msg[1024];
    size_t l = strlen(label) + 1, n = l + 32 + strlen(pt);
    unsigned int olen = 0;

    cr_assert_lt(n, sizeof(msg));
    memcpy(msg, label, l);
    memcpy(msg + l, pub, 32);
    memcpy(msg + l + 32, pt, strlen(pt));
    cr_assert_not_null(HMAC(EVP_sha256(), salt, 32, msg, n, out, &olen));
    cr_assert_eq(olen, 32);
}

static void encrypt(const struct dstack_kv *env, size_t n,
                    const unsigned char pub[32], const unsigned char salt[32],
                    struct kc_buf *out)
{
    struct kc_err err = { 0 };

    kc_buf_reset(out);
    cr_assert_eq(dstack_env_encrypt_salted(env, n, pub, salt, out, &err), 0,
                 "%s", err.msg);
    cr_assert_gt(out->len, 60);
}

static const unsigned char SALT[32] = { 1,  2,  3,  4,  5,  6,  7,  8,
                                        9,  10, 11, 12, 13, 14, 15, 16,
                                        17, 18, 19, 20, 21, 22, 23, 24,
                                        25, 26, 27, 28, 29, 30, 31, 32 };

Test(envkms, equal_inputs_give_equal_bytes_that_decrypt)
{
    /* Not in byte order: the plaintext sorts them. */
    const struct dstack_kv env[] = { { "TOKEN", "tok\"en\\v" },
                                     { "API_SECRET", "s3cr3t" } };
    const struct dstack_kv swapped[] = { env[1], env[0] };
    static const char pt[] = "{\"env\": [{\"key\": \"API_SECRET\", \"value\": "
                             "\"s3cr3t\"}, {\"key\": \"TOKEN\", \"value\": "
                             "\"tok\\\"en\\\\v\"}]}";
    struct kc_buf a = { 0 }, b = { 0 };
    struct app_key k;
    unsigned char plain[512], sk[32], iv[32], eph[32];
    EVP_PKEY *e;
    size_t len = 32;

    app_key_new(&k);
    encrypt(env, 2, k.pub, SALT, &a);
    encrypt(env, 2, k.pub, SALT, &b);
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(a.data, b.data, a.len), 0, "not deterministic");
    encrypt(swapped, 2, k.pub, SALT, &b);
    cr_assert_eq(memcmp(a.data, b.data, a.len), 0, "depends on the order");

    cr_assert_eq(decrypt(&k, (unsigned char *)a.data, a.len, plain),
                 (int)strlen(pt));
    cr_assert_str_eq((char *)plain, pt);

    /* The documented derivation, recomputed. */
    hmac(SALT, DSTACK_ENV_LABEL_EPH, k.pub, pt, sk);
    e = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, 32);
    cr_assert_not_null(e);
    cr_assert_eq(EVP_PKEY_get_raw_public_key(e, eph, &len), 1);
    EVP_PKEY_free(e);
    cr_assert_eq(memcmp(a.data, eph, 32), 0, "ephemeral key not derived");
    hmac(SALT, DSTACK_ENV_LABEL_IV, k.pub, pt, iv);
    cr_assert_eq(memcmp(a.data + 32, iv, 12), 0, "IV not derived");

    /* A flipped ciphertext bit fails the tag. */
    a.data[50] ^= 1;
    cr_assert_eq(decrypt(&k, (unsigned char *)a.data, a.len, plain), -1);
    kc_buf_release(&a);
    kc_buf_release(&b);
    EVP_PKEY_free(k.sk);
}

/* One change (value, KMS key, salt): another ephemeral key, another IV,
 * other ciphertext bytes, and it still decrypts. */
Test(envkms, any_change_gives_another_key_and_iv)
{
    const struct dstack_kv env[] = { { "API_SECRET", "s3cr3t" },
                                     { "TOKEN", "t" } };
    const struct dstack_kv env2[] = { { "API_SECRET", "s3cr3u" },
                                      { "TOKEN", "t" } };
    struct kc_buf base = { 0 }, other = { 0 };
    struct app_key k, k2;
    unsigned char salt2[32], plain[512];

    app_key_new(&k);
    app_key_new(&k2);
    memcpy(salt2, SALT, 32);
    salt2[31] ^= 0x80;
    encrypt(env, 2, k.pub, SALT, &base);
    for (int i = 0; i < 3; i++) {
        const struct app_key *dk = i == 1 ? &k2 : &k;

        if (i == 0)
            encrypt(env2, 2, k.pub, SALT, &other);
        else if (i == 1)
            encrypt(env, 2, k2.pub, SALT, &other);
        else
            encrypt(env, 2, k.pub, salt2, &other);
        cr_assert_neq(memcmp(base.data, other.data, 32), 0,
                      "change %d: same ephemeral key", i);
        cr_assert_neq(memcmp(base.data + 32, other.data + 32, 12), 0,
                      "change %d: same IV", i);
        cr_assert_eq(base.len, other.len);
        cr_assert_neq(memcmp(base.data + 44, other.data + 44, base.len - 44), 0,
                      "change %d: same ciphertext", i);
        cr_assert_gt(decrypt(dk, (unsigned char *)other.data, other.len, plain),
                     0, "change %d does not decrypt", i);
        cr_assert_not_null(strstr((char *)plain, i == 0 ? "s3cr3u" : "s3cr3t"));
    }
    kc_buf_release(&base);
    kc_buf_release(&other);
    EVP_PKEY_free(k.sk);
    EVP_PKEY_free(k2.sk);
}

Test(envkms, random_salt_differs_and_bad_input_is_refused)
{
    const struct dstack_kv env[] = { { "A", "1" } };
    const struct dstack_kv twice[] = { { "A", "1" }, { "A", "2" } };
    const struct dstack_kv bad[] = { { "1A", "1" } };
    struct kc_buf a = { 0 }, b = { 0 };
    struct kc_err err = { 0 };
    struct app_key k;

    app_key_new(&k);
    cr_assert_eq(dstack_env_encrypt(env, 1, k.pub, &a, &err), 0);
    cr_assert_eq(dstack_env_encrypt(env, 1, k.pub, &b, &err), 0);
    cr_assert_neq(memcmp(a.data, b.data, 44), 0);
    kc_buf_reset(&a);
    cr_assert_eq(dstack_env_encrypt_salted(twice, 2, k.pub, SALT, &a, &err),
                 KC_EINVAL);
    cr_assert_str_eq(err.msg, "env key 'A' given twice");
    cr_assert_eq(dstack_env_encrypt_salted(bad, 1, k.pub, SALT, &a, &err),
                 KC_EINVAL);
    cr_assert_eq(a.len, 0);
    kc_buf_release(&a);
    kc_buf_release(&b);
    EVP_PKEY_free(k.sk);
}
