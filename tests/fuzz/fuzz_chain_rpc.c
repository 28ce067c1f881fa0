/* tests/fuzz/fuzz_chain_rpc.c: the chain provider's JSON-RPC response
 * handling (resources/chain/rpc.c): an HTTP answer (status and body) to a
 * batch of one to four calls is matched to the calls by id, errors and
 * their revert data taken out, and results read as quantities and hex data
 * as the provider reads them; revert data is then described with the ABI
 * decoder. Every call must be called back exactly once, with a message when
 * it failed.
 *
 * The response handler is static in rpc.c: this file includes rpc.c to
 * reach it (its other symbols then come from here, not from the library).
 * The first input byte picks the number of calls and the HTTP status; the
 * rest is the body.
 *
 * Replayed by ctest (fuzz_chain_rpc: driver.c, corpus/chain_rpc).
 */
#include "resources/chain/rpc.c"

#include "resources/chain/abi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long codes[] = { 200, 200, 200, 429, 500, 400 };

static void on_call(struct chain_rpc_call *call, int status)
{
    int *count = call->data;
    struct kc_err err = { 0 };

    (*count)++;
    if (status < 0 && !call->err.msg[0])
        KC_BUG("call failed without a message");
    if (status == 0) {
        uint64_t v;
        uint8_t *bytes = NULL;
        size_t len = 0;
        (void)chain_rpc_result_u64(call, &v, &err);
        if (chain_rpc_result_bytes(call, 1 << 20, &bytes, &len, &err) == 0)
            free(bytes);
    }
    if (call->revert) {
        struct kc_buf out = { 0 };
        if (chain_abi_describe_revert(NULL, call->revert, call->revert_len,
                                      &out) < 0)
            KC_BUG("revert description failed");
        kc_buf_release(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = { "eth_call", "eth_chainId",
                                           "eth_getTransactionReceipt",
                                           "eth_sendRawTransaction" };
    struct chain_rpc rpc;
    struct chain_rpc_call calls[4];
    struct chain_rpc_batch *b;
    int count[4] = { 0 };
    size_t n;

    if (size < 1)
        return 0;
    n = 1 + data[0] % 4;
    memset(&rpc, 0, sizeof(rpc));
    rpc.queue_tail = &rpc.queue;
    rpc.done_tail = &rpc.done;
    memset(calls, 0, sizeof(calls));
    b = kc_xcalloc(1, sizeof(*b));
    b->rpc = &rpc;
    b->n = n;
    b->calls = kc_xcalloc(n, sizeof(*b->calls));
    for (size_t i = 0; i < n; i++) {
        calls[i].data = &count[i];
        calls[i].method = methods[i];
        calls[i].cb = on_call;
        calls[i].rpc = &rpc;
        calls[i].id = i + 1;
        b->calls[i] = &calls[i];
    }
    b->req.code = codes[(data[0] / 4) % KC_ARRAY_SIZE(codes)];
    if (size > 1)
        kc_buf_add(&b->req.body, data + 1, size - 1);
    rpc.live = b;
    on_batch_done(&b->req, 0);
    for (size_t i = 0; i < n; i++) {
        if (count[i] != 1)
            KC_BUG("call %zu called back %d times", i, count[i]);
        chain_rpc_call_release(&calls[i]);
    }
    if (rpc.live)
        KC_BUG("batch still live");
    return 0;
}
