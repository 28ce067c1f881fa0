/* tests/sim/svc_kms.c: the "kms" service of kmsctl-sim, a dstack KMS
 * emulator for the RPCs kmsctl calls (reference/dstack.md §1.1, §1.2):
 *
 *   GET|POST /prpc/KMS.GetMeta                {"k256_pubkey": "<hex 33>", ...}
 *   POST     /prpc/KMS.GetAppEnvEncryptPubKey {"app_id": "<hex 20>"} →
 *            {"public_key", "signature", "timestamp", "signature_v1"}
 *            (400 {"error": ...} for a bad app_id, as pRPC does)
 *   GET      /kms-sim/env-secret/{app_id}     test only: the X25519 private
 *            key of the app's env key, so a test can decrypt .encrypted-env
 *   POST     /kms-sim/rotate                  test only: every app gets a new
 *            env key (as after a new root key), {"generation": N}
 *   POST     /kms-sim/timestamp {"offset": S} test only: later answers are
 *            signed with timestamp now + S seconds (S < 0: a stale or
 *            replayed answer; default 0), {"offset": S}
 *
 * The root k256 key is fixed (SIM_K256_SECRET below; its compressed public
 * key is what tests pin); an app's X25519 secret is SHA-256("kmsctl-sim
 * env-encrypt-key" || app_id), after N rotations SHA-256(... || app_id ||
 * N as 4 big-endian bytes), so keys are deterministic; answers are signed
 * with the current time (plus the /kms-sim/timestamp offset). Serve it over
 * TLS (--tls-cert/--tls-key) as kmsctl only talks HTTPS to a KMS.
 */
#include "tests/sim/sim.h"

#include <time.h>

#include <openssl/evp.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "resources/chain/keccak.h"
#include "resources/dstack/envcrypt.h"

/* A fixed test key: 32 bytes of 0x11. */
static const unsigned char SIM_K256_SECRET[32] = {
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
};

static void hex_of(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

struct kms_state {
    uint32_t generation; /* rotations since start or reset */
    int64_t ts_offset;   /* seconds added to the signed timestamp */
};

static int kms_init(struct sim *sim, void **state)
{
    (void)sim;
    *state = kc_xcalloc(1, sizeof(struct kms_state));
    return 0;
}

static void kms_fini(struct sim *sim, void *state)
{
    (void)sim;
    free(state);
}

static int app_secret(const struct sim_req *req, const char *app_hex,
                      unsigned char app[20], unsigned char sk[32])
{
    static const char tag[] = "kmsctl-sim env-encrypt-key";
    const struct kms_state *st = sim_req_state(req);
    unsigned char msg[sizeof(tag) - 1 + 20 + 4];
    size_t len = sizeof(tag) - 1 + 20;
    unsigned int n = 0;
    struct kc_err e = { 0 };

    if (!app_hex || dstack_hex_decode(app_hex, app, 20, "app_id", &e) < 0)
        return -1;
    memcpy(msg, tag, sizeof(tag) - 1);
    memcpy(msg + sizeof(tag) - 1, app, 20);
    if (st && st->generation) {
        for (int i = 0; i < 4; i++)
            msg[len++] = (unsigned char)(st->generation >> (24 - 8 * i));
    }
    return EVP_Digest(msg, len, sk, &n, EVP_sha256(), NULL) == 1 && n == 32
               ? 0
               : -1;
}

static int x25519_public(const unsigned char sk[32], unsigned char pk[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, 32);
    size_t len = 32;
    int ok = k && EVP_PKEY_get_raw_public_key(k, pk, &len) == 1 && len == 32;

    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static int sign(secp256k1_context *ctx, const unsigned char digest[32],
                unsigned char out[65])
{
    secp256k1_ecdsa_recoverable_signature s;
    int recid = 0;

    if (!secp256k1_ecdsa_sign_recoverable(ctx, &s, digest, SIM_K256_SECRET,
                                          NULL, NULL) ||
        !secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out,
                                                                 &recid, &s))
        return -1;
    out[64] = (unsigned char)recid;
    return 0;
}

static void h_meta(struct sim *sim, struct sim_req *req)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_pubkey pk;
    unsigned char ser[33];
    size_t len = sizeof(ser);
    char hex[67];
    struct json_object *o;

    (void)sim;
    if (!ctx || !secp256k1_ec_pubkey_create(ctx, &pk, SIM_K256_SECRET) ||
        !secp256k1_ec_pubkey_serialize(ctx, ser, &len, &pk,
                                       SECP256K1_EC_COMPRESSED)) {
        secp256k1_context_destroy(ctx);
        sim_resp_error(req, 500, "secp256k1 failed");
        return;
    }
    secp256k1_context_destroy(ctx);
    hex_of(ser, 33, hex);
    o = json_object_new_object();
    json_object_object_add(o, "k256_pubkey", json_object_new_string(hex));
    json_object_object_add(o, "is_dev", json_object_new_boolean(0));
    sim_resp_json(req, 200, o);
}

