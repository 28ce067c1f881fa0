/* tests/unit/test_dstack_envcrypt.c: .encrypted-env decrypted with the
 * OpenSSL command line (X25519 derive, AES-256-CTR for the GCM keystream,
 * AES-256-ECB for H and E(J0) with a GHASH written here), and the signature
 * check of the app env key against a pinned KMS key. */
#include "resources/dstack/envcrypt.h"

#include <criterion/criterion.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <unistd.h>

#include "reconcile/file.h"
#include "resources/chain/keccak.h"
#include "tests/unit/helpers/dstack_testutil.h"

static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "envc");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_envcrypt, .init = setup, .fini = teardown, .timeout = 60);

static char *path_of(const char *name)
{
    return kc_xasprintf("%s/%s", tmpdir, name);
}

static void put_bytes(const char *name, const void *p, size_t n)
{
    struct kc_err err = { 0 };
    char *path = path_of(name);

    cr_assert_eq(kc_file_write_atomic(path, p, n, 0600, &err), 0, "%s",
                 err.msg);
    free(path);
}

static size_t get_bytes(const char *name, unsigned char *out, size_t max)
{
    struct kc_err err = { 0 };
    char *path = path_of(name), *data = NULL;
    size_t len = 0;

    cr_assert_eq(kc_file_read(path, max, &data, &len, &err), 0, "%s", err.msg);
    memcpy(out, data, len);
    free(data);
    free(path);
    return len;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        kc_snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* AES-256-ECB of one block with the openssl command line. */
static void aes_block(const unsigned char key[32], const unsigned char in[16],
                      unsigned char out[16])
{
    char khex[65], *cmd;

    hex(key, 32, khex);
    put_bytes("blk.in", in, 16);
    cmd = kc_xasprintf("cd '%s' && openssl enc -aes-256-ecb -nopad -K %s "
                       "-in blk.in -out blk.out",
                       tmpdir, khex);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    cr_assert_eq(get_bytes("blk.out", out, 64), 16);
    free(cmd);
}

/* GF(2^128) multiplication as NIST SP 800-38D §6.3 defines it. */
static void gf_mul(const unsigned char x[16], const unsigned char y[16],
                   unsigned char z[16])
{
    unsigned char v[16];

    memset(z, 0, 16);
    memcpy(v, y, 16);
    for (int i = 0; i < 128; i++) {
        bool lsb;

        if (x[i / 8] & (0x80 >> (i % 8)))
            for (int k = 0; k < 16; k++)
                z[k] ^= v[k];
        lsb = v[15] & 1;
        for (int k = 15; k > 0; k--)
            v[k] = (unsigned char)((v[k] >> 1) | (v[k - 1] << 7));
        v[0] >>= 1;
        if (lsb)
            v[0] ^= 0xe1;
    }
}

static void ghash_block(unsigned char y[16], const unsigned char *b, size_t n,
                        const unsigned char h[16])
{
    unsigned char t[16];

    for (size_t k = 0; k < n; k++)
        y[k] ^= b[k];
    gf_mul(y, h, t);
    memcpy(y, t, 16);
}

Test(dstack_envcrypt, openssl_cli_decrypts_and_the_tag_checks)
{
    static const struct dstack_kv env[] = {
        { "DD_API_KEY", "0123456789abcdef0123456789abcdef" },
        { "GREETING", "h\xc3\xa9llo \"world\"" },
    };
    static const char expected[] =
        "{\"env\": [{\"key\": \"DD_API_KEY\", \"value\": "
        "\"0123456789abcdef0123456789abcdef\"}, {\"key\": \"GREETING\", "
        "\"value\": \"h\\u00e9llo \\\"world\\\"\"}]}";
    static const unsigned char spki_x25519[12] = { 0x30, 0x2a, 0x30, 0x05,
                                                   0x06, 0x03, 0x2b, 0x65,
                                                   0x6e, 0x03, 0x21, 0x00 };
    unsigned char pub[32], der[44], file[4096], shared[32], pt[4096];
    unsigned char h[16], ej0[16], j0[16], y[16], lens[16], zero[16] = { 0 };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };
    char *cmd, khex[65], ivhex[33];
    size_t n, ctlen, ptlen;

    cmd = kc_xasprintf("cd '%s' && openssl genpkey -algorithm X25519 -out "
                       "priv.pem && openssl pkey -in priv.pem -pubout "
                       "-outform DER -out pub.der",
                       tmpdir);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    free(cmd);
    cr_assert_eq(get_bytes("pub.der", der, sizeof(der)), 44);
    cr_assert_eq(memcmp(der, spki_x25519, 12), 0);
    memcpy(pub, der + 12, 32);

    cr_assert_eq(dstack_env_encrypt(env, 2, pub, &out, &err), 0, "%s", err.msg);
    n = out.len;
    memcpy(file, out.data, n);
    ctlen = n - 32 - 12 - 16;
    cr_assert_eq(ctlen, strlen(expected));

    /* The ephemeral public key as SPKI DER; derive with the app's key. */
    memcpy(der + 12, file, 32);
    put_bytes("eph.der", der, 44);
    cmd = kc_xasprintf("cd '%s' && openssl pkeyutl -derive -inkey priv.pem "
                       "-peerform DER -peerkey eph.der -out shared.bin",
                       tmpdir);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    free(cmd);
    cr_assert_eq(get_bytes("shared.bin", shared, sizeof(shared)), 32);

    /* GCM with a 96-bit IV: J0 = IV || 1; the keystream starts at J0 + 1. */
    hex(shared, 32, khex);
    hex(file + 32, 12, ivhex);
    put_bytes("ct.bin", file + 44, ctlen);
    cmd = kc_xasprintf("cd '%s' && openssl enc -d -aes-256-ctr -K %s -iv "
                       "%s00000002 -in ct.bin -out pt.bin",
                       tmpdir, khex, ivhex);
    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    free(cmd);
    ptlen = get_bytes("pt.bin", pt, sizeof(pt));
    cr_assert_eq(ptlen, strlen(expected));
    cr_assert_eq(memcmp(pt, expected, ptlen), 0, "plaintext: %.*s", (int)ptlen,
                 pt);

    /* Tag = GHASH_H(C, no AAD) xor E(K, J0), H = E(K, 0^128). */
    aes_block(shared, zero, h);
    memcpy(j0, file + 32, 12);
    memcpy(j0 + 12, "\x00\x00\x00\x01", 4);
    aes_block(shared, j0, ej0);
    memset(y, 0, 16);
    for (size_t o = 0; o < ctlen; o += 16)
        ghash_block(y, file + 44 + o, ctlen - o > 16 ? 16 : ctlen - o, h);
    memset(lens, 0, 16);
    for (int k = 0; k < 8; k++)
        lens[15 - k] = (unsigned char)(((uint64_t)ctlen * 8) >> (8 * k));
    ghash_block(y, lens, 16, h);
    for (int k = 0; k < 16; k++)
        y[k] ^= ej0[k];
    cr_assert_eq(memcmp(y, file + n - 16, 16), 0, "GCM tag differs");

    /* Fresh key and IV each time. */
    kc_buf_reset(&out);
    cr_assert_eq(dstack_env_encrypt(env, 2, pub, &out, &err), 0);
    cr_assert_neq(memcmp(out.data, file, 44), 0);
    kc_buf_release_wipe(&out);
}

