/* tests/unit/test_chain_txm.c: the JSON-RPC client and the transaction
 * manager against anvil: batching, parallel sends with consecutive nonces,
 * chain id check before any write, reverts decoded before a nonce is used,
 * "nonce too low" resync, write-ahead hook before broadcast with the CREATE
 * address, and a dropped transaction re-broadcast with bumped fees. Chain
 * state is checked with the helper's own JSON-RPC calls. */
#include "reconcile/buf.h"
#include "reconcile/http.h"
#include "resources/chain/abi.h"
#include "resources/chain/artifact.h"
#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"
#include "resources/chain/rpc.h"
#include "resources/chain/signer.h"
#include "resources/chain/tx.h"
#include "resources/chain/txm.h"

#include "helpers/chain_anvil.h"

#include <criterion/criterion.h>
#include <unistd.h>

struct env {
    struct chain_anvil anvil;
    uv_loop_t loop;
    struct kc_http *http;
    struct chain_rpc *rpc;
    struct chain_signer *signer;
    struct chain_txm *txm;
    struct chain_artifact *app, *proxy;
};

static struct env E;

static struct chain_signer *signer_of(const char *hex)
{
    struct kc_secret *k = kc_secret_new(hex, strlen(hex));
    struct chain_signer *s = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(chain_signer_from_hex(k, &s, &err), 0);
    kc_secret_free(k);
    return s;
}

static void make_txm(const char *key, uint64_t chain_id, uint64_t timeout_ms)
{
    struct chain_txm_config tc = { 0 };
    struct kc_err err = { 0 };

    E.signer = signer_of(key);
    tc.loop = &E.loop;
    tc.rpc = E.rpc;
    tc.signer = E.signer;
    tc.chain_id = chain_id;
    tc.tx_timeout_ms = timeout_ms;
    cr_assert_eq(chain_txm_new(&tc, &E.txm, &err), 0, "%s", err.msg);
    chain_txm_add_error_abi(E.txm, E.app->abi);
}

static void setup_with(const char *const *anvil_args)
{
    struct kc_http_config hc = { 0 };
    struct chain_rpc_config rc = { 0 };
    struct kc_err err = { 0 };

    memset(&E, 0, sizeof(E));
    cr_assert_eq(chain_anvil_start(&E.anvil, anvil_args), 0);
    cr_assert_eq(uv_loop_init(&E.loop), 0);
    hc.loop = &E.loop;
    cr_assert_eq(kc_http_new(&hc, &E.http, &err), 0, "%s", err.msg);
    rc.loop = &E.loop;
    rc.http = E.http;
    rc.url = E.anvil.url;
    cr_assert_eq(chain_rpc_new(&rc, &E.rpc, &err), 0, "%s", err.msg);
    cr_assert_eq(
        chain_artifact_load(chain_anvil_artifacts(), "DstackApp", &E.app, &err),
        0, "%s", err.msg);
    cr_assert_eq(chain_artifact_load(chain_anvil_artifacts(), "ERC1967Proxy",
                                     &E.proxy, &err),
                 0, "%s", err.msg);
}

static void setup(void)
{
    setup_with(NULL);
}

static void setup_block_time(void)
{
    static const char *const args[] = { "--block-time", "1", NULL };
    setup_with(args);
}

static void setup_no_mining(void)
{
    static const char *const args[] = { "--no-mining", NULL };
    setup_with(args);
}

static void teardown(void)
{
    chain_txm_free(E.txm);
    chain_rpc_free(E.rpc);
    kc_http_close(E.http);
    uv_run(&E.loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&E.loop), 0, "a handle was leaked");
    chain_signer_free(E.signer);
    chain_artifact_free(E.app);
    chain_artifact_free(E.proxy);
    chain_anvil_stop(&E.anvil);
}

/* ---- helpers -------------------------------------------------------- */

struct waiter {
    struct chain_tx_req req;
    int status;
    bool done;
};

static void on_tx(struct chain_tx_req *req, int status)
{
    struct waiter *w = kc_container_of(req, struct waiter, req);

    w->status = status;
    w->done = true;
}

static void run_until(bool *flag)
{
    while (!*flag && uv_run(&E.loop, UV_RUN_ONCE))
        ;
    cr_assert(*flag, "the loop ended before the operation finished");
}

