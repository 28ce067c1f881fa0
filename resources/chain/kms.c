/* resources/chain/kms.c: chain.kms, the DstackKms proxy.
 *
 * Create does what `kms:deploy --with-app-impl` does (reference/dstack.md
 * section 3.6), faster and crash-safe: the DstackApp and DstackKms
 * implementations go out together, then ERC1967Proxy(kmsImpl,
 * initialize(signer, appImpl)) once both are mined. Before each deploy is
 * broadcast, its nonce and CREATE address are recorded as a write-ahead
 * intent and the state is written; a later run finds code at a recorded
 * address and reuses or adopts it instead of deploying again, and waits
 * while a recorded nonce is still pending. After each receipt, eth_getCode
 * must return code before going on (the guide's "no code at address").
 *
 * Adoption: `address:` names an existing proxy: it must have code and its
 * owner() must be the signer (checked at observe, before any write);
 * `app_implementation:` is compared with appImplementation() and set with
 * setAppImplementation when it differs. Contracts are never deleted
 * (KC_KIND_RETAIN). */
#include "resources/chain/chain.h"

#include "reconcile/buf.h"
#include "resources/chain/hex.h"

#define KMS_CODE_TRIES    40
#define KMS_CODE_WAIT_MS  250
#define KMS_PENDING_WAITS 300 /* recovery: a recorded nonce still pending */
#define KMS_PENDING_MS    1000

enum {
    D_APP = 0,
    D_KMS,
    D_PROXY,
    D_COUNT
};
static const char *const d_names[D_COUNT] = { "app_impl", "kms_impl", "proxy" };

struct kms_op;

struct deploy {
    struct kms_op *k;
    int which;
    bool known;      /* address recorded or mined */
    bool have;       /* code is there */
    bool inflight;   /* a transaction or a check is running */
    bool checking;   /* recovery check (vs. after-receipt code wait) */
    bool persisting; /* signed, its intent in the persist in flight */
    bool queued;     /* signed, its intent waits for the next persist */
    uint64_t nonce;
    uint8_t addr[20];
    int64_t block;
    int tries;
    struct chain_tx_req tx;
    struct kc_buf code;
    struct chain_rpc_call c_code, c_nonce, c_pending;
    int calls;
    bool code_seen;
    uint64_t latest_nonce;
    uint64_t pending_nonce; /* recovery: the node's pending count */
    uv_timer_t timer;
    char what[64];
};

struct kms_op {
    struct kc_op *op;
    bool persist_busy; /* a kc_op_persist is in flight */
    struct chain_prov *cp;
    struct deploy d[D_COUNT];
    int inflight; /* deploys with work running */
    int status;
    bool finishing;
    int handles;
    /* contract reads (observe, adoption, the end of create) */
    uint8_t addr[20];
    struct chain_read rd_owner, rd_impl;
    struct chain_rpc_call c_code;
    int reads;
    int read_status;
    bool code_empty;
    bool exists; /* observed */
    void (*after_reads)(struct kms_op *k, int status);
    /* update */
    struct chain_tx_req tx_impl;
    struct kc_buf calldata;
};

static void kms_step(struct kms_op *k);
static int64_t prior_deploy_block(struct kc_op *op);

/* ---- lifetime ------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct kms_op *k = h->data;

    if (--k->handles > 0)
        return;
    for (int i = 0; i < D_COUNT; i++) {
        chain_tx_req_release(&k->d[i].tx);
        kc_buf_release(&k->d[i].code);
    }
    chain_read_release(&k->rd_owner);
    chain_read_release(&k->rd_impl);
    chain_tx_req_release(&k->tx_impl);
    kc_buf_release(&k->calldata);
    free(k);
}

static struct kms_op *kms_new(struct kc_op *op)
{
    struct kms_op *k = kc_xcalloc(1, sizeof(*k));

    k->op = op;
    k->cp = chain_prov_of(op);
    for (int i = 0; i < D_COUNT; i++) {
        k->d[i].k = k;
        k->d[i].which = i;
        k->d[i].block = -1;
        if (uv_timer_init(kc_op_loop(op), &k->d[i].timer) < 0)
            KC_BUG("uv_timer_init");
        k->d[i].timer.data = k;
        k->handles++;
    }
    chain_op_link(op, k);
    return k;
}

/* Completes the op once nothing runs any more. */
static void kms_finish(struct kms_op *k, int status)
{
    struct kc_op *op = k->op;

    if (status < 0 && k->status == 0)
        k->status = status;
    k->finishing = true;
    if (k->inflight > 0 || k->reads > 0)
        return;
    chain_op_unlink(op);
    /* Reads hold decoded values: free them now, while the provider (and
     * its function table) is certainly alive. */
    chain_read_release(&k->rd_owner);
    chain_read_release(&k->rd_impl);
    if (kc_op_phase(op) == KC_PHASE_OBSERVE || (k->exists && k->status == 0))
        chain_parent_publish(k->cp, kc_op_address(op),
                             k->exists && k->status == 0 ? k->addr : NULL,
                             k->d[D_PROXY].block >= 0 ? k->d[D_PROXY].block
                                                      : prior_deploy_block(op));
    for (int i = 0; i < D_COUNT; i++)
        uv_close((uv_handle_t *)&k->d[i].timer, on_handle_closed);
    kc_op_done(op, k->status);
}

