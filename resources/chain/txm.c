/* resources/chain/txm.c: nonces, fees, broadcast, receipts, re-broadcast. */
#include "resources/chain/txm.h"

#include <strings.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"
#include "reconcile/resource.h"
#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"

#define TXM_MIN_POLL_MS    100
#define TXM_MAX_POLL_MS    2000
#define TXM_FIRST_POLL_MS  200
#define TXM_MAX_BUMP_TRIES 3
#define TXM_GAS_TRANSFER   21000

enum item_state {
    IT_WAIT_READY = 0,
    IT_PREP,
    IT_HOOK,
    IT_SENDING,
    IT_PENDING,
    IT_DONE,
};

struct chain_txm_item {
    struct chain_txm *m;
    struct chain_tx_req *req; /* NULL for a gap filler */
    chain_tx_cb cb;
    char *what;
    uint8_t *input;
    size_t input_len;
    struct chain_tx tx;
    enum item_state st;
    unsigned refs; /* list membership + calls in flight */
    /* preparation */
    bool waiting_fees, estimating;
    bool fixed_nonce; /* fillers: nonce given */
    uint64_t gas;
    /* broadcast */
    uint8_t hashes[CHAIN_TXM_MAX_HASHES][32];
    size_t nhashes;
    uint64_t sent_at;
    unsigned bump_tries;
    bool nonce_consumed; /* the node said "nonce too low" on a re-send */
    bool resyncing;
    struct chain_txm_item *next;
};

struct txm_call;
typedef void (*txm_call_fn)(struct txm_call *c, int status);

/* One JSON-RPC call of the manager, heap-allocated so that its lifetime
 * does not depend on the item's. */
struct txm_call {
    struct chain_rpc_call call;
    struct chain_txm *m;
    struct chain_txm_item *item; /* referenced, or NULL */
    txm_call_fn fn;
    size_t idx;
};

struct ready_waiter {
    chain_txm_ready_cb cb;
    void *arg;
    struct ready_waiter *next;
};

enum txm_ready {
    READY_NONE = 0,
    READY_FETCHING,
    READY_OK,
    READY_FAIL,
};

struct chain_txm {
    struct chain_txm_config cfg;
    uint8_t from[20];
    /* chain id and nonce */
    enum txm_ready ready;
    struct kc_err ready_err;
    int ready_pending;
    uint64_t chain_id_seen;
    uint64_t next_nonce;
    struct ready_waiter *waiters;
    /* fees */
    bool fees_fetching;
    uint64_t fees_at; /* uv_now when fetched; 0: never */
    int fee_pending;
    int fee_status;
    struct kc_err fee_err;
    bool has_base;
    uint64_t base_fee, tip, gas_price;
    /* transactions */
    struct chain_txm_item *items;
    /* polling */
    uv_timer_t tick;
    uv_timer_t kick; /* starts new items from the loop, not from send */
    bool tick_armed, polling, kick_armed;
    int handles_open;
    uint64_t last_block, last_block_at, block_ms;
    uint64_t last_ok_at; /* uv_now of the node's last answer */
    /* errors */
    const struct chain_abi *err_abis[CHAIN_TXM_MAX_ERR_ABIS];
    size_t nerr_abis;
    struct chain_txm_stats stats;
    unsigned live_calls;
    bool closing;
};

static void item_prep(struct chain_txm_item *it);
static void item_assign(struct chain_txm_item *it);
static void item_broadcast(struct chain_txm_item *it);
static void arm_tick(struct chain_txm *m);

/* ---- lifetime ------------------------------------------------------- */

static void txm_maybe_free(struct chain_txm *m)
{
    if (m->closing && m->live_calls == 0 && m->handles_open == 0 && !m->items)
        free(m);
}

static void item_unref(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;

    if (--it->refs > 0)
        return;
    free(it->what);
    free(it->input);
    free(it);
    txm_maybe_free(m);
}

static void item_unlink(struct chain_txm_item *it)
{
    for (struct chain_txm_item **p = &it->m->items; *p; p = &(*p)->next) {
        if (*p == it) {
            *p = it->next;
            item_unref(it);
            return;
        }
    }
}

static void on_txm_call(struct chain_rpc_call *call, int status)
{
    struct txm_call *c = kc_container_of(call, struct txm_call, call);
    struct chain_txm *m = c->m;
    struct chain_txm_item *it = c->item;

    if (status == 0 || status == KC_EREMOTE)
        m->last_ok_at = uv_now(m->cfg.loop); /* the node answered */
    if (!m->closing && (!it || it->st != IT_DONE))
        c->fn(c, status);
    chain_rpc_call_release(&c->call);
    free(c);
    if (it)
        item_unref(it);
    m->live_calls--;
    txm_maybe_free(m);
}

/* Starts METHOD; on a start failure runs FN(c, code) from here (callers
 * are always inside a loop callback, never inside chain_txm_send). */