/* Sends W: a transfer of nothing to TO (20 bytes) through E.txm. */
static void send_transfer(struct waiter *w, const uint8_t *to)
{
    struct kc_err err = { 0 };

    w->req.what = "transfer";
    w->req.has_to = true;
    memcpy(w->req.to, to, 20);
    cr_assert_eq(chain_txm_send(E.txm, &w->req, on_tx, &err), 0, "%s", err.msg);
}

static uint64_t nonce_of(const uint8_t addr[20], const char *tag)
{
    char a[43], params[128];

    chain_hex_encode(addr, 20, true, a, sizeof(a));
    snprintf(params, sizeof(params), "[\"%s\",\"%s\"]", a, tag);
    return chain_anvil_rpc_u64(E.anvil.url, "eth_getTransactionCount", params);
}

/* Deploys DstackApp behind a proxy owned by E.signer; returns the proxy. */
static void deploy_app(uint8_t out[20])
{
    struct waiter impl = { 0 }, px = { 0 };
    struct kc_buf init = { 0 }, code = { 0 };
    struct chain_abi_value args[5], cargs[2];
    const struct chain_abi_entry *fn, *ctor;
    struct kc_err err = { 0 };
    uint8_t zero[32] = { 0 };

    impl.req.what = "deploy DstackApp";
    impl.req.input = E.app->bytecode;
    impl.req.input_len = E.app->bytecode_len;
    cr_assert_eq(chain_txm_send(E.txm, &impl.req, on_tx, &err), 0, "%s",
                 err.msg);
    run_until(&impl.done);
    cr_assert_eq(impl.status, 0, "%s", impl.req.err.msg);
    fn = chain_abi_find(E.app->abi, CHAIN_ABI_FUNCTION,
                        "initialize(address,bool,bool,bytes32,bytes32)");
    cr_assert_not_null(fn);
    chain_abi_val_address(&args[0], chain_signer_address(E.signer));
    chain_abi_val_bool(&args[1], false);
    chain_abi_val_bool(&args[2], false);
    chain_abi_val_bytes32(&args[3], zero);
    chain_abi_val_bytes32(&args[4], zero);
    cr_assert_eq(chain_abi_encode_call(fn, args, 5, &init, &err), 0);
    ctor = chain_abi_find(E.proxy->abi, CHAIN_ABI_CONSTRUCTOR, "");
    chain_abi_val_address(&cargs[0], impl.req.contract);
    chain_abi_val_bytes(&cargs[1], init.data, init.len);
    kc_buf_add(&code, E.proxy->bytecode, E.proxy->bytecode_len);
    cr_assert_eq(chain_abi_encode(ctor->in, cargs, 2, &code, &err), 0);
    chain_abi_value_release(&cargs[1]);
    px.req.what = "deploy ERC1967Proxy";
    px.req.input = (const uint8_t *)code.data;
    px.req.input_len = code.len;
    cr_assert_eq(chain_txm_send(E.txm, &px.req, on_tx, &err), 0);
    run_until(&px.done);
    cr_assert_eq(px.status, 0, "%s", px.req.err.msg);
    memcpy(out, px.req.contract, 20);
    chain_tx_req_release(&impl.req);
    chain_tx_req_release(&px.req);
    kc_buf_release(&init);
    kc_buf_release(&code);
}

static void hash_of(int i, uint8_t h[32])
{
    char s[32];

    snprintf(s, sizeof(s), "compose-%d", i);
    chain_keccak256(s, strlen(s), h);
}

static void add_hash_call(int i, struct kc_buf *out)
{
    const struct chain_abi_entry *fn =
        chain_abi_find(E.app->abi, CHAIN_ABI_FUNCTION, "addComposeHash");
    struct chain_abi_value v;
    struct kc_err err = { 0 };
    uint8_t h[32];

    hash_of(i, h);
    chain_abi_val_bytes32(&v, h);
    cr_assert_eq(chain_abi_encode_call(fn, &v, 1, out, &err), 0);
}

static bool hash_allowed(const uint8_t app[20], int i)
{
    struct kc_buf p = { 0 };
    struct json_object *r;
    char a[43];
    uint8_t h[32];
    bool yes;

    hash_of(i, h);
    chain_hex_encode(app, 20, true, a, sizeof(a));
    kc_buf_addf(&p, "[{\"to\":\"%s\",\"data\":\"0x2f6622e5", a);
    for (int k = 0; k < 32; k++)
        kc_buf_addf(&p, "%02x", h[k]);
    kc_buf_addstr(&p, "\"},\"latest\"]");
    r = chain_anvil_rpc(E.anvil.url, "eth_call", p.data, NULL);
    cr_assert_not_null(r);
    yes = json_object_get_string(r)[65] == '1';
    json_object_put(r);
    kc_buf_release(&p);
    return yes;
}

