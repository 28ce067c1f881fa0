/* resources/chain/txm.h: the transaction manager of one signer.
 *
 * Sends transactions without waiting for each other's receipts and waits
 * for the receipts in parallel:
 *
 *   1. once per run, before the first write: eth_chainId must equal the
 *      configured chain id (else every transaction fails, nothing is sent),
 *      and the next nonce is read from eth_getTransactionCount(pending);
 *   2. per transaction, in one JSON-RPC batch with the others: fees (latest
 *      block's baseFeePerGas and eth_maxPriorityFeePerGas, or eth_gasPrice
 *      on chains without a base fee or when legacy is set; maxFee = 2 *
 *      base fee + tip, capped by max_fee_wei) and eth_estimateGas plus the
 *      margin. A transaction that would revert fails here with the decoded
 *      reason and uses no nonce;
 *   3. the next nonce is taken, the transaction signed (EIP-1559 type 2, or
 *      legacy EIP-155), the optional on_signed hook runs (the caller records
 *      a write-ahead intent and calls chain_txm_continue()), then it is
 *      broadcast. "already known" is success; "nonce too low" resyncs the
 *      nonce and signs again (on_signed runs again: the nonce changed);
 *   4. receipts are polled at the chain's block cadence: a timer asks for
 *      eth_blockNumber and, when a new block appeared, the receipts of every
 *      pending transaction go out in one batch. The poll interval follows the
 *      observed block time (a quarter of it, between 100 ms and 2 s);
 *   5. a transaction not mined after tx_timeout_ms is re-broadcast with the
 *      same nonce and fees bumped by at least 12.5% (capped); every hash
 *      sent is watched, and the receipt of any of them completes it. If its
 *      nonce was consumed by a transaction that is not one of ours, it fails;
 *   6. a receipt with status 0 fails with the revert reason, replayed with
 *      eth_call at that block and decoded with the error ABIs.
 *
 * A transaction that failed after taking a nonce leaves a gap that would
 * block the later ones: the gap is filled with a zero-value transfer to
 * self, or the nonce is reused when nothing came after it.
 *
 * Async contract of chain_txm_send(): < 0: nothing started, ERR says why,
 * CB never called. 0: CB runs exactly once, later, from the loop, with 0
 * (mined, status 1: req->receipt, req->hash, req->block_number...) or a
 * negative KC_E* (req->err says why: KC_EREMOTE for a revert or a node
 * refusal, KC_EPERM for a chain id mismatch or a fee cap, KC_ETIMEDOUT,
 * KC_ECANCELED on chain_txm_free).
 */
#ifndef KC_RESOURCES_CHAIN_TXM_H
#define KC_RESOURCES_CHAIN_TXM_H

#include <json-c/json.h>
#include <uv.h>

#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "resources/chain/abi.h"
#include "resources/chain/rpc.h"
#include "resources/chain/signer.h"
#include "resources/chain/tx.h"

#define CHAIN_TXM_MAX_HASHES 16
#define CHAIN_TXM_GAS_MARGIN 20
#define CHAIN_TXM_TIMEOUT_MS 90000
/* A sent transaction's wait ends when the node has not answered for this
 * long (KC_ETIMEDOUT), and at once when its op is interrupted
 * (kc_op_is_canceled: KC_ECANCELED). Either way it may still be mined; the
 * caller's write-ahead intent lets the next run find it. */
#define CHAIN_TXM_RPC_DEADLINE_MS 120000
#define CHAIN_TXM_MAX_ERR_ABIS    8

struct chain_txm;
struct chain_tx_req;
struct chain_txm_item;

typedef void (*chain_tx_cb)(struct chain_tx_req *req, int status);