static void txm_call(struct chain_txm *m, struct chain_txm_item *it,
                     const char *method, struct json_object *params,
                     txm_call_fn fn, size_t idx)
{
    struct txm_call *c = kc_xcalloc(1, sizeof(*c));
    struct kc_err err = { 0 };

    c->m = m;
    c->item = it;
    c->fn = fn;
    c->idx = idx;
    if (it)
        it->refs++;
    m->live_calls++;
    if (chain_rpc_call(m->cfg.rpc, &c->call, method, params, on_txm_call,
                       &err) < 0) {
        c->call.method = method;
        c->call.err = err;
        on_txm_call(&c->call, err.code);
    }
}

/* ---- completion ----------------------------------------------------- */

static void item_complete(struct chain_txm_item *it, int status)
{
    struct chain_tx_req *req = it->req;
    chain_tx_cb cb = it->cb;

    if (it->st == IT_DONE)
        return;
    it->st = IT_DONE;
    if (req) {
        req->item = NULL;
        if (status < 0 && req->err.code == 0)
            kc_err_set(&req->err, status, "%s: %s", it->what,
                       kc_strerror(status));
    }
    item_unlink(it); /* may free IT */
    if (req && req->op)
        kc_op_waiting(req->op, false);
    if (req && cb)
        cb(req, status);
}

static void item_fail(struct chain_txm_item *it, int code, const char *fmt, ...)
    KC_PRINTF(3, 4);

static void item_fail(struct chain_txm_item *it, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (it->req)
        kc_err_set(&it->req->err, code, "%s: %s", it->what, msg);
    else
        kc_log(it->m->cfg.log, KC_LOG_WARN, "chain", "%s: %s", it->what, msg);
    item_complete(it, code);
}

/* ---- revert reasons ------------------------------------------------- */

void chain_txm_add_error_abi(struct chain_txm *m, const struct chain_abi *abi)
{
    for (size_t i = 0; i < m->nerr_abis; i++)
        if (m->err_abis[i] == abi)
            return;
    if (abi && m->nerr_abis < CHAIN_TXM_MAX_ERR_ABIS)
        m->err_abis[m->nerr_abis++] = abi;
}

void chain_txm_describe_revert(const struct chain_txm *m, const uint8_t *data,
                               size_t len, struct kc_buf *out)
{
    /* The first ABI that knows the selector decodes it. */
    for (size_t i = 0; len >= 4 && i < m->nerr_abis; i++) {
        if (chain_abi_find_error(m->err_abis[i], data)) {
            chain_abi_describe_revert(m->err_abis[i], data, len, out);
            return;
        }
    }
    chain_abi_describe_revert(NULL, data, len, out);
}

/* The reason of a failed eth_call / eth_estimateGas. */
static void call_reason(const struct chain_txm *m,
                        const struct chain_rpc_call *call, struct kc_buf *out)
{
    if (call->revert)
        chain_txm_describe_revert(m, call->revert, call->revert_len, out);
    else
        kc_buf_addstr(out, call->err.msg);
}

/* ---- readiness: chain id and nonce ---------------------------------- */

static void ready_finish(struct chain_txm *m)
{
    struct ready_waiter *w = m->waiters;

    if (m->ready_err.code == 0 && m->chain_id_seen != m->cfg.chain_id)
        kc_err_set(&m->ready_err, KC_EPERM,
                   "the node's chain id is %llu, the manifest says %llu: "
                   "refusing to send transactions",
                   (unsigned long long)m->chain_id_seen,
                   (unsigned long long)m->cfg.chain_id);
    m->ready = m->ready_err.code ? READY_FAIL : READY_OK;
    m->waiters = NULL;
    /* A transport failure is retried by the next transaction; a chain id
     * mismatch is final. */
    if (m->ready == READY_FAIL && m->ready_err.code != KC_EPERM)
        m->ready = READY_NONE;
    while (w) {
        struct ready_waiter *next = w->next;
        w->cb(w->arg, m->ready_err.code, &m->ready_err);
        free(w);
        w = next;
    }
    for (struct chain_txm_item *it = m->items, *next; it; it = next) {
        next = it->next;
        if (it->st != IT_WAIT_READY)
            continue;
        if (m->ready == READY_OK)
            item_prep(it);
        else
            item_fail(it, m->ready_err.code, "%s", m->ready_err.msg);
    }
    if (m->ready == READY_NONE)
        kc_err_clear(&m->ready_err);
}

static void on_chain_id(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;

    if (status == 0)
        status =
            chain_rpc_result_u64(&c->call, &m->chain_id_seen, &m->ready_err);
    else
        kc_err_set(&m->ready_err, status, "%s", c->call.err.msg);
    if (--m->ready_pending == 0)
        ready_finish(m);
}

static void on_start_nonce(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;
    struct kc_err err = { 0 };
    uint64_t n = 0;

    if (status == 0)
        status = chain_rpc_result_u64(&c->call, &n, &err);
    else
        err = c->call.err;
    if (status < 0 && m->ready_err.code == 0)
        m->ready_err = err;
    if (status == 0 && n > m->next_nonce)
        m->next_nonce = n;
    if (--m->ready_pending == 0)
        ready_finish(m);
}

static struct json_object *count_params(const struct chain_txm *m,
                                        const char *tag)
{
    struct json_object *p = json_object_new_array();

    json_object_array_add(p, chain_rpc_address(m->from));
    json_object_array_add(p, json_object_new_string(tag));
    return p;
}

