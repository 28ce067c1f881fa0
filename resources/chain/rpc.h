/* resources/chain/rpc.h: Ethereum JSON-RPC over the HTTP runtime, batched.
 *
 * Calls made in the same loop turn (and within CHAIN_RPC_COALESCE_MS of the
 * first) go out as one JSON-RPC batch (a JSON array), at most max_batch
 * calls per HTTP request; more become further requests sent at once. A
 * batch of one is sent as a plain request object. Responses are matched by
 * id; a call the node did not answer fails on its own.
 *
 * Every call is safe to retry (reads, and eth_sendRawTransaction of the same
 * signed bytes), so requests are marked safe and the HTTP runtime retries
 * transport errors, 429 and 5xx with its backoff.
 *
 * The endpoint URL may carry an API key: it never appears in errors (they
 * say "rpc METHOD: ..."), and the caller registers it with the logger.
 *
 * Async contract of chain_rpc_call(): < 0: nothing started, ERR says why,
 * CB never called. 0: CB runs exactly once, later, from the loop (never
 * inside chain_rpc_call), also on chain_rpc_free (KC_ECANCELED). Status 0:
 * call->result holds the "result" (may be JSON null); KC_EREMOTE: the node
 * answered with an error object (call->rpc_code, call->err.msg, and the
 * revert data in call->revert when the error carried hex "data"); other
 * negative codes: transport or parse errors. Release the call with
 * chain_rpc_call_release() in or after the callback.
 */
#ifndef KC_RESOURCES_CHAIN_RPC_H
#define KC_RESOURCES_CHAIN_RPC_H

#include <json-c/json.h>
#include <uv.h>

#include "reconcile/http.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"

#define CHAIN_RPC_MAX_BATCH   50
#define CHAIN_RPC_COALESCE_MS 2
#define CHAIN_RPC_TIMEOUT_MS  30000
#define CHAIN_RPC_MAX_REVERT  (64u << 10)

struct chain_rpc;
struct chain_rpc_call;
struct chain_rpc_batch;

typedef void (*chain_rpc_cb)(struct chain_rpc_call *call, int status);

struct chain_rpc_call {
    /* public */
    void *data;
    /* read-only, valid in the callback */
    struct json_object *result; /* owned by the call */
    struct kc_err err;
    int64_t rpc_code; /* JSON-RPC error code (status KC_EREMOTE) */
    uint8_t *revert;  /* error "data" bytes (revert data), or NULL */
    size_t revert_len;
    const char *method;
    /* private */
    struct json_object *params;
    chain_rpc_cb cb;
    struct chain_rpc *rpc;
    struct chain_rpc_call *next;
    uint64_t id;
    int status;
};

struct chain_rpc_config {
    uv_loop_t *loop;
    struct kc_http *http;
    struct kc_log *log; /* optional */
    const char *url;
    size_t max_batch; /* 0: CHAIN_RPC_MAX_BATCH */
    long timeout_ms;  /* per HTTP attempt; 0: CHAIN_RPC_TIMEOUT_MS */
};

struct chain_rpc_stats {
    uint64_t requests; /* HTTP requests sent (batches) */
    uint64_t calls;    /* JSON-RPC calls made */
    uint64_t sends;    /* eth_sendRawTransaction calls */
};

int chain_rpc_new(const struct chain_rpc_config *cfg, struct chain_rpc **out,
                  struct kc_err *err);
/* Fails every queued or live call with KC_ECANCELED (their callbacks run
 * later from the loop) and frees the client once its handles are closed:
 * keep running the loop. NULL-safe. */
void chain_rpc_free(struct chain_rpc *rpc);
void chain_rpc_get_stats(const struct chain_rpc *rpc,
                         struct chain_rpc_stats *out);
/* The timeout of one HTTP attempt in effect (the default filled in). */
long chain_rpc_timeout_ms(const struct chain_rpc *rpc);

/* Queues METHOD (static string) with PARAMS (a JSON array; taken, also on
 * failure; NULL for []). CALL is the caller's storage (zeroed or released);
 * it must not move until the callback. */
int chain_rpc_call(struct chain_rpc *rpc, struct chain_rpc_call *call,
                   const char *method, struct json_object *params,
                   chain_rpc_cb cb, struct kc_err *err);
/* Frees what CALL owns (result, revert data); keeps ->data. */
void chain_rpc_call_release(struct chain_rpc_call *call);

/* Result helpers: the result as a quantity / data / address, errors naming
 * the method. */
int chain_rpc_result_u64(const struct chain_rpc_call *call, uint64_t *out,
                         struct kc_err *err);
int chain_rpc_result_bytes(const struct chain_rpc_call *call, size_t max,
                           uint8_t **out, size_t *len, struct kc_err *err);

/* Params helpers (new references). */
struct json_object *chain_rpc_hex(const void *data, size_t len);
struct json_object *chain_rpc_quantity(uint64_t v);
struct json_object *chain_rpc_address(const uint8_t addr[20]);
/* [{"to": TO, "data": DATA, "from": FROM?}, BLOCK] for eth_call. */
struct json_object *chain_rpc_call_params(const uint8_t *from,
                                          const uint8_t to[20],
                                          const void *data, size_t len,
                                          const char *block);

#endif