static void kms_fail(struct kms_op *k, int code, const char *fmt, ...)
    KC_PRINTF(3, 4);

static void kms_fail(struct kms_op *k, int code, const char *fmt, ...)
{
    va_list ap;

    if (k->status == 0) {
        va_start(ap, fmt);
        vsnprintf(kc_op_err(k->op)->msg, sizeof(kc_op_err(k->op)->msg), fmt,
                  ap);
        va_end(ap);
        kc_op_err(k->op)->code = code;
        k->status = code;
    }
    kms_finish(k, code);
}

/* ---- reading the contract ------------------------------------------- */

static int64_t prior_deploy_block(struct kc_op *op)
{
    const struct kc_value *v = kc_op_prior_output(op, "deploy_block");

    return v && v->type == KC_VALUE_INT ? kc_value_int(v, -1) : -1;
}

static void set_observed(struct kms_op *k, const uint8_t owner[20],
                         const uint8_t impl[20], int64_t deploy_block)
{
    struct kc_op *op = k->op;
    struct kc_value *m = kc_value_new_map();
    char a[43];

    kc_value_map_set(m, "address", chain_addr_value(k->addr));
    kc_value_map_set(m, "app_implementation", chain_addr_value(impl));
    kc_value_map_set(m, "owner", chain_addr_value(owner));
    /* Where the artifacts are is not a property of the chain: as wanted. */
    if (kc_op_desired(op, "artifacts"))
        kc_value_map_set(m, "artifacts",
                         kc_value_dup(kc_op_desired(op, "artifacts")));
    if (deploy_block >= 0)
        kc_value_map_set(m, "deploy_block", kc_value_new_int(deploy_block));
    kc_op_set_observed(op, m);
    chain_hex_encode(k->addr, 20, true, a, sizeof(a));
    kc_op_set_id(op, a);
    kc_op_set_output(op, "address", chain_addr_value(k->addr));
    kc_op_set_output(op, "app_implementation", chain_addr_value(impl));
    kc_op_set_output(op, "owner", chain_addr_value(owner));
    /* Unknown (adopted): 0, where event scans then start. */
    kc_op_set_output(op, "deploy_block",
                     kc_value_new_int(deploy_block >= 0 ? deploy_block : 0));
}

static void read_one_done(struct kms_op *k, int status, const char *msg)
{
    if (status < 0 && k->read_status == 0) {
        k->read_status = status;
        kc_err_set(kc_op_err(k->op), status, "%s", msg);
    }
    if (--k->reads == 0)
        k->after_reads(k, k->read_status);
}

static void on_read(struct chain_read *r, int status)
{
    read_one_done(r->data, status, r->err.msg);
}

static void on_read_code(struct chain_rpc_call *call, int status)
{
    struct kms_op *k = call->data;
    const char *s = status == 0 ? json_object_get_string(call->result) : NULL;
    char msg[sizeof(call->err.msg)];

    k->code_empty = status == 0 && (!s || strcmp(s, "0x") == 0);
    memcpy(msg, call->err.msg, sizeof(msg));
    chain_rpc_call_release(call);
    read_one_done(k, status, msg);
}

/* Reads the code, owner() and appImplementation() of k->addr, in one
 * batch; then k->after_reads(k, status). */