static void start_ready(struct chain_txm *m)
{
    if (m->ready != READY_NONE)
        return;
    m->ready = READY_FETCHING;
    m->ready_pending = 2;
    txm_call(m, NULL, "eth_chainId", NULL, on_chain_id, 0);
    txm_call(m, NULL, "eth_getTransactionCount", count_params(m, "pending"),
             on_start_nonce, 0);
}

int chain_txm_check_chain(struct chain_txm *m, chain_txm_ready_cb cb, void *arg,
                          struct kc_err *err)
{
    struct ready_waiter *w;

    if (m->closing)
        return kc_err_set(err, KC_ECANCELED, "chain: closing");
    w = kc_xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    if (m->ready == READY_OK || m->ready == READY_FAIL) {
        /* Answer from the loop, as the contract says: a zero-delay call of
         * the manager's own (eth_chainId is cheap) would do, but a cached
         * answer is enough through the same waiter list. */
        w->next = m->waiters;
        m->waiters = w;
        m->ready_pending++;
        txm_call(m, NULL, "eth_chainId", NULL, on_chain_id, 0);
        return 0;
    }
    w->next = m->waiters;
    m->waiters = w;
    start_ready(m);
    return 0;
}

/* ---- fees ----------------------------------------------------------- */

static uint64_t fee_fresh_ms(const struct chain_txm *m)
{
    uint64_t b = m->block_ms ? m->block_ms : 1000;

    return b < 1000 ? b : 1000;
}

static void fees_done(struct chain_txm *m)
{
    m->fees_fetching = false;
    if (m->fee_status == 0)
        m->fees_at = uv_now(m->cfg.loop);
    for (struct chain_txm_item *it = m->items, *next; it; it = next) {
        next = it->next;
        if (it->st != IT_PREP || !it->waiting_fees)
            continue;
        it->waiting_fees = false;
        if (m->fee_status < 0)
            item_fail(it, m->fee_status, "%s", m->fee_err.msg);
        else if (!it->estimating)
            item_assign(it);
    }
}

static void fee_part_done(struct chain_txm *m, int status,
                          const struct kc_err *err)
{
    if (status < 0 && m->fee_status == 0) {
        m->fee_status = status;
        m->fee_err = *err;
    }
    if (--m->fee_pending == 0)
        fees_done(m);
}

static void on_fee_block(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;
    struct kc_err err = { 0 };
    const char *base;

    if (status == 0 && !json_object_is_type(c->call.result, json_type_object))
        status = kc_err_set(&err, KC_EPARSE,
                            "rpc eth_getBlockByNumber: "
                            "no latest block");
    else if (status < 0)
        err = c->call.err;
    if (status == 0) {
        base = kc_json_opt_str(c->call.result, "baseFeePerGas");
        m->has_base = base != NULL;
        if (base)
            status =
                chain_quantity_parse(base, &m->base_fee, "baseFeePerGas", &err);
    }
    fee_part_done(m, status, &err);
}

static void on_fee_tip(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;
    struct kc_err err = { 0 };

    if (status == 0)
        status = chain_rpc_result_u64(&c->call, &m->tip, &err);
    if (status < 0)
        m->tip = 1000000000ULL; /* old nodes lack the method: 1 gwei */
    fee_part_done(m, 0, &err);
}

static void on_fee_gas_price(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;
    struct kc_err err = { 0 };

    if (status == 0)
        status = chain_rpc_result_u64(&c->call, &m->gas_price, &err);
    else
        err = c->call.err;
    fee_part_done(m, status, &err);
}

static void start_fees(struct chain_txm *m)
{
    struct json_object *p = json_object_new_array();

    m->fees_fetching = true;
    m->fee_status = 0;
    kc_err_clear(&m->fee_err);
    m->fee_pending = 3;
    json_object_array_add(p, json_object_new_string("latest"));
    json_object_array_add(p, json_object_new_boolean(0));
    txm_call(m, NULL, "eth_getBlockByNumber", p, on_fee_block, 0);
    txm_call(m, NULL, "eth_maxPriorityFeePerGas", NULL, on_fee_tip, 0);
    txm_call(m, NULL, "eth_gasPrice", NULL, on_fee_gas_price, 0);
}

static bool fees_fresh(const struct chain_txm *m)
{
    return m->fees_at && uv_now(m->cfg.loop) - m->fees_at <= fee_fresh_ms(m);
}

