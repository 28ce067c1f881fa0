/* resources/chain/chain.h: the chain provider's private header: its
 * context, the dstack contract functions it calls, and helpers shared by
 * the kinds (reads through eth_call, code checks, writes through the
 * transaction manager). */
#ifndef KC_RESOURCES_CHAIN_CHAIN_H
#define KC_RESOURCES_CHAIN_CHAIN_H

#include "reconcile/kc.h"
#include "reconcile/resource.h"
#include "resources/chain/abi.h"
#include "resources/chain/artifact.h"
#include "resources/chain/rpc.h"
#include "resources/chain/signer.h"
#include "resources/chain/txm.h"

/* Functions and events of DstackKms / DstackApp / OpenZeppelin that the
 * kinds use, by canonical signature (reference/dstack.md section 3). */
enum chain_fn {
    FN_OWNER = 0,
    FN_APP_IMPLEMENTATION,
    FN_KMS_INITIALIZE,
    FN_SET_APP_IMPLEMENTATION,
    FN_ALLOWED_OS_IMAGES,
    FN_ADD_OS_IMAGE,
    FN_REMOVE_OS_IMAGE,
    FN_KMS_MRS,
    FN_ADD_KMS_MR,
    FN_REMOVE_KMS_MR,
    FN_KMS_DEVICES,
    FN_ADD_KMS_DEVICE,
    FN_REMOVE_KMS_DEVICE,
    FN_GATEWAY_APP_ID,
    FN_SET_GATEWAY_APP_ID,
    FN_REGISTERED_APPS,
    FN_DEPLOY_AND_REGISTER_APP,
    FN_COMPOSE_HASHES,
    FN_ADD_COMPOSE_HASH,
    FN_REMOVE_COMPOSE_HASH,
    FN_APP_DEVICES,
    FN_ADD_DEVICE,
    FN_REMOVE_DEVICE,
    FN_ALLOW_ANY_DEVICE,
    FN_SET_ALLOW_ANY_DEVICE,
    FN_PROXY_CTOR,
    EV_APP_DEPLOYED,
    EV_OS_IMAGE_ADDED,
    EV_KMS_MR_ADDED,
    EV_KMS_DEVICE_ADDED,
    EV_COMPOSE_HASH_ADDED,
    EV_DEVICE_ADDED,
    CHAIN_FN_COUNT,
};

/* Per-op contexts of the kinds, found again from the op in callbacks that
 * only give the op (kc_op_persist). */
struct chain_op_link {
    struct kc_op *op;
    void *ctx;
    struct chain_op_link *next;
};

/* An allowlist entry the manifest manages (registered by the entry kinds
 * as they run, read by the unmanaged-entry kinds that run after them). */
struct chain_managed {
    uint8_t contract[20];
    enum chain_fn event; /* its Added event */
    uint8_t value[32];
    struct chain_managed *next;
};

/* Observations of contracts published for dependents observed at the same
 * time (the engine observes everything at once, so a reference to a
 * contract's address is still unknown then). */
struct chain_parent_wait {
    void (*cb)(void *arg, const uint8_t *addr);
    void *arg;
    struct chain_parent_wait *next;
};

struct chain_parent {
    char *address; /* "chain.kms.main", "chain.app.<name>" */
    bool published;
    bool exists;
    uint8_t addr[20];
    int64_t block; /* deploy block, -1 when unknown */
    struct chain_parent_wait *waiters;
    struct chain_parent *next;
};

struct chain_prov {
    struct chain_parent *parents;
    struct chain_op_link *links;
    struct chain_managed *managed;
    struct kc_provider *p;
    struct chain_rpc *rpc;
    struct chain_txm *txm;
    struct chain_signer *signer;
    uint64_t chain_id;
    struct chain_abi_entry *fn[CHAIN_FN_COUNT];
    struct chain_abi *oz_errors; /* OpenZeppelin-style custom errors */
    /* Artifacts, loaded once per run (chain_prov_artifacts). */
    char *artifacts_dir;
    struct chain_artifact *art_kms, *art_app, *art_proxy;
};