/* ---- tests ---------------------------------------------------------- */

TestSuite(chain_txm, .timeout = 180);

Test(chain_txm, parallel_sends_get_consecutive_nonces_and_batched_reads,
     .init = setup_block_time, .fini = teardown)
{
    enum {
        N = 20
    };
    struct waiter w[N];
    struct kc_buf calls[N];
    struct chain_rpc_stats before, after;
    struct kc_err err = { 0 };
    uint8_t app[20];
    uint64_t first_block = UINT64_MAX, last_block = 0, n0;
    bool seen[N] = { false };

    make_txm(CHAIN_ANVIL_KEY0, 31337, 60000);
    deploy_app(app);
    n0 = nonce_of(chain_signer_address(E.signer), "latest");
    chain_rpc_get_stats(E.rpc, &before);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < N; i++) {
        memset(&calls[i], 0, sizeof(calls[i]));
        add_hash_call(i, &calls[i]);
        w[i].req.what = "addComposeHash";
        w[i].req.has_to = true;
        memcpy(w[i].req.to, app, 20);
        w[i].req.input = (const uint8_t *)calls[i].data;
        w[i].req.input_len = calls[i].len;
        cr_assert_eq(chain_txm_send(E.txm, &w[i].req, on_tx, &err), 0);
    }
    for (int i = 0; i < N; i++) {
        run_until(&w[i].done);
        cr_assert_eq(w[i].status, 0, "tx %d: %s", i, w[i].req.err.msg);
        cr_assert_geq(w[i].req.nonce, n0);
        cr_assert_lt(w[i].req.nonce, n0 + N);
        cr_assert(!seen[w[i].req.nonce - n0], "nonce used twice");
        seen[w[i].req.nonce - n0] = true;
        if (w[i].req.block_number < first_block)
            first_block = w[i].req.block_number;
        if (w[i].req.block_number > last_block)
            last_block = w[i].req.block_number;
    }
    chain_rpc_get_stats(E.rpc, &after);
    /* 20 estimates + 20 sends + fees: a handful of HTTP requests, not 40+ */
    cr_expect_leq(after.requests - before.requests,
                  4 + (last_block - first_block + 2) * 3,
                  "%llu HTTP requests for %llu calls",
                  (unsigned long long)(after.requests - before.requests),
                  (unsigned long long)(after.calls - before.calls));
    cr_expect_eq(after.sends - before.sends, N);
    /* sent together: mined within two blocks of one second */
    cr_expect_leq(last_block - first_block, 1, "blocks %llu..%llu",
                  (unsigned long long)first_block,
                  (unsigned long long)last_block);
    cr_expect_eq(nonce_of(chain_signer_address(E.signer), "latest"), n0 + N);
    for (int i = 0; i < N; i++) {
        cr_expect(hash_allowed(app, i), "hash %d not allowed on chain", i);
        chain_tx_req_release(&w[i].req);
        kc_buf_release(&calls[i]);
    }
}

Test(chain_txm, wrong_chain_id_sends_nothing, .init = setup, .fini = teardown)
{
    struct waiter w = { 0 };
    struct kc_err err = { 0 };
    uint8_t self[20];
    uint64_t n0;

    make_txm(CHAIN_ANVIL_KEY0, 84532, 60000);
    memcpy(self, chain_signer_address(E.signer), 20);
    n0 = nonce_of(self, "pending");
    send_transfer(&w, self);
    run_until(&w.done);
    cr_expect_eq(w.status, KC_EPERM);
    cr_expect_not_null(strstr(w.req.err.msg, "chain id is 31337"), "%s",
                       w.req.err.msg);
    cr_expect_eq(nonce_of(self, "pending"), n0);
    /* and it stays refused without asking again */
    cr_expect_eq(chain_txm_send(E.txm, &w.req, on_tx, &err), KC_EPERM);
}