/* Sets the fields of IT->tx from the cached market fees. */
static int set_fees(struct chain_txm_item *it, struct kc_err *err)
{
    struct chain_txm *m = it->m;
    uint64_t cap = m->cfg.max_fee_wei, tip = m->tip;

    if (m->cfg.legacy || !m->has_base) {
        it->tx.type = CHAIN_TX_LEGACY;
        it->tx.gas_price = m->gas_price;
        if (cap && it->tx.gas_price > cap)
            return kc_err_set(err, KC_EPERM,
                              "gas price %.3f gwei is above max_fee_gwei "
                              "%.3f: not sent",
                              m->gas_price / 1e9, cap / 1e9);
        return 0;
    }
    it->tx.type = CHAIN_TX_EIP1559;
    if (m->cfg.max_priority_fee_wei && tip > m->cfg.max_priority_fee_wei)
        tip = m->cfg.max_priority_fee_wei;
    if (cap && m->base_fee >= cap)
        return kc_err_set(err, KC_EPERM,
                          "base fee %.3f gwei is at or above max_fee_gwei "
                          "%.3f: not sent",
                          m->base_fee / 1e9, cap / 1e9);
    it->tx.max_priority_fee = tip;
    it->tx.max_fee = 2 * m->base_fee + tip;
    if (cap && it->tx.max_fee > cap)
        it->tx.max_fee = cap;
    if (it->tx.max_priority_fee > it->tx.max_fee)
        it->tx.max_priority_fee = it->tx.max_fee;
    return 0;
}

/* ---- preparation ---------------------------------------------------- */

static void on_estimate(struct txm_call *c, int status)
{
    struct chain_txm_item *it = c->item;
    struct chain_txm *m = c->m;
    uint64_t est = 0;
    struct kc_err err = { 0 };

    it->estimating = false;
    if (status == 0)
        status = chain_rpc_result_u64(&c->call, &est, &err);
    if (status < 0) {
        struct kc_buf why = { 0 };
        if (status == KC_EREMOTE)
            call_reason(m, &c->call, &why);
        else
            kc_buf_addstr(&why, status == 0 ? err.msg : c->call.err.msg);
        item_fail(it, status == KC_EREMOTE ? KC_EREMOTE : status,
                  "would revert (eth_estimateGas): %s", kc_buf_str(&why));
        kc_buf_release(&why);
        return;
    }
    it->gas = est + est * m->cfg.gas_margin_pct / 100;
    if (!it->waiting_fees)
        item_assign(it);
}

static struct json_object *tx_object(const struct chain_txm_item *it)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "from", chain_rpc_address(it->m->from));
    if (it->tx.has_to)
        json_object_object_add(o, "to", chain_rpc_address(it->tx.to));
    json_object_object_add(o, "data", chain_rpc_hex(it->input, it->input_len));
    return o;
}

static void item_prep(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;

    it->st = IT_PREP;
    if (it->gas == 0) {
        struct json_object *p = json_object_new_array();
        json_object_array_add(p, tx_object(it));
        it->estimating = true;
        txm_call(m, it, "eth_estimateGas", p, on_estimate, 0);
    }
    if (fees_fresh(m)) {
        if (!it->estimating)
            item_assign(it);
        return;
    }
    it->waiting_fees = true;
    if (!m->fees_fetching)
        start_fees(m);
}

/* ---- nonces and gaps ------------------------------------------------ */

static void send_filler(struct chain_txm *m, uint64_t nonce);

/* IT gave up its nonce without it being used: reuse it, or fill the gap
 * when later nonces are already out. */
static void release_nonce(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;
    uint64_t nonce = it->tx.nonce;

    if (nonce + 1 == m->next_nonce) {
        m->next_nonce = nonce;
        return;
    }
    send_filler(m, nonce);
}

static void send_filler(struct chain_txm *m, uint64_t nonce)
{
    struct chain_txm_item *f = kc_xcalloc(1, sizeof(*f));

    f->m = m;
    f->refs = 1;
    f->what = kc_xasprintf("nonce gap filler %llu", (unsigned long long)nonce);
    f->input = kc_xmalloc(1);
    f->tx.has_to = true;
    memcpy(f->tx.to, m->from, 20);
    f->tx.nonce = nonce;
    f->fixed_nonce = true;
    f->gas = TXM_GAS_TRANSFER;
    f->next = m->items;
    m->items = f;
    m->stats.fillers++;
    item_prep(f);
}

/* ---- signing and broadcast ------------------------------------------ */

static int item_sign(struct chain_txm_item *it, struct kc_buf *raw,
                     struct kc_err *err)
{
    uint8_t hash[32];
    int ret;

    ret = chain_tx_sign(&it->tx, it->m->cfg.signer, raw, hash, err);
    if (ret < 0)
        return ret;
    if (it->req)
        memcpy(it->req->hash, hash, 32);
    if (it->nhashes < CHAIN_TXM_MAX_HASHES) {
        bool seen = false;
        for (size_t i = 0; i < it->nhashes; i++)
            seen |= memcmp(it->hashes[i], hash, 32) == 0;
        if (!seen)
            memcpy(it->hashes[it->nhashes++], hash, 32);
    }
    return 0;
}