Test(dstack_envcrypt, refuses_bad_keys_and_oversize)
{
    static char big[300 << 10];
    struct dstack_kv env[] = { { "bad-name", "x" } };
    unsigned char pub[32] = { 9 };
    struct kc_buf out = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(dstack_env_encrypt(env, 1, pub, &out, &err), KC_EINVAL);
    memset(big, 'a', sizeof(big) - 1);
    env[0].key = "BIG";
    env[0].value = big;
    cr_assert_eq(dstack_env_encrypt(env, 1, pub, &out, &err), KC_ERANGE);
    cr_assert_eq(out.len, 0);
}

struct signer {
    secp256k1_context *ctx;
    unsigned char sk[32];
    unsigned char pub33[33];
};

static void signer_init(struct signer *s, unsigned char seed)
{
    secp256k1_pubkey pk;
    size_t len = 33;

    s->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    memset(s->sk, seed, 32);
    cr_assert(secp256k1_ec_pubkey_create(s->ctx, &pk, s->sk));
    cr_assert(secp256k1_ec_pubkey_serialize(s->ctx, s->pub33, &len, &pk,
                                            SECP256K1_EC_COMPRESSED));
}

static void sign(struct signer *s, const unsigned char *msg, size_t n,
                 unsigned char sig[65])
{
    secp256k1_ecdsa_recoverable_signature rs;
    unsigned char digest[32];
    int v = 0;

    chain_keccak256(msg, n, digest);
    cr_assert(secp256k1_ecdsa_sign_recoverable(s->ctx, &rs, digest, s->sk, NULL,
                                               NULL));
    secp256k1_ecdsa_recoverable_signature_serialize_compact(s->ctx, sig, &v,
                                                            &rs);
    sig[64] = (unsigned char)v;
}