Test(chain_txm, non_owner_write_fails_with_decoded_error_and_no_nonce,
     .init = setup, .fini = teardown)
{
    struct waiter w = { 0 };
    struct kc_buf call = { 0 };
    struct kc_err err = { 0 };
    struct chain_signer *intruder = signer_of(CHAIN_ANVIL_KEY1);
    struct chain_txm *owner_txm;
    uint8_t app[20];
    uint64_t n1;

    make_txm(CHAIN_ANVIL_KEY0, 31337, 60000);
    deploy_app(app);
    /* the same app, written by account 1 */
    owner_txm = E.txm;
    {
        struct chain_txm_config tc = { 0 };
        tc.loop = &E.loop;
        tc.rpc = E.rpc;
        tc.signer = intruder;
        tc.chain_id = 31337;
        cr_assert_eq(chain_txm_new(&tc, &E.txm, &err), 0);
        chain_txm_add_error_abi(E.txm, E.app->abi);
    }
    n1 = nonce_of(chain_signer_address(intruder), "pending");
    add_hash_call(1, &call);
    w.req.what = "addComposeHash on 'chain.app_compose_hash.x'";
    w.req.has_to = true;
    memcpy(w.req.to, app, 20);
    w.req.input = (const uint8_t *)call.data;
    w.req.input_len = call.len;
    cr_assert_eq(chain_txm_send(E.txm, &w.req, on_tx, &err), 0);
    run_until(&w.done);
    cr_expect_eq(w.status, KC_EREMOTE);
    cr_expect_not_null(strstr(w.req.err.msg,
                              "OwnableUnauthorizedAccount(" CHAIN_ANVIL_ADDR1
                              ")"),
                       "%s", w.req.err.msg);
    cr_expect_not_null(strstr(w.req.err.msg, "chain.app_compose_hash.x"));
    cr_expect_eq(nonce_of(chain_signer_address(intruder), "pending"), n1);
    chain_txm_free(E.txm);
    E.txm = owner_txm;
    chain_signer_free(intruder);
    kc_buf_release(&call);
}

struct hook_waiter {
    struct waiter w;
    uint64_t pending_at_hook;
    uint8_t predicted[20];
    int calls;
};

static void on_signed_check(struct chain_tx_req *req)
{
    struct hook_waiter *h = kc_container_of(req, struct hook_waiter, w.req);

    h->calls++;
    h->pending_at_hook = nonce_of(chain_signer_address(E.signer), "pending");
    memcpy(h->predicted, req->contract, 20);
    chain_txm_continue(req, 0);
}

Test(chain_txm, nonce_too_low_resyncs_and_hook_sees_the_new_address,
     .init = setup, .fini = teardown)
{
    struct waiter first = { 0 };
    struct hook_waiter h = { 0 };
    struct chain_tx tx = { 0 };
    struct kc_buf raw = { 0 }, params = { 0 };
    struct kc_err err = { 0 };
    struct json_object *r;
    uint8_t self[20], hash[32];
    uint64_t n;

    make_txm(CHAIN_ANVIL_KEY0, 31337, 60000);
    memcpy(self, chain_signer_address(E.signer), 20);
    /* one transaction makes the manager read the nonce */
    send_transfer(&first, self);
    run_until(&first.done);
    cr_assert_eq(first.status, 0, "%s", first.req.err.msg);
    /* someone else (same key) takes the next nonce behind its back */
    n = nonce_of(self, "pending");
    tx.type = CHAIN_TX_EIP1559;
    tx.chain_id = 31337;
    tx.nonce = n;
    tx.gas = 21000;
    tx.max_fee = 100000000000ULL;
    tx.max_priority_fee = 1000000000ULL;
    tx.has_to = true;
    memcpy(tx.to, self, 20);
    cr_assert_eq(chain_tx_sign(&tx, E.signer, &raw, hash, &err), 0);
    kc_buf_addstr(&params, "[\"");
    chain_hex_add(&params, raw.data, raw.len);
    kc_buf_addstr(&params, "\"]");
    r = chain_anvil_rpc(E.anvil.url, "eth_sendRawTransaction", params.data,
                        NULL);
    cr_assert_not_null(r);
    json_object_put(r);
    /* mined (automine): the node counts it before the manager sends */
    for (int i = 0; i < 1200 && nonce_of(self, "latest") <= n; i++)
        usleep(50000);
    cr_assert_eq(nonce_of(self, "latest"), n + 1, "the transfer was not mined");
    /* a deploy now: nonce n is gone, the manager must move to n + 1 */
    h.w.req.what = "deploy DstackApp";
    h.w.req.input = E.app->bytecode;
    h.w.req.input_len = E.app->bytecode_len;
    h.w.req.on_signed = on_signed_check;
    cr_assert_eq(chain_txm_send(E.txm, &h.w.req, on_tx, &err), 0);
    run_until(&h.w.done);
    cr_assert_eq(h.w.status, 0, "%s", h.w.req.err.msg);
    cr_expect_eq(h.w.req.nonce, n + 1);
    cr_expect_eq(h.calls, 2, "the hook runs again for the new nonce");
    /* the hook ran before the broadcast that counted */
    cr_expect_eq(h.pending_at_hook, n + 1);
    cr_expect_eq(memcmp(h.predicted, h.w.req.contract, 20), 0,
                 "CREATE address known before sending");
    chain_tx_req_release(&first.req);
    chain_tx_req_release(&h.w.req);
    kc_buf_release(&raw);
    kc_buf_release(&params);
}