static void read_contract(struct kms_op *k,
                          void (*then)(struct kms_op *k, int status))
{
    struct chain_prov *cp = k->cp;
    struct json_object *p = json_object_new_array();
    struct kc_err err = { 0 };

    k->after_reads = then;
    k->read_status = 0;
    k->reads = 3;
    chain_read_release(&k->rd_owner);
    chain_read_release(&k->rd_impl);
    k->rd_owner.data = k;
    k->rd_impl.data = k;
    k->c_code.data = k;
    json_object_array_add(p, chain_rpc_address(k->addr));
    json_object_array_add(p, json_object_new_string("latest"));
    if (chain_rpc_call(cp->rpc, &k->c_code, "eth_getCode", p, on_read_code,
                       &err) < 0)
        read_one_done(k, err.code, err.msg);
    if (chain_read_start(cp, &k->rd_owner, k->addr, cp->fn[FN_OWNER], NULL, 0,
                         on_read, &err) < 0)
        read_one_done(k, err.code, err.msg);
    if (chain_read_start(cp, &k->rd_impl, k->addr,
                         cp->fn[FN_APP_IMPLEMENTATION], NULL, 0, on_read,
                         &err) < 0)
        read_one_done(k, err.code, err.msg);
}

static bool adopting(struct kms_op *k)
{
    const struct kc_value *a = kc_op_desired(k->op, "address");

    return a && a->type == KC_VALUE_STRING;
}

/* After read_contract: *EXISTS, and the observed attributes set. < 0 (op
 * error set) when the contract is there but cannot be managed. */
static int check_contract(struct kms_op *k, int status, int64_t block,
                          bool *exists)
{
    const uint8_t *owner, *impl;
    char o[43], s[43];

    *exists = false;
    if (k->code_empty)
        return 0;
    if (status < 0)
        return status;
    owner = k->rd_owner.out[0].word + 12;
    impl = k->rd_impl.out[0].word + 12;
    /* Adopting: the signer must own it, checked before any write. A KMS
     * kmsctl deployed keeps being observed when the key changed, so that a
     * write then fails with the contract's own error. */
    if (adopting(k) &&
        memcmp(owner, chain_signer_address(k->cp->signer), 20) != 0) {
        chain_address_format(owner, o);
        chain_address_format(chain_signer_address(k->cp->signer), s);
        return kc_err_set(kc_op_err(k->op), KC_ECONFLICT,
                          "the KMS contract's owner is %s, the signer is %s: "
                          "kmsctl cannot manage it with this key",
                          o, s);
    }
    *exists = true;
    k->exists = true;
    set_observed(k, owner, impl, block);
    return 0;
}

/* ---- observe -------------------------------------------------------- */

/* The address an earlier run recorded for deploy WHICH. */
static bool intent_addr(struct kc_op *op, int which, uint8_t out[20],
                        uint64_t *nonce)
{
    const struct kc_state_intent *in = kc_op_intent(op);
    const struct kc_value *d;

    if (!in || !in->data)
        return false;
    d = kc_value_map_get(in->data, d_names[which]);
    if (!d || chain_value_addr(kc_value_map_get(d, "address"), "address", out,
                               NULL) < 0)
        return false;
    if (nonce)
        *nonce = (uint64_t)kc_value_int(kc_value_map_get(d, "nonce"), 0);
    return true;
}

static void observe_after(struct kms_op *k, int status)
{
    bool exists = false;
    const struct kc_value *adopt = kc_op_desired(k->op, "address");
    int ret = check_contract(k, status, prior_deploy_block(k->op), &exists);

    if (ret == 0 && !exists && adopt && adopt->type == KC_VALUE_STRING)
        ret = kc_err_set(kc_op_err(k->op), KC_ENOENT,
                         "no contract at %s (the address to adopt)",
                         kc_value_str(adopt));
    kms_finish(k, ret);
}

/* The node must be on the manifest's chain before anything is read: a
 * wrong rpc_url would make every observation meaningless. */
static void on_chain_checked(void *arg, int status, const struct kc_err *err)
{
    struct kms_op *k = arg;

    k->inflight--;
    if (status < 0) {
        kms_fail(k, status, "%s", err->msg);
        return;
    }
    read_contract(k, observe_after);
}