Test(dstack_envcrypt, signature_must_recover_to_the_pinned_kms_key)
{
    struct signer kms, other;
    unsigned char app[20], pub[32], msg[128], sig[65], sig1[65], bad[65];
    const size_t plen = strlen("dstack-env-encrypt-pubkey:");
    struct kc_err err = { 0 };
    uint64_t ts = 1760000000;

    signer_init(&kms, 0x11);
    signer_init(&other, 0x22);
    memset(app, 0xaa, 20);
    memset(pub, 0x55, 32);
    memcpy(msg, "dstack-env-encrypt-pubkey:", plen);
    memcpy(msg + plen, app, 20);
    memcpy(msg + plen + 20, pub, 32);
    sign(&kms, msg, plen + 52, sig);
    for (int i = 0; i < 8; i++)
        msg[plen + 20 + i] = (unsigned char)(ts >> (56 - 8 * i));
    memcpy(msg + plen + 28, pub, 32);
    sign(&kms, msg, plen + 60, sig1);

    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, sig, NULL, 0, kms.pub33, &err), 0,
        "%s", err.msg);
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, sig, NULL, 0, other.pub33, &err),
        KC_ECRYPTO);
    cr_assert_not_null(strstr(err.msg, "pinned KMS key"));
    /* v as 27/28 is accepted too. */
    memcpy(bad, sig, 65);
    bad[64] = (unsigned char)(bad[64] + 27);
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, bad, NULL, 0, kms.pub33, &err), 0);
    /* Only signature_v1 valid (with its timestamp): accepted. */
    memset(bad, 0, 65);
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, bad, sig1, ts, kms.pub33, &err), 0,
        "%s", err.msg);
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, bad, sig1, ts + 1, kms.pub33, &err),
        KC_ECRYPTO);
    /* A swapped key or app id fails. */
    pub[0] ^= 1;
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, sig, sig1, ts, kms.pub33, &err),
        KC_ECRYPTO);
    pub[0] ^= 1;
    app[19] ^= 1;
    cr_assert_eq(
        dstack_env_pubkey_verify(app, pub, sig, NULL, 0, kms.pub33, &err),
        KC_ECRYPTO);
    app[19] ^= 1;

    /* The JSON answer as the KMS sends it. */
    {
        char pk_hex[65], s_hex[131], s1_hex[131], *text;
        struct json_object *o;
        unsigned char got[32];

        hex(pub, 32, pk_hex);
        hex(sig, 65, s_hex);
        hex(sig1, 65, s1_hex);
        text = kc_xasprintf("{\"public_key\": \"%s\", \"signature\": \"0x%s\", "
                            "\"timestamp\": %llu, \"signature_v1\": \"%s\"}",
                            pk_hex, s_hex, (unsigned long long)ts, s1_hex);
        o = json_tokener_parse(text);
        cr_assert_not_null(o);
        cr_assert_eq(dstack_env_pubkey_from_json(o, app, kms.pub33, got, &err),
                     0, "%s", err.msg);
        cr_assert_eq(memcmp(got, pub, 32), 0);
        cr_assert_eq(
            dstack_env_pubkey_from_json(o, app, other.pub33, got, &err),
            KC_ECRYPTO);
        json_object_put(o);
        free(text);
        o = json_tokener_parse("{\"public_key\": \"zz\", \"signature\": \"\"}");
        cr_assert_eq(dstack_env_pubkey_from_json(o, app, kms.pub33, got, &err),
                     KC_EPARSE);
        cr_assert_not_null(strstr(err.msg, "public_key"), "%s", err.msg);
        json_object_put(o);
    }
    secp256k1_context_destroy(kms.ctx);
    secp256k1_context_destroy(other.ctx);
}