/* A timer that drops the transaction once it is in the pool, then turns
 * on mining. */
struct dropper {
    uv_timer_t t;
    struct waiter *w;
    char dropped[67];
    uint64_t dropped_fee;
    bool done;
};

static uint64_t tx_max_fee(const char *hash)
{
    char p[96];
    struct json_object *r;
    uint64_t v = 0;

    snprintf(p, sizeof(p), "[\"%s\"]", hash);
    r = chain_anvil_rpc(E.anvil.url, "eth_getTransactionByHash", p, NULL);
    if (r) {
        const char *f =
            json_object_get_string(json_object_object_get(r, "maxFeePerGas"));
        if (f)
            v = strtoull(f + 2, NULL, 16);
        json_object_put(r);
    }
    return v;
}

static void on_drop_timer(uv_timer_t *t)
{
    struct dropper *d = kc_container_of(t, struct dropper, t);
    char p[96];
    struct json_object *r;

    if (d->w->req.broadcasts == 0)
        return; /* not sent yet: try again at the next tick */
    chain_hex_encode(d->w->req.hash, 32, true, d->dropped, sizeof(d->dropped));
    d->dropped_fee = tx_max_fee(d->dropped);
    snprintf(p, sizeof(p), "[\"%s\"]", d->dropped);
    r = chain_anvil_rpc(E.anvil.url, "anvil_dropTransaction", p, NULL);
    json_object_put(r);
    r = chain_anvil_rpc(E.anvil.url, "evm_setIntervalMining", "[1]", NULL);
    json_object_put(r);
    d->done = true;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
}

Test(chain_txm, dropped_transaction_is_rebroadcast_with_bumped_fees,
     .init = setup_no_mining, .fini = teardown)
{
    struct waiter w = { 0 };
    struct dropper d = { 0 };
    uint8_t self[20];
    char mined[67];

    make_txm(CHAIN_ANVIL_KEY0, 31337, 1500);
    memcpy(self, chain_signer_address(E.signer), 20);
    send_transfer(&w, self);
    d.w = &w;
    cr_assert_eq(uv_timer_init(&E.loop, &d.t), 0);
    cr_assert_eq(uv_timer_start(&d.t, on_drop_timer, 50, 50), 0);
    run_until(&w.done);
    cr_assert(d.done);
    cr_assert_eq(w.status, 0, "%s", w.req.err.msg);
    cr_expect_geq(w.req.broadcasts, 2, "re-broadcast after the drop");
    chain_hex_encode(w.req.hash, 32, true, mined, sizeof(mined));
    cr_expect_str_neq(mined, d.dropped, "the mined tx is the bumped one");
    cr_expect_geq(tx_max_fee(mined) * 8, d.dropped_fee * 9,
                  "fee %llu not bumped 12.5%% over %llu",
                  (unsigned long long)tx_max_fee(mined),
                  (unsigned long long)d.dropped_fee);
    chain_tx_req_release(&w.req);
}

Test(chain_txm, fee_cap_below_the_base_fee_sends_nothing, .init = setup,
     .fini = teardown)
{
    struct chain_txm_config tc = { 0 };
    struct waiter w = { 0 };
    struct kc_err err = { 0 };
    uint8_t self[20];
    uint64_t n0;

    E.signer = signer_of(CHAIN_ANVIL_KEY0);
    tc.loop = &E.loop;
    tc.rpc = E.rpc;
    tc.signer = E.signer;
    tc.chain_id = 31337;
    tc.max_fee_wei = 1000; /* far below anvil's 1 gwei base fee */
    cr_assert_eq(chain_txm_new(&tc, &E.txm, &err), 0);
    memcpy(self, chain_signer_address(E.signer), 20);
    n0 = nonce_of(self, "pending");
    send_transfer(&w, self);
    run_until(&w.done);
    cr_expect_eq(w.status, KC_EPERM);
    cr_expect_not_null(strstr(w.req.err.msg, "max_fee_gwei"), "%s",
                       w.req.err.msg);
    cr_expect_eq(nonce_of(self, "pending"), n0);
}