static int kms_observe(struct kc_op *op)
{
    const struct kc_value *adopt = kc_op_desired(op, "address");
    const char *id = kc_op_id(op);
    struct kms_op *k = kms_new(op);
    int ret = 0;

    if (adopt && adopt->type == KC_VALUE_STRING)
        ret = chain_value_addr(adopt, "address", k->addr, kc_op_err(op));
    else if (id)
        ret = chain_address_parse(id, k->addr, "id", kc_op_err(op));
    else if (!intent_addr(op, D_PROXY, k->addr, NULL)) {
        kms_finish(k, 0); /* never deployed */
        return 0;
    }
    if (ret < 0) {
        kms_finish(k, ret);
        return 0;
    }
    k->inflight++;
    ret = chain_txm_check_chain(k->cp->txm, on_chain_checked, k, kc_op_err(op));
    if (ret < 0) {
        k->inflight--;
        kms_finish(k, ret);
    }
    return 0;
}

/* ---- create: intents ------------------------------------------------ */

static int intent_record(struct kms_op *k)
{
    struct kc_value *data = kc_value_new_map();
    int ret;

    for (int i = 0; i < D_COUNT; i++) {
        struct kc_value *e;
        if (!k->d[i].known)
            continue;
        e = kc_value_new_map();
        kc_value_map_set(e, "nonce", kc_value_new_int((int64_t)k->d[i].nonce));
        kc_value_map_set(e, "address", chain_addr_value(k->d[i].addr));
        kc_value_map_set(data, d_names[i], e);
    }
    ret = kc_op_intent_put(k->op, "deploy", data, kc_op_err(k->op));
    kc_value_free(data);
    return ret;
}

/* The engine runs one kc_op_persist per op at a time. The deploys are
 * signed concurrently, so a deploy signed while a persist is in flight
 * waits (queued) for the next one, which makes every intent recorded by
 * then durable. Continuing a deploy needs its own intent on disk. */
static void start_persist(struct kms_op *k);

static void on_persisted(struct kc_op *op, int status)
{
    struct kms_op *k = chain_op_ctx(op);
    struct chain_tx_req *go[D_COUNT];
    int n = 0;

    if (!k)
        return;
    k->persist_busy = false;
    for (int i = 0; i < D_COUNT; i++) {
        if (k->d[i].persisting) {
            k->d[i].persisting = false;
            go[n++] = &k->d[i].tx;
        }
    }
    start_persist(k); /* the queued ones, before anything can finish */
    for (int i = 0; i < n; i++)
        chain_txm_continue(go[i], status);
}

static void start_persist(struct kms_op *k)
{
    int ret;

    if (k->persist_busy)
        return;
    for (int i = 0; i < D_COUNT; i++) {
        if (k->d[i].queued) {
            k->d[i].queued = false;
            k->d[i].persisting = true;
        }
    }
    for (int i = 0; i < D_COUNT; i++) {
        if (!k->d[i].persisting)
            continue;
        ret = kc_op_persist(k->op, on_persisted);
        if (ret == 0) {
            k->persist_busy = true;
            return;
        }
        for (int j = 0; j < D_COUNT; j++) {
            if (k->d[j].persisting) {
                k->d[j].persisting = false;
                chain_txm_continue(&k->d[j].tx, ret);
            }
        }
        return;
    }
}

static void on_deploy_signed(struct chain_tx_req *req)
{
    struct deploy *d = req->data;
    struct kms_op *k = d->k;
    int ret;

    d->known = true;
    d->nonce = req->nonce;
    memcpy(d->addr, req->contract, 20);
    ret = intent_record(k);
    if (ret < 0) {
        chain_txm_continue(req, ret);
        return;
    }
    d->queued = true;
    start_persist(k);
}

/* ---- create: code checks -------------------------------------------- */

static void check_code(struct deploy *d);

static void on_timer(uv_timer_t *t)
{
    struct kms_op *k = t->data;

    for (int i = 0; i < D_COUNT; i++)
        if (&k->d[i].timer == t)
            check_code(&k->d[i]);
}

/* Recovery: the deploy recorded for D (at address A) will never have code,
 * for the reason WHY: forget it and let kms_step deploy again. */
static void deploy_again(struct deploy *d, const char *a, const char *why)
{
    struct kms_op *k = d->k;

    kc_log(kc_op_log(k->op), KC_LOG_WARN, "chain",
           "%s: recorded deploy at %s (nonce %llu) %s; deploying again",
           kc_op_address(k->op), a, (unsigned long long)d->nonce, why);
    d->known = false;
    d->checking = false;
    d->inflight = false;
    k->inflight--;
    kms_step(k);
}

