/* tests/unit/helpers/chain_anvil.h: a real EVM node for the chain tests.
 *
 * chain_anvil_start() runs anvil (npm @foundry-rs/anvil, its native binary
 * under node_modules) on a loopback port it picks (--port 0; its output goes
 * to a temp file, where the port is read), waits until it answers
 * JSON-RPC, and arranges for it to die with the test process (parent-death
 * signal), so a crashing test leaves no node behind. chain_anvil_rpc() is a
 * blocking JSON-RPC call for the tests' own checks (never the product's
 * client): tests verify chain state through it, independently of kmsctl.
 *
 * The accounts are anvil's published development accounts (mnemonic "test
 * test ... junk"); CHAIN_ANVIL_KEY0 is account 0.
 */
#ifndef KC_TESTS_CHAIN_ANVIL_H
#define KC_TESTS_CHAIN_ANVIL_H

#include "reconcile/kc.h"

#include <json-c/json.h>
#include <sys/types.h>

#define CHAIN_ANVIL_KEY0 \
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#define CHAIN_ANVIL_ADDR0 "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
#define CHAIN_ANVIL_KEY1 \
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#define CHAIN_ANVIL_ADDR1 "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

struct chain_anvil {
    pid_t pid;
    int port;
    char url[64];
    char log[256]; /* anvil's stdout, removed by chain_anvil_stop */
};

/* Starts anvil with the extra arguments ARGV (NULL-terminated, may be NULL),
 * e.g. { "--block-time", "1", NULL }. Returns 0, or -1 with a message on
 * stderr. */
int chain_anvil_start(struct chain_anvil *a, const char *const *argv);
/* Stops it (SIGTERM, then SIGKILL) and reaps it. Safe on a zeroed struct. */
void chain_anvil_stop(struct chain_anvil *a);

/* Calls METHOD with PARAMS (a JSON array text, NULL for []) on URL and
 * returns the "result" member (one reference, caller puts), or NULL on any
 * error (a message on stderr; *ERRMSG, when given, gets the error's message
 * as a new string). */
struct json_object *chain_anvil_rpc(const char *url, const char *method,
                                    const char *params, char **errmsg);
/* The result of a call as a uint64 quantity; UINT64_MAX on error. */
uint64_t chain_anvil_rpc_u64(const char *url, const char *method,
                             const char *params);
/* Path of the Hardhat artifacts built from tests/contracts (in
 * $KC_BUILD_DIR/artifacts); static storage. */
const char *chain_anvil_artifacts(void);

#endif