struct chain_txm_config {
    uv_loop_t *loop;
    struct chain_rpc *rpc;
    struct kc_log *log;                /* optional */
    const struct chain_signer *signer; /* borrowed */
    uint64_t chain_id;                 /* expected */
    uint64_t max_fee_wei;              /* 0: no cap */
    uint64_t max_priority_fee_wei;     /* 0: no cap */
    unsigned gas_margin_pct;           /* 0: CHAIN_TXM_GAS_MARGIN */
    uint64_t tx_timeout_ms;            /* 0: CHAIN_TXM_TIMEOUT_MS */
    uint64_t rpc_deadline_ms;          /* 0: CHAIN_TXM_RPC_DEADLINE_MS */
    bool legacy;                       /* legacy transactions only */
};

struct chain_tx_req {
    /* public, set before chain_txm_send */
    void *data;
    const char *what; /* what it does, for messages (copied) */
    bool has_to;      /* false: contract creation */
    uint8_t to[20];
    const uint8_t *input; /* calldata or init code (copied) */
    size_t input_len;
    uint64_t gas_limit; /* 0: eth_estimateGas + margin */
    /* Optional: runs when the transaction is signed with a (new) nonce,
     * before it is broadcast; req->nonce, req->hash and req->contract are
     * set. The caller must then call chain_txm_continue(req, status) once
     * (now or later): 0 broadcasts, < 0 abandons it (that status). */
    void (*on_signed)(struct chain_tx_req *req);
    /* Optional: the engine op this transaction belongs to. From the first
     * accepted broadcast until the receipt (or failure) the op is marked
     * kc_op_waiting: it does not hold a --parallelism slot meanwhile. */
    struct kc_op *op;

    /* read-only */
    uint64_t nonce;
    uint8_t hash[32];     /* the hash mined (or last sent) */
    uint8_t contract[20]; /* creations: the CREATE address */
    uint64_t block_number;
    uint64_t gas_used;
    unsigned broadcasts;         /* times sent (re-broadcasts included) */
    struct json_object *receipt; /* owned; freed by chain_tx_req_release */
    struct kc_err err;

    /* private */
    struct chain_txm_item *item;
};

struct chain_txm_stats {
    uint64_t txs;          /* transactions that reached a broadcast */
    uint64_t broadcasts;   /* eth_sendRawTransaction accepted */
    uint64_t rebroadcasts; /* fee bumps after a timeout */
    uint64_t fillers;      /* nonce-gap fillers */
    uint64_t reverted;
};

int chain_txm_new(const struct chain_txm_config *cfg, struct chain_txm **out,
                  struct kc_err *err);
/* The configuration in effect, defaults filled in (borrowed pointers). */
void chain_txm_get_config(const struct chain_txm *m,
                          struct chain_txm_config *out);
/* Fails live transactions with KC_ECANCELED (callbacks later from the
 * loop); the manager is freed once its timer is closed. NULL-safe. */
void chain_txm_free(struct chain_txm *m);
void chain_txm_get_stats(const struct chain_txm *m,
                         struct chain_txm_stats *out);
/* ABIs whose custom errors decode reverts (borrowed; at most
 * CHAIN_TXM_MAX_ERR_ABIS, later ones replace none). */
void chain_txm_add_error_abi(struct chain_txm *m, const struct chain_abi *abi);
/* Describes revert data with the error ABIs (see chain_abi_describe_revert). */
void chain_txm_describe_revert(const struct chain_txm *m, const uint8_t *data,
                               size_t len, struct kc_buf *out);

int chain_txm_send(struct chain_txm *m, struct chain_tx_req *req,
                   chain_tx_cb cb, struct kc_err *err);
/* See on_signed. */
void chain_txm_continue(struct chain_tx_req *req, int status);
/* Frees the receipt; keeps the public members. */
void chain_tx_req_release(struct chain_tx_req *req);

/* Checks the chain id now (once per manager; cached). CB(m, status, arg)
 * runs later from the loop: 0, or KC_EPERM with ERR's message copied into
 * *ERR_OUT when given. For observe-time checks. */
typedef void (*chain_txm_ready_cb)(void *arg, int status,
                                   const struct kc_err *err);
int chain_txm_check_chain(struct chain_txm *m, chain_txm_ready_cb cb, void *arg,
                          struct kc_err *err);

#endif