static void code_checked(struct deploy *d, int status, const char *msg)
{
    struct kms_op *k = d->k;
    char a[43];

    chain_address_format(d->addr, a);
    if (status < 0 || k->finishing) {
        d->inflight = false;
        k->inflight--;
        if (status < 0)
            kms_fail(k, status, "checking code at %s: %s", a, msg);
        else
            kms_finish(k, 0);
        return;
    }
    if (d->code_seen) {
        d->have = true;
        d->inflight = false;
        k->inflight--;
        kms_step(k);
        return;
    }
    if (d->checking && d->latest_nonce > d->nonce) {
        /* Recovery: the recorded nonce was used, yet no code: that deploy
         * failed or was replaced. Deploy again. */
        deploy_again(d, a, "left no code");
        return;
    }
    if (d->checking && d->pending_nonce <= d->nonce) {
        /* Recovery: the node knows no transaction with the recorded nonce,
         * mined or pending: the run was killed before its broadcast (or the
         * transaction was dropped). Deploying again takes that same nonce
         * (the pending count), so at most one of the two can ever be mined:
         * no duplicate is possible. */
        deploy_again(d, a, "never reached the chain");
        return;
    }
    if (d->checking && kc_op_is_canceled(k->op)) {
        /* Ctrl-C while waiting for a recorded deploy: a safe point (the
         * intent stays; the next run looks for it again). */
        d->inflight = false;
        k->inflight--;
        kms_fail(k, KC_EINTR,
                 "interrupted while the deploy recorded at %s (nonce %llu) "
                 "is pending: the next run looks for it again",
                 a, (unsigned long long)d->nonce);
        return;
    }
    if (++d->tries >= (d->checking ? KMS_PENDING_WAITS : KMS_CODE_TRIES)) {
        d->inflight = false;
        k->inflight--;
        if (d->checking)
            kms_fail(k, KC_ETIMEDOUT,
                     "the deploy recorded at %s (nonce %llu) is still "
                     "pending: run again once it is mined or dropped",
                     a, (unsigned long long)d->nonce);
        else
            kms_fail(k, KC_ETIMEDOUT, "no code at %s after its receipt", a);
        return;
    }
    if (d->checking && d->tries == 1)
        kc_op_progress(k->op, "waiting for the recorded deploy at %s", a);
    if (uv_timer_start(&d->timer, on_timer,
                       d->checking ? KMS_PENDING_MS : KMS_CODE_WAIT_MS, 0) < 0)
        KC_BUG("uv_timer_start");
}

static void on_check_call(struct chain_rpc_call *call, int status)
{
    struct deploy *d = call->data;
    char msg[sizeof(call->err.msg)];

    if (status == 0 && call == &d->c_code) {
        const char *s = json_object_get_string(call->result);
        d->code_seen = s && strcmp(s, "0x") != 0;
    } else if (status == 0 && call == &d->c_pending) {
        status = chain_rpc_result_u64(call, &d->pending_nonce, NULL);
    } else if (status == 0) {
        status = chain_rpc_result_u64(call, &d->latest_nonce, NULL);
    }
    memcpy(msg, call->err.msg, sizeof(msg));
    chain_rpc_call_release(call);
    call->data = d;
    if (status < 0 && d->calls > 0)
        d->calls = -d->calls; /* remember the failure */
    if (d->calls > 0)
        d->calls--;
    else
        d->calls++;
    if (d->calls == 0)
        code_checked(d, status, msg);
}

/* One round: eth_getCode(addr) and, in recovery, the latest nonce. */
static void check_code(struct deploy *d)
{
    struct kms_op *k = d->k;
    struct json_object *p = json_object_new_array();
    struct kc_err err = { 0 };

    d->code_seen = false;
    d->calls = d->checking ? 3 : 1;
    d->c_code.data = d;
    d->c_nonce.data = d;
    d->c_pending.data = d;
    json_object_array_add(p, chain_rpc_address(d->addr));
    json_object_array_add(p, json_object_new_string("latest"));
    if (chain_rpc_call(k->cp->rpc, &d->c_code, "eth_getCode", p, on_check_call,
                       &err) < 0)
        KC_BUG("rpc refused a call: %s", err.msg);
    if (d->checking) {
        p = json_object_new_array();
        json_object_array_add(
            p, chain_rpc_address(chain_signer_address(k->cp->signer)));
        json_object_array_add(p, json_object_new_string("latest"));
        if (chain_rpc_call(k->cp->rpc, &d->c_nonce, "eth_getTransactionCount",
                           p, on_check_call, &err) < 0)
            KC_BUG("rpc refused a call: %s", err.msg);
        p = json_object_new_array();
        json_object_array_add(
            p, chain_rpc_address(chain_signer_address(k->cp->signer)));
        json_object_array_add(p, json_object_new_string("pending"));
        if (chain_rpc_call(k->cp->rpc, &d->c_pending, "eth_getTransactionCount",
                           p, on_check_call, &err) < 0)
            KC_BUG("rpc refused a call: %s", err.msg);
    }
}