static void item_assign(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;
    struct kc_err err = { 0 };
    int ret;

    it->tx.chain_id = m->cfg.chain_id;
    it->tx.gas = it->gas;
    it->tx.data = it->input;
    it->tx.data_len = it->input_len;
    ret = set_fees(it, &err);
    if (ret < 0) {
        if (it->fixed_nonce)
            kc_log(m->cfg.log, KC_LOG_ERROR, "chain",
                   "cannot fill nonce gap %llu: %s",
                   (unsigned long long)it->tx.nonce, err.msg);
        item_fail(it, ret, "%s", err.msg);
        return;
    }
    if (!it->fixed_nonce) {
        it->tx.nonce = m->next_nonce++;
        it->nhashes = 0; /* a new nonce makes the old hashes moot */
    }
    if (it->req) {
        it->req->nonce = it->tx.nonce;
        if (!it->tx.has_to)
            chain_create_address(m->from, it->tx.nonce, it->req->contract);
    }
    if (it->req && it->req->on_signed) {
        struct kc_buf raw = { 0 };
        ret = item_sign(it, &raw, &err); /* sets req->hash */
        kc_buf_release(&raw);
        if (ret < 0) {
            release_nonce(it);
            item_fail(it, ret, "%s", err.msg);
            return;
        }
        it->st = IT_HOOK;
        it->refs++; /* held until chain_txm_continue */
        it->req->on_signed(it->req);
        return;
    }
    item_broadcast(it);
}

void chain_txm_continue(struct chain_tx_req *req, int status)
{
    struct chain_txm_item *it = req->item;

    if (!it || it->st != IT_HOOK)
        KC_BUG("chain_txm_continue without a signed transaction");
    if (it->m->closing) {
        item_unref(it);
        return;
    }
    if (status < 0) {
        release_nonce(it);
        item_fail(it, status, "abandoned before broadcast");
    } else {
        item_broadcast(it);
    }
    item_unref(it);
}

static bool msg_has(const struct chain_rpc_call *c, const char *needle)
{
    return strcasestr(c->err.msg, needle) != NULL;
}

static void on_resync(struct txm_call *c, int status)
{
    struct chain_txm_item *it = c->item;
    struct chain_txm *m = c->m;
    uint64_t n = 0;
    struct kc_err err = { 0 };

    it->resyncing = false;
    if (status == 0)
        status = chain_rpc_result_u64(&c->call, &n, &err);
    if (status < 0) {
        item_fail(it, status, "nonce resync: %s",
                  err.code ? err.msg : c->call.err.msg);
        return;
    }
    if (n > m->next_nonce)
        m->next_nonce = n;
    kc_log(m->cfg.log, KC_LOG_INFO, "chain",
           "%s: nonce %llu already used, resynced to %llu", it->what,
           (unsigned long long)it->tx.nonce, (unsigned long long)m->next_nonce);
    item_assign(it);
}

static void check_receipts_now(struct chain_txm *m);

static void on_broadcast(struct txm_call *c, int status)
{
    struct chain_txm_item *it = c->item;
    struct chain_txm *m = c->m;
    bool first = it->st == IT_SENDING && it->sent_at == 0;

    if (status == 0 ||
        (status == KC_EREMOTE && (msg_has(&c->call, "already known") ||
                                  msg_has(&c->call, "known transaction")))) {
        if (first)
            m->stats.txs++;
        m->stats.broadcasts++;
        if (it->req)
            it->req->broadcasts++;
        if (it->req && it->req->op)
            kc_op_waiting(it->req->op, true); /* only the receipt is left */
        it->st = IT_PENDING;
        it->sent_at = uv_now(m->cfg.loop);
        kc_log(m->cfg.log, KC_LOG_DEBUG, "chain", "%s: sent, nonce %llu",
               it->what, (unsigned long long)it->tx.nonce);
        arm_tick(m);
        return;
    }
    if (status == KC_EREMOTE && msg_has(&c->call, "nonce too low")) {
        if (it->sent_at == 0 && !it->fixed_nonce) {
            /* Never accepted: someone else used the nonce. */
            it->resyncing = true;
            txm_call(m, it, "eth_getTransactionCount",
                     count_params(m, "pending"), on_resync, 0);
            return;
        }
        /* A re-send: one of our hashes (or a stranger) was mined. */
        it->st = IT_PENDING;
        it->nonce_consumed = true;
        check_receipts_now(m);
        return;
    }
    if (status == KC_EREMOTE && msg_has(&c->call, "underpriced") &&
        it->sent_at != 0) {
        /* The bump was not enough for this node: keep waiting, bump again
         * at the next timeout. */
        it->st = IT_PENDING;
        it->sent_at = uv_now(m->cfg.loop);
        return;
    }
    if (it->sent_at != 0) {
        /* The original is still out there: keep watching it. */
        kc_log(m->cfg.log, KC_LOG_WARN, "chain", "%s: re-broadcast refused: %s",
               it->what, c->call.err.msg);
        it->st = IT_PENDING;
        it->sent_at = uv_now(m->cfg.loop);
        return;
    }
    if (!it->fixed_nonce)
        release_nonce(it);
    item_fail(it, status, "broadcast refused: %s", c->call.err.msg);
}

static void item_broadcast(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;
    struct kc_buf raw = { 0 };
    struct kc_err err = { 0 };
    struct json_object *p;

    if (item_sign(it, &raw, &err) < 0) {
        if (it->sent_at == 0 && !it->fixed_nonce)
            release_nonce(it);
        item_fail(it, err.code, "%s", err.msg);
        kc_buf_release(&raw);
        return;
    }
    it->st = IT_SENDING;
    p = json_object_new_array();
    json_object_array_add(p, chain_rpc_hex(raw.data, raw.len));
    kc_buf_release(&raw);
    txm_call(m, it, "eth_sendRawTransaction", p, on_broadcast, 0);
}