/* The chain provider context of OP. */
struct chain_prov *chain_prov_of(struct kc_op *op);
/* Links CTX to OP until chain_op_unlink(); chain_op_ctx() finds it. */
void chain_op_link(struct kc_op *op, void *ctx);
void *chain_op_ctx(struct kc_op *op);
void chain_op_unlink(struct kc_op *op);

/* Publishes the observation of contract resource ADDRESS: its address, or
 * NULL when it does not exist. Waiters are called now. */
void chain_parent_publish(struct chain_prov *cp, const char *address,
                          const uint8_t *addr, int64_t block);
/* The deploy block published for ADDRESS, or -1. */
int64_t chain_parent_block(struct chain_prov *cp, const char *address);
/* Calls CB(ARG, addr or NULL) once the contract resource ADDRESS was
 * observed (now if it already was). */
void chain_parent_wait(struct chain_prov *cp, const char *address,
                       void (*cb)(void *arg, const uint8_t *addr), void *arg);

/* The address of the contract resource OP's kind refers to ("chain.kms.main"
 * or "chain.app.<app>"); caller frees; NULL if the name is malformed. */
char *chain_parent_of(struct kc_op *op);

void chain_prov_manage(struct chain_prov *cp, const uint8_t contract[20],
                       enum chain_fn event, const uint8_t value[32]);
bool chain_prov_is_managed(const struct chain_prov *cp,
                           const uint8_t contract[20], enum chain_fn event,
                           const uint8_t value[32]);

/* ---- reads ---------------------------------------------------------- */

struct chain_read;
typedef void (*chain_read_cb)(struct chain_read *r, int status);

/* An eth_call of FN on TO, decoded; embedded in the caller's struct. */
struct chain_read {
    void *data;
    /* read-only in the callback */
    struct chain_abi_value *out; /* nout values (freed by release) */
    size_t nout;
    struct kc_err err;
    /* private */
    struct chain_rpc_call call;
    struct chain_prov *cp;
    const struct chain_abi_entry *fn;
    chain_read_cb cb;
};

/* Starts the call (contract as chain_rpc_call: CB later, exactly once). */
int chain_read_start(struct chain_prov *cp, struct chain_read *r,
                     const uint8_t to[20], const struct chain_abi_entry *fn,
                     const struct chain_abi_value *args, size_t nargs,
                     chain_read_cb cb, struct kc_err *err);
void chain_read_release(struct chain_read *r);

/* A bytes32 value from a desired attribute ("0x" + 64 hex). */
int chain_value_b32(const struct kc_value *v, const char *field,
                    uint8_t out[32], struct kc_err *err);
/* An address from a desired attribute; KC_EAGAIN when it is UNKNOWN or
 * absent. */
int chain_value_addr(const struct kc_value *v, const char *field,
                     uint8_t out[20], struct kc_err *err);
/* A new string value "0x..." of an address (lowercase) / bytes32. */
struct kc_value *chain_addr_value(const uint8_t a[20]);
struct kc_value *chain_b32_value(const uint8_t b[32]);

/* Loads the three artifacts of DIR (relative paths are taken as they
 * are: expand resolves them) off the loop thread, once per run; CB(op,
 * status) runs later from the loop. */
int chain_prov_artifacts(struct kc_op *op, const char *dir,
                         void (*cb)(struct kc_op *op, int status));

extern const struct kc_resource_type kc_chain_kms;
extern const struct kc_resource_type kc_chain_kms_os_image;
extern const struct kc_resource_type kc_chain_kms_aggregated_mr;
extern const struct kc_resource_type kc_chain_kms_device;
extern const struct kc_resource_type kc_chain_kms_gateway_app_id;
extern const struct kc_resource_type kc_chain_app;
extern const struct kc_resource_type kc_chain_app_compose_hash;
extern const struct kc_resource_type kc_chain_app_device;
extern const struct kc_resource_type kc_chain_app_allow_any_device;
extern const struct kc_resource_type kc_chain_kms_unmanaged;
extern const struct kc_resource_type kc_chain_app_unmanaged;

#endif