/* ---- create: deploys ------------------------------------------------ */

static void on_deployed(struct chain_tx_req *req, int status)
{
    struct deploy *d = req->data;
    struct kms_op *k = d->k;

    if (status < 0) {
        d->inflight = false;
        k->inflight--;
        kms_fail(k, status, "%s", req->err.msg);
        return;
    }
    d->block = (int64_t)req->block_number;
    memcpy(d->addr, req->contract, 20);
    d->known = true;
    d->checking = false;
    d->tries = 0;
    check_code(d);
}

static void send_deploy(struct kms_op *k, int which)
{
    struct chain_prov *cp = k->cp;
    struct deploy *d = &k->d[which];
    const struct chain_artifact *a = which == D_APP   ? cp->art_app
                                     : which == D_KMS ? cp->art_kms
                                                      : cp->art_proxy;
    struct kc_err err = { 0 };

    kc_buf_reset(&d->code);
    kc_buf_add(&d->code, a->bytecode, a->bytecode_len);
    if (which == D_PROXY) {
        /* ERC1967Proxy(kmsImpl, initialize(signer, appImpl)) */
        struct chain_abi_value args[2];
        struct kc_buf init = { 0 };
        chain_abi_val_address(&args[0], chain_signer_address(cp->signer));
        chain_abi_val_address(&args[1], k->d[D_APP].addr);
        if (chain_abi_encode_call(cp->fn[FN_KMS_INITIALIZE], args, 2, &init,
                                  &err) < 0)
            KC_BUG("initialize encoding: %s", err.msg);
        chain_abi_val_address(&args[0], k->d[D_KMS].addr);
        chain_abi_val_bytes(&args[1], init.data, init.len);
        if (chain_abi_encode(cp->fn[FN_PROXY_CTOR]->in, args, 2, &d->code,
                             &err) < 0)
            KC_BUG("proxy constructor encoding: %s", err.msg);
        chain_abi_value_release(&args[1]);
        kc_buf_release(&init);
    }
    snprintf(d->what, sizeof(d->what), "deploy %s", a->name);
    chain_tx_req_release(&d->tx);
    memset(&d->tx, 0, sizeof(d->tx));
    d->tx.data = d;
    d->tx.what = d->what;
    d->tx.input = (const uint8_t *)d->code.data;
    d->tx.input_len = d->code.len;
    d->tx.on_signed = on_deploy_signed;
    d->inflight = true;
    k->inflight++;
    kc_op_progress(k->op, "%s", d->what);
    d->tx.op = k->op;
    if (chain_txm_send(cp->txm, &d->tx, on_deployed, &err) < 0) {
        d->inflight = false;
        k->inflight--;
        kms_fail(k, err.code, "%s", err.msg);
    }
}

static void create_after_reads(struct kms_op *k, int status)
{
    bool exists = false;
    int ret = check_contract(k, status, k->d[D_PROXY].block, &exists);

    if (ret == 0 && !exists)
        ret = kc_err_set(kc_op_err(k->op), KC_EREMOTE,
                         "the deployed proxy has no code");
    if (ret == 0)
        kc_op_intent_clear(k->op);
    kms_finish(k, ret);
}

/* Decides what to do next from what is known. */
static void kms_step(struct kms_op *k)
{
    struct deploy *app = &k->d[D_APP], *kms = &k->d[D_KMS];
    struct deploy *px = &k->d[D_PROXY];

    if (k->finishing) {
        kms_finish(k, 0);
        return;
    }
    if (px->have) {
        if (k->inflight == 0 && k->reads == 0) {
            memcpy(k->addr, px->addr, 20);
            read_contract(k, create_after_reads);
        }
        return;
    }
    if (!app->have && !app->inflight)
        send_deploy(k, D_APP);
    if (!kms->have && !kms->inflight)
        send_deploy(k, D_KMS);
    if (app->have && kms->have && !px->inflight)
        send_deploy(k, D_PROXY);
}