static void prpc_error(struct sim_req *req, const char *msg)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "error", json_object_new_string(msg));
    sim_resp_json(req, 400, o);
}

static void h_env_key(struct sim *sim, struct sim_req *req)
{
    struct json_object *in = sim_req_json(req), *o;
    const char *app_hex;
    unsigned char app[20], sk[32], pk[32], digest[32], ts[8], sig[65], sig1[65];
    char pk_hex[65], sig_hex[131], sig1_hex[131];
    secp256k1_context *ctx;
    struct chain_keccak k;
    static const char pre[] = "dstack-env-encrypt-pubkey:";
    const struct kms_state *st = sim_req_state(req);
    uint64_t stamp = (uint64_t)time(NULL);

    (void)sim;
    if (!in)
        return;
    if (st)
        stamp += st->ts_offset;
    app_hex = json_object_get_string(json_object_object_get(in, "app_id"));
    if (app_secret(req, app_hex, app, sk) < 0 || x25519_public(sk, pk) < 0) {
        prpc_error(req, "invalid app_id");
        return;
    }
    ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    chain_keccak_init(&k);
    chain_keccak_update(&k, pre, sizeof(pre) - 1);
    chain_keccak_update(&k, app, 20);
    chain_keccak_update(&k, pk, 32);
    chain_keccak_final(&k, digest);
    for (int i = 0; i < 8; i++)
        ts[i] = (unsigned char)(stamp >> (56 - 8 * i));
    if (!ctx || sign(ctx, digest, sig) < 0) {
        secp256k1_context_destroy(ctx);
        sim_resp_error(req, 500, "signing failed");
        return;
    }
    chain_keccak_init(&k);
    chain_keccak_update(&k, pre, sizeof(pre) - 1);
    chain_keccak_update(&k, app, 20);
    chain_keccak_update(&k, ts, 8);
    chain_keccak_update(&k, pk, 32);
    chain_keccak_final(&k, digest);
    if (sign(ctx, digest, sig1) < 0) {
        secp256k1_context_destroy(ctx);
        sim_resp_error(req, 500, "signing failed");
        return;
    }
    secp256k1_context_destroy(ctx);
    hex_of(pk, 32, pk_hex);
    hex_of(sig, 65, sig_hex);
    hex_of(sig1, 65, sig1_hex);
    o = json_object_new_object();
    json_object_object_add(o, "public_key", json_object_new_string(pk_hex));
    json_object_object_add(o, "signature", json_object_new_string(sig_hex));
    json_object_object_add(o, "timestamp",
                           json_object_new_int64((int64_t)stamp));
    json_object_object_add(o, "signature_v1", json_object_new_string(sig1_hex));
    sim_resp_json(req, 200, o);
}

static void h_env_secret(struct sim *sim, struct sim_req *req)
{
    unsigned char app[20], sk[32];
    char hex[65];
    struct json_object *o;

    (void)sim;
    if (app_secret(req, sim_req_param(req, "app_id"), app, sk) < 0) {
        sim_resp_error(req, 400, "bad app_id");
        return;
    }
    hex_of(sk, 32, hex);
    o = json_object_new_object();
    json_object_object_add(o, "private_key", json_object_new_string(hex));
    sim_resp_json(req, 200, o);
}

static void h_rotate(struct sim *sim, struct sim_req *req)
{
    struct kms_state *st = sim_req_state(req);
    struct json_object *o = json_object_new_object();

    (void)sim;
    st->generation++;
    json_object_object_add(o, "generation",
                           json_object_new_int64((int64_t)st->generation));
    sim_resp_json(req, 200, o);
}

static void h_timestamp(struct sim *sim, struct sim_req *req)
{
    struct kms_state *st = sim_req_state(req);
    struct json_object *in = sim_req_json(req), *v, *o;

    (void)sim;
    if (!in)
        return;
    if (!json_object_object_get_ex(in, "offset", &v) ||
        !json_object_is_type(v, json_type_int)) {
        sim_resp_error(req, 400, "expected {\"offset\": <seconds>}");
        return;
    }
    st->ts_offset = json_object_get_int64(v);
    o = json_object_new_object();
    json_object_object_add(o, "offset", json_object_new_int64(st->ts_offset));
    sim_resp_json(req, 200, o);
}

static const struct sim_route kms_routes[] = {
    { "*", "/prpc/KMS.GetMeta", h_meta, false },
    { "POST", "/prpc/KMS.GetAppEnvEncryptPubKey", h_env_key, false },
    { "GET", "/kms-sim/env-secret/{app_id}", h_env_secret, false },
    { "POST", "/kms-sim/rotate", h_rotate, false },
    { "POST", "/kms-sim/timestamp", h_timestamp, false },
    { NULL, NULL, NULL, false },
};

const struct sim_service sim_svc_kms = {
    .name = "kms",
    .routes = kms_routes,
    .init = kms_init,
    .fini = kms_fini,
};