Test(chain_txm, legacy_transactions_are_eip155_and_mined, .init = setup,
     .fini = teardown)
{
    struct chain_txm_config tc = { 0 };
    struct waiter w = { 0 };
    struct kc_err err = { 0 };
    struct json_object *tx;
    char hash[67], p[96];
    uint8_t self[20];

    E.signer = signer_of(CHAIN_ANVIL_KEY0);
    tc.loop = &E.loop;
    tc.rpc = E.rpc;
    tc.signer = E.signer;
    tc.chain_id = 31337;
    tc.legacy = true;
    tc.max_fee_wei = 50000000000ULL;
    cr_assert_eq(chain_txm_new(&tc, &E.txm, &err), 0);
    memcpy(self, chain_signer_address(E.signer), 20);
    send_transfer(&w, self);
    run_until(&w.done);
    cr_assert_eq(w.status, 0, "%s", w.req.err.msg);
    chain_hex_encode(w.req.hash, 32, true, hash, sizeof(hash));
    snprintf(p, sizeof(p), "[\"%s\"]", hash);
    tx = chain_anvil_rpc(E.anvil.url, "eth_getTransactionByHash", p, NULL);
    cr_assert_not_null(tx);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(tx, "type")),
                     "0x0");
    /* EIP-155: v = recid + 31337 * 2 + 35 */
    {
        uint64_t v = strtoull(
            json_object_get_string(json_object_object_get(tx, "v")) + 2, NULL,
            16);
        cr_expect(v == 31337 * 2 + 35 || v == 31337 * 2 + 36, "v = %llu",
                  (unsigned long long)v);
    }
    json_object_put(tx);
    chain_tx_req_release(&w.req);
}

/* ---- a dead node ---------------------------------------------------- */

struct killer {
    uv_timer_t t;
    struct waiter *w;
    bool killed;
};

static void on_kill_timer(uv_timer_t *t)
{
    struct killer *k = kc_container_of(t, struct killer, t);

    if (k->w->req.broadcasts == 0)
        return;
    chain_anvil_stop(&E.anvil); /* the transaction is in its pool, unmined */
    k->killed = true;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
}

Test(chain_txm, a_sent_transaction_stops_waiting_when_the_node_is_gone,
     .init = setup_no_mining, .fini = teardown)
{
    struct chain_txm_config tc = { 0 };
    struct waiter w = { 0 };
    struct killer k = { 0 };
    struct kc_err err = { 0 };
    uint64_t t0;

    E.signer = signer_of(CHAIN_ANVIL_KEY0);
    tc.loop = &E.loop;
    tc.rpc = E.rpc;
    tc.signer = E.signer;
    tc.chain_id = 31337;
    tc.tx_timeout_ms = 500; /* re-broadcasts are tried (and fail) too */
    tc.rpc_deadline_ms = 1500;
    cr_assert_eq(chain_txm_new(&tc, &E.txm, &err), 0, "%s", err.msg);
    send_transfer(&w, chain_signer_address(E.signer));
    k.w = &w;
    cr_assert_eq(uv_timer_init(&E.loop, &k.t), 0);
    cr_assert_eq(uv_timer_start(&k.t, on_kill_timer, 20, 20), 0);
    t0 = uv_hrtime();
    run_until(&w.done);
    cr_assert(k.killed, "the transaction was never broadcast");
    cr_assert_eq(w.status, KC_ETIMEDOUT, "status %d: %s", w.status,
                 w.req.err.msg);
    cr_assert(strstr(w.req.err.msg, "has not answered"), "%s", w.req.err.msg);
    cr_assert(strstr(w.req.err.msg, "the next run looks for it"), "%s",
              w.req.err.msg);
    /* Bounded: the deadline plus one poll's HTTP retries, not forever. */
    cr_assert_lt((uv_hrtime() - t0) / 1000000, 30000);
    chain_tx_req_release(&w.req);
}