static void on_artifacts(struct kc_op *op, int status)
{
    struct kms_op *k = chain_op_ctx(op);

    k->inflight--;
    if (status < 0) {
        kms_fail(k, status, "%s", kc_op_err(op)->msg);
        return;
    }
    /* Recovery: check every address an earlier run recorded. */
    for (int i = 0; i < D_COUNT; i++) {
        struct deploy *d = &k->d[i];
        if (!intent_addr(op, i, d->addr, &d->nonce))
            continue;
        d->known = true;
        d->checking = true;
        d->inflight = true;
        k->inflight++;
        check_code(d);
    }
    if (k->inflight == 0)
        kms_step(k);
}

static int kms_create(struct kc_op *op)
{
    const struct kc_value *dir = kc_op_desired(op, "artifacts");
    const struct kc_value *adopt = kc_op_desired(op, "address");
    struct kms_op *k;
    int ret;

    if (adopt && adopt->type == KC_VALUE_STRING)
        return kc_err_set(kc_op_err(op), KC_ENOENT,
                          "no contract at %s to adopt", kc_value_str(adopt));
    if (!dir || !kc_value_str(dir))
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "artifacts: the folder of the Hardhat artifacts "
                          "is required to deploy");
    k = kms_new(op);
    k->inflight++;
    ret = chain_prov_artifacts(op, kc_value_str(dir), on_artifacts);
    if (ret < 0) {
        k->inflight--;
        k->status = ret;
        kms_finish(k, ret);
        return 0;
    }
    return 0;
}

/* ---- update --------------------------------------------------------- */

static void on_impl_set(struct chain_tx_req *req, int status)
{
    struct kms_op *k = req->data;

    k->inflight--;
    if (status < 0) {
        kms_fail(k, status, "%s", req->err.msg);
        return;
    }
    read_contract(k, observe_after);
}

static int kms_update(struct kc_op *op)
{
    struct chain_prov *cp = chain_prov_of(op);
    const char *id = kc_op_id(op);
    struct kms_op *k;
    struct chain_abi_value arg;
    uint8_t impl[20];
    int ret;

    if (!kc_op_changed(op, "app_implementation")) {
        /* artifacts only: nothing on chain changes */
        k = kms_new(op);
        if (!id || chain_address_parse(id, k->addr, "id", kc_op_err(op)) < 0) {
            kms_finish(k, KC_EINVAL);
            return 0;
        }
        read_contract(k, observe_after);
        return 0;
    }
    ret = chain_value_addr(kc_op_desired(op, "app_implementation"),
                           "app_implementation", impl, kc_op_err(op));
    if (ret < 0)
        return ret;
    k = kms_new(op);
    if (!id || chain_address_parse(id, k->addr, "id", kc_op_err(op)) < 0) {
        kms_finish(k, KC_EINVAL);
        return 0;
    }
    chain_abi_val_address(&arg, impl);
    ret = chain_abi_encode_call(cp->fn[FN_SET_APP_IMPLEMENTATION], &arg, 1,
                                &k->calldata, kc_op_err(op));
    if (ret < 0) {
        kms_finish(k, ret);
        return 0;
    }
    k->tx_impl.data = k;
    k->tx_impl.what = "setAppImplementation";
    k->tx_impl.has_to = true;
    memcpy(k->tx_impl.to, k->addr, 20);
    k->tx_impl.input = (const uint8_t *)k->calldata.data;
    k->tx_impl.input_len = k->calldata.len;
    k->inflight++;
    k->tx_impl.op = op;
    ret = chain_txm_send(cp->txm, &k->tx_impl, on_impl_set, kc_op_err(op));
    if (ret < 0) {
        k->inflight--;
        kms_finish(k, ret);
    }
    return 0;
}

static const struct kc_field kms_fields[] = {
    { "artifacts", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "address", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "app_implementation", KC_VALUE_STRING, 0 },
    { "owner", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "deploy_block", KC_VALUE_INT, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

const struct kc_resource_type kc_chain_kms = {
    .kind = "chain.kms",
    .fields = kms_fields,
    .flags = KC_KIND_RETAIN,
    .observe = kms_observe,
    .create = kms_create,
    .update = kms_update,
};