/* ---- receipts ------------------------------------------------------- */

static void on_revert_replay(struct txm_call *c, int status)
{
    struct chain_txm_item *it = c->item;
    struct kc_buf why = { 0 };

    if (status == KC_EREMOTE)
        call_reason(c->m, &c->call, &why);
    else
        kc_buf_addstr(&why, "reason unavailable (the replay did not revert)");
    it->m->stats.reverted++;
    item_fail(it, KC_EREMOTE, "reverted in block %llu: %s",
              (unsigned long long)(it->req ? it->req->block_number : 0),
              kc_buf_str(&why));
    kc_buf_release(&why);
}

static void item_receipt(struct chain_txm_item *it, struct json_object *r,
                         size_t hidx)
{
    struct chain_txm *m = it->m;
    struct chain_tx_req *req = it->req;
    const char *st = kc_json_opt_str(r, "status");
    const char *bn = kc_json_opt_str(r, "blockNumber");
    const char *gu = kc_json_opt_str(r, "gasUsed");
    const char *ca = kc_json_opt_str(r, "contractAddress");
    struct kc_err err = { 0 };
    uint64_t block = 0;

    if (!bn || chain_quantity_parse(bn, &block, "blockNumber", &err) < 0)
        return; /* not mined yet (pending receipts on some nodes) */
    if (!req) {
        item_complete(it, 0); /* a filler */
        return;
    }
    memcpy(req->hash, it->hashes[hidx], 32);
    req->block_number = block;
    if (gu)
        chain_quantity_parse(gu, &req->gas_used, "gasUsed", NULL);
    if (ca)
        chain_address_parse(ca, req->contract, "contractAddress", NULL);
    json_object_put(req->receipt);
    req->receipt = json_object_get(r);
    if (st && strcmp(st, "0x1") == 0) {
        item_complete(it, 0);
        return;
    }
    /* Reverted: replay at the block before to get the reason. */
    {
        struct json_object *p = json_object_new_array();
        json_object_array_add(p, tx_object(it));
        json_object_array_add(p, chain_rpc_quantity(block ? block - 1 : 0));
        txm_call(m, it, "eth_call", p, on_revert_replay, 0);
    }
}

static void on_receipt(struct txm_call *c, int status)
{
    struct chain_txm_item *it = c->item;

    if (status < 0 || it->st != IT_PENDING) {
        if (status < 0)
            kc_log(c->m->cfg.log, KC_LOG_DEBUG, "chain", "%s: %s", it->what,
                   c->call.err.msg);
        return;
    }
    if (json_object_is_type(c->call.result, json_type_object)) {
        item_receipt(it, c->call.result, c->idx);
        return;
    }
    /* No receipt for this hash. After a "nonce too low" on a re-send, no
     * receipt for any of our hashes means a stranger took the nonce. */
    if (it->nonce_consumed && c->idx + 1 == it->nhashes)
        item_fail(it, KC_EREMOTE,
                  "nonce %llu was used by a transaction that is not ours",
                  (unsigned long long)it->tx.nonce);
}

static void poll_receipts(struct chain_txm *m)
{
    for (struct chain_txm_item *it = m->items; it; it = it->next) {
        if (it->st != IT_PENDING)
            continue;
        for (size_t i = 0; i < it->nhashes; i++) {
            struct json_object *p = json_object_new_array();
            json_object_array_add(p, chain_rpc_hex(it->hashes[i], 32));
            txm_call(m, it, "eth_getTransactionReceipt", p, on_receipt, i);
        }
    }
}

static void check_receipts_now(struct chain_txm *m)
{
    poll_receipts(m);
}

/* Bumps fees by at least 12.5% (and to the market), within the caps. */
static void item_bump(struct chain_txm_item *it)
{
    struct chain_txm *m = it->m;
    struct chain_tx old = it->tx;
    struct kc_err err = { 0 };
    uint64_t cap = m->cfg.max_fee_wei;

    if (set_fees(it, &err) < 0 && !fees_fresh(m)) {
        it->tx = old; /* market unknown or above the cap: bump the old */
    }
    it->tx.type = old.type;
    if (old.type == CHAIN_TX_LEGACY) {
        uint64_t want = old.gas_price + (old.gas_price + 7) / 8;
        if (it->tx.gas_price < want)
            it->tx.gas_price = want;
        if (cap && it->tx.gas_price > cap)
            it->tx.gas_price = cap;
        if (it->tx.gas_price < want) {
            it->tx = old;
            goto capped;
        }
    } else {
        uint64_t want_fee = old.max_fee + (old.max_fee + 7) / 8;
        uint64_t want_tip =
            old.max_priority_fee + (old.max_priority_fee + 7) / 8;
        if (it->tx.max_fee < want_fee)
            it->tx.max_fee = want_fee;
        if (it->tx.max_priority_fee < want_tip)
            it->tx.max_priority_fee = want_tip;
        if (cap && it->tx.max_fee > cap)
            it->tx.max_fee = cap;
        if (it->tx.max_priority_fee > it->tx.max_fee)
            it->tx.max_priority_fee = it->tx.max_fee;
        if (it->tx.max_fee < want_fee || it->tx.max_priority_fee < want_tip) {
            it->tx = old;
            goto capped;
        }
    }
    it->tx.nonce = old.nonce;
    m->stats.rebroadcasts++;
    kc_log(m->cfg.log, KC_LOG_INFO, "chain",
           "%s: not mined after %llu ms, re-broadcast with nonce %llu and "
           "fees bumped",
           it->what, (unsigned long long)m->cfg.tx_timeout_ms,
           (unsigned long long)it->tx.nonce);
    item_broadcast(it);
    return;
capped:
    if (++it->bump_tries >= TXM_MAX_BUMP_TRIES) {
        item_fail(it, KC_ETIMEDOUT,
                  "not mined after %u timeouts and max_fee_gwei leaves no "
                  "room for a 12.5%% fee bump",
                  it->bump_tries);
        return;
    }
    it->sent_at = uv_now(m->cfg.loop);
}

static void check_timeouts(struct chain_txm *m)
{
    uint64_t now = uv_now(m->cfg.loop);

    for (struct chain_txm_item *it = m->items, *next; it; it = next) {
        next = it->next;
        if (it->st == IT_PENDING && !it->nonce_consumed &&
            now - it->sent_at >= m->cfg.tx_timeout_ms)
            item_bump(it);
    }
}

/* Stops waiting for the receipts of sent transactions whose op was
 * interrupted (Ctrl-C), and of every sent transaction once the node has not
 * answered for rpc_deadline_ms. The transaction may still be mined: the
 * caller's write-ahead intent stays recorded, and the next run finds it. */
static void check_abandon(struct chain_txm *m)
{
    uint64_t now = uv_now(m->cfg.loop);
    bool dead = now - m->last_ok_at >= m->cfg.rpc_deadline_ms;

    for (struct chain_txm_item *it = m->items, *next; it; it = next) {
        bool canceled =
            it->req && it->req->op && kc_op_is_canceled(it->req->op);
        char h[67];

        next = it->next;
        if (it->st != IT_PENDING || (!canceled && !dead))
            continue;
        chain_hex_encode(it->hashes[it->nhashes ? it->nhashes - 1 : 0], 32,
                         true, h, sizeof(h));
        if (canceled)
            item_fail(it, KC_ECANCELED,
                      "interrupted while waiting for the receipt of %s "
                      "(nonce %llu); it may still be mined: the next run "
                      "looks for it",
                      h, (unsigned long long)it->tx.nonce);
        else
            item_fail(it, KC_ETIMEDOUT,
                      "the RPC endpoint has not answered for %llu s while "
                      "waiting for the receipt of %s (nonce %llu); it may "
                      "still be mined: the next run looks for it",
                      (unsigned long long)(now - m->last_ok_at) / 1000, h,
                      (unsigned long long)it->tx.nonce);
    }
}

static bool have_pending(const struct chain_txm *m)
{
    for (const struct chain_txm_item *it = m->items; it; it = it->next)
        if (it->st == IT_PENDING || it->st == IT_SENDING)
            return true;
    return false;
}

static uint64_t poll_interval(const struct chain_txm *m)
{
    uint64_t ms = m->block_ms ? m->block_ms / 4 : TXM_FIRST_POLL_MS;

    if (ms < TXM_MIN_POLL_MS)
        ms = TXM_MIN_POLL_MS;
    if (ms > TXM_MAX_POLL_MS)
        ms = TXM_MAX_POLL_MS;
    return ms;
}

static void on_block_number(struct txm_call *c, int status)
{
    struct chain_txm *m = c->m;
    uint64_t bn = 0, now = uv_now(m->cfg.loop);

    m->polling = false;
    if (status == 0 && chain_rpc_result_u64(&c->call, &bn, NULL) == 0 &&
        bn != m->last_block) {
        if (m->last_block && bn > m->last_block && m->last_block_at) {
            uint64_t per = (now - m->last_block_at) / (bn - m->last_block);
            m->block_ms = m->block_ms ? (3 * m->block_ms + per) / 4 : per;
            if (m->block_ms == 0)
                m->block_ms = 1;
        }
        m->last_block = bn;
        m->last_block_at = now;
        poll_receipts(m);
    }
    check_abandon(m);
    check_timeouts(m);
    arm_tick(m);
}

static void on_tick(uv_timer_t *t)
{
    struct chain_txm *m = t->data;

    m->tick_armed = false;
    if (m->closing)
        return;
    check_abandon(m);
    if (!have_pending(m))
        return;
    m->polling = true;
    txm_call(m, NULL, "eth_blockNumber", NULL, on_block_number, 0);
}

static void arm_tick(struct chain_txm *m)
{
    if (m->closing || m->tick_armed || m->polling || !have_pending(m))
        return;
    if (uv_timer_start(&m->tick, on_tick, poll_interval(m), 0) == 0)
        m->tick_armed = true;
}

/* ---- public --------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct chain_txm *m = h->data;

    m->handles_open--;
    txm_maybe_free(m);
}

static void on_kick(uv_timer_t *t)
{
    struct chain_txm *m = t->data;

    m->kick_armed = false;
    if (m->closing)
        return;
    if (m->ready == READY_NONE) {
        start_ready(m);
        return;
    }
    if (m->ready != READY_OK)
        return;
    for (struct chain_txm_item *it = m->items, *next; it; it = next) {
        next = it->next;
        if (it->st == IT_WAIT_READY)
            item_prep(it);
    }
}

void chain_txm_get_config(const struct chain_txm *m,
                          struct chain_txm_config *out)
{
    *out = m->cfg;
}

int chain_txm_new(const struct chain_txm_config *cfg, struct chain_txm **out,
                  struct kc_err *err)
{
    struct chain_txm *m;
    int ret;

    *out = NULL;
    if (!cfg->loop || !cfg->rpc || !cfg->signer || !cfg->chain_id)
        return kc_err_set(err, KC_EINVAL,
                          "txm: loop, rpc, signer and chain id required");
    m = kc_xcalloc(1, sizeof(*m));
    m->cfg = *cfg;
    if (!m->cfg.gas_margin_pct)
        m->cfg.gas_margin_pct = CHAIN_TXM_GAS_MARGIN;
    if (!m->cfg.tx_timeout_ms)
        m->cfg.tx_timeout_ms = CHAIN_TXM_TIMEOUT_MS;
    if (!m->cfg.rpc_deadline_ms)
        m->cfg.rpc_deadline_ms = CHAIN_TXM_RPC_DEADLINE_MS;
    m->last_ok_at = uv_now(cfg->loop);
    memcpy(m->from, chain_signer_address(cfg->signer), 20);
    ret = uv_timer_init(cfg->loop, &m->tick);
    if (ret < 0) {
        free(m);
        return kc_err_from_uv(err, ret, "txm timer");
    }
    m->tick.data = m;
    ret = uv_timer_init(cfg->loop, &m->kick);
    if (ret < 0) {
        m->closing = true;
        m->handles_open = 1;
        uv_close((uv_handle_t *)&m->tick, on_handle_closed);
        return kc_err_from_uv(err, ret, "txm timer");
    }
    m->kick.data = m;
    m->handles_open = 2;
    *out = m;
    return 0;
}

void chain_txm_free(struct chain_txm *m)
{
    struct ready_waiter *w;

    if (!m || m->closing)
        return;
    m->closing = true;
    uv_timer_stop(&m->tick);
    while ((w = m->waiters) != NULL) {
        m->waiters = w->next;
        free(w);
    }
    while (m->items) {
        struct chain_txm_item *it = m->items;
        if (it->req)
            kc_err_set(&it->req->err, KC_ECANCELED, "%s: canceled", it->what);
        item_complete(it, KC_ECANCELED);
    }
    uv_timer_stop(&m->kick);
    uv_close((uv_handle_t *)&m->tick, on_handle_closed);
    uv_close((uv_handle_t *)&m->kick, on_handle_closed);
}

void chain_txm_get_stats(const struct chain_txm *m, struct chain_txm_stats *out)
{
    *out = m->stats;
}

int chain_txm_send(struct chain_txm *m, struct chain_tx_req *req,
                   chain_tx_cb cb, struct kc_err *err)
{
    struct chain_txm_item *it;

    if (m->closing)
        return kc_err_set(err, KC_ECANCELED, "%s: chain client closing",
                          req->what ? req->what : "transaction");
    if (m->ready == READY_FAIL)
        return kc_err_set(err, m->ready_err.code, "%s: %s",
                          req->what ? req->what : "transaction",
                          m->ready_err.msg);
    it = kc_xcalloc(1, sizeof(*it));
    it->m = m;
    it->refs = 1;
    it->req = req;
    it->cb = cb;
    it->what = kc_xstrdup(req->what ? req->what : "transaction");
    it->input = kc_xmalloc(req->input_len + 1);
    if (req->input_len)
        memcpy(it->input, req->input, req->input_len);
    it->input_len = req->input_len;
    it->tx.has_to = req->has_to;
    memcpy(it->tx.to, req->to, 20);
    it->gas = req->gas_limit;
    req->item = it;
    req->broadcasts = 0;
    req->receipt = NULL;
    kc_err_clear(&req->err);
    it->next = m->items;
    m->items = it;
    it->st = IT_WAIT_READY;
    /* Items start from the loop (kick), never inside this call. */
    if (!m->kick_armed) {
        int ret = uv_timer_start(&m->kick, on_kick, 0, 0);
        if (ret < 0) {
            m->items = it->next;
            req->item = NULL;
            free(it->what);
            free(it->input);
            free(it);
            return kc_err_from_uv(err, ret, "txm timer");
        }
        m->kick_armed = true;
    }
    return 0;
}

void chain_tx_req_release(struct chain_tx_req *req)
{
    json_object_put(req->receipt);
    req->receipt = NULL;
}
