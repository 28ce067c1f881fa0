/* resources/chain/allowlist.c: the bytes32 allowlist entries, one resource
 * per entry: chain.kms_os_image, chain.kms_aggregated_mr, chain.kms_device
 * (on the DstackKms proxy) and chain.app_compose_hash, chain.app_device (on
 * a DstackApp). Observed through the public getter; created with add...,
 * revoked with remove... (reference/dstack.md sections 3.2, 3.3). */
#include "resources/chain/chain.h"

#include "reconcile/buf.h"
#include "resources/chain/hex.h"

struct allow_kind {
    const char *parent; /* field holding the contract: "kms" or "app" */
    const char *field;  /* field holding the bytes32 */
    enum chain_fn get, add, remove, event;
};

static const struct allow_kind k_os_image = { "kms",
                                              "hash",
                                              FN_ALLOWED_OS_IMAGES,
                                              FN_ADD_OS_IMAGE,
                                              FN_REMOVE_OS_IMAGE,
                                              EV_OS_IMAGE_ADDED };
static const struct allow_kind k_kms_mr = {
    "kms", "mr", FN_KMS_MRS, FN_ADD_KMS_MR, FN_REMOVE_KMS_MR, EV_KMS_MR_ADDED
};
static const struct allow_kind k_kms_device = { "kms",
                                                "device",
                                                FN_KMS_DEVICES,
                                                FN_ADD_KMS_DEVICE,
                                                FN_REMOVE_KMS_DEVICE,
                                                EV_KMS_DEVICE_ADDED };
static const struct allow_kind k_compose = { "app",
                                             "hash",
                                             FN_COMPOSE_HASHES,
                                             FN_ADD_COMPOSE_HASH,
                                             FN_REMOVE_COMPOSE_HASH,
                                             EV_COMPOSE_HASH_ADDED };
static const struct allow_kind k_app_device = {
    "app",         "device",         FN_APP_DEVICES,
    FN_ADD_DEVICE, FN_REMOVE_DEVICE, EV_DEVICE_ADDED
};

struct allow_op {
    struct kc_op *op;
    const struct allow_kind *k;
    uint8_t parent[20];
    uint8_t value[32];
    struct chain_read rd;
    struct chain_tx_req tx;
    struct kc_buf calldata;
    char what[160];
};

static const struct allow_kind *kind_of(struct kc_op *op)
{
    const char *kind = kc_op_type(op)->kind;

    if (strcmp(kind, "chain.kms_os_image") == 0)
        return &k_os_image;
    if (strcmp(kind, "chain.kms_aggregated_mr") == 0)
        return &k_kms_mr;
    if (strcmp(kind, "chain.kms_device") == 0)
        return &k_kms_device;
    if (strcmp(kind, "chain.app_compose_hash") == 0)
        return &k_compose;
    return &k_app_device;
}

static void allow_free(struct allow_op *a)
{
    chain_read_release(&a->rd);
    chain_tx_req_release(&a->tx);
    kc_buf_release(&a->calldata);
    free(a);
}

static void allow_done(struct allow_op *a, int status)
{
    struct kc_op *op = a->op;

    allow_free(a);
    kc_op_done(op, status);
}

static void set_observed(struct allow_op *a)
{
    struct kc_value *m = kc_value_new_map();

    kc_value_map_set(m, a->k->parent, chain_addr_value(a->parent));
    kc_value_map_set(m, a->k->field, chain_b32_value(a->value));
    kc_op_set_observed(a->op, m);
    kc_op_set_id(a->op, kc_value_str(kc_value_map_get(m, a->k->field)));
}

/* Reads the contract and the bytes32 from the desired attributes (the
 * prior ones when deleting). *KNOWN is false when the contract address is
 * not known yet (observe: a reference not bound). */
static int allow_new(struct kc_op *op, struct allow_op **out, bool *known)
{
    const struct allow_kind *k = kind_of(op);
    struct allow_op *a = kc_xcalloc(1, sizeof(*a));
    const struct kc_value *pv = kc_op_desired(op, k->parent);
    const struct kc_value *vv = kc_op_desired(op, k->field);
    int ret;

    a->op = op;
    a->k = k;
    if (kc_op_phase(op) == KC_PHASE_DELETE || !pv ||
        pv->type == KC_VALUE_UNKNOWN) {
        if (kc_op_prior(op, k->parent))
            pv = kc_op_prior(op, k->parent);
        if (kc_op_prior(op, k->field))
            vv = kc_op_prior(op, k->field);
    }
    ret = chain_value_b32(vv, k->field, a->value, kc_op_err(op));
    if (ret == 0) {
        ret = chain_value_addr(pv, k->parent, a->parent, kc_op_err(op));
        *known = ret == 0;
        if (ret == KC_EAGAIN)
            ret = 0;
    }
    if (ret < 0) {
        free(a);
        return ret;
    }
    /* The manifest manages it (unless it is being destroyed). */
    if (kc_op_phase(op) != KC_PHASE_DELETE && *known)
        chain_prov_manage(chain_prov_of(op), a->parent, k->event, a->value);
    *out = a;
    return 0;
}

static void on_observe_read(struct chain_read *r, int status)
{
    struct allow_op *a = r->data;

    if (status == KC_EREMOTE && strstr(r->err.msg, "returned nothing")) {
        /* No contract at the address (yet): the entry cannot exist. */
        allow_done(a, 0);
        return;
    }
    if (status < 0) {
        kc_err_set(kc_op_err(a->op), status, "%s", r->err.msg);
        allow_done(a, status);
        return;
    }
    if (r->out[0].word[31])
        set_observed(a);
    allow_done(a, 0);
}

static void observe_read(struct allow_op *a)
{
    struct chain_prov *cp = chain_prov_of(a->op);
    struct chain_abi_value arg;

    chain_abi_val_bytes32(&arg, a->value);
    a->rd.data = a;
    if (chain_read_start(cp, &a->rd, a->parent, cp->fn[a->k->get], &arg, 1,
                         on_observe_read, kc_op_err(a->op)) < 0)
        allow_done(a, kc_op_err(a->op)->code);
}

static void on_parent(void *arg, const uint8_t *addr)
{
    struct allow_op *a = arg;

    if (!addr) {
        allow_done(a, 0); /* no contract: no entry */
        return;
    }
    memcpy(a->parent, addr, 20);
    chain_prov_manage(chain_prov_of(a->op), a->parent, a->k->event, a->value);
    observe_read(a);
}

static int allow_observe(struct kc_op *op)
{
    struct allow_op *a = NULL;
    bool known = false;
    char *parent;
    int ret = allow_new(op, &a, &known);

    if (ret < 0)
        return ret;
    if (known) {
        observe_read(a);
        return 0;
    }
    /* The contract's address is not bound yet: wait for its observe. */
    parent = chain_parent_of(op);
    if (!parent) {
        allow_done(a, 0);
        return 0;
    }
    chain_parent_wait(chain_prov_of(op), parent, on_parent, a);
    free(parent);
    return 0;
}

static void on_write(struct chain_tx_req *req, int status)
{
    struct allow_op *a = req->data;

    if (status < 0) {
        kc_err_set(kc_op_err(a->op), status, "%s", req->err.msg);
        allow_done(a, status);
        return;
    }
    if (kc_op_phase(a->op) != KC_PHASE_DELETE)
        set_observed(a);
    allow_done(a, 0);
}

static int allow_write(struct kc_op *op, bool add)
{
    struct chain_prov *cp = chain_prov_of(op);
    struct allow_op *a = NULL;
    const struct chain_abi_entry *fn;
    struct chain_abi_value arg;
    char hex[67];
    bool known = false;
    int ret = allow_new(op, &a, &known);

    if (ret < 0)
        return ret;
    if (!known) {
        free(a);
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "the %s contract address is not known",
                          kind_of(op)->parent);
    }
    fn = cp->fn[add ? a->k->add : a->k->remove];
    chain_abi_val_bytes32(&arg, a->value);
    ret = chain_abi_encode_call(fn, &arg, 1, &a->calldata, kc_op_err(op));
    if (ret < 0) {
        allow_free(a);
        return ret;
    }
    chain_hex_encode(a->value, 32, true, hex, sizeof(hex));
    snprintf(a->what, sizeof(a->what), "%s(%s)", fn->name, hex);
    a->tx.data = a;
    a->tx.what = a->what;
    a->tx.has_to = true;
    memcpy(a->tx.to, a->parent, 20);
    a->tx.input = (const uint8_t *)a->calldata.data;
    a->tx.input_len = a->calldata.len;
    kc_op_progress(op, "%s", a->what);
    a->tx.op = op;
    ret = chain_txm_send(cp->txm, &a->tx, on_write, kc_op_err(op));
    if (ret < 0)
        allow_free(a);
    return ret;
}

static int allow_create(struct kc_op *op)
{
    return allow_write(op, true);
}

static int allow_delete(struct kc_op *op)
{
    return allow_write(op, false);
}

static const struct kc_field kms_hash_fields[] = {
    { "kms", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "hash", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { NULL, 0, 0 },
};
static const struct kc_field kms_mr_fields[] = {
    { "kms", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "mr", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { NULL, 0, 0 },
};
static const struct kc_field kms_device_fields[] = {
    { "kms", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "device", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { NULL, 0, 0 },
};
static const struct kc_field app_hash_fields[] = {
    { "app", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "hash", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { NULL, 0, 0 },
};
static const struct kc_field app_device_fields[] = {
    { "app", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "device", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { NULL, 0, 0 },
};

#define ALLOW_KIND(sym, name, flds)       \
    const struct kc_resource_type sym = { \
        .kind = name,                     \
        .fields = flds,                   \
        .flags = KC_KIND_REVOKE,          \
        .observe = allow_observe,         \
        .create = allow_create,           \
        .delete = allow_delete,           \
    }

ALLOW_KIND(kc_chain_kms_os_image, "chain.kms_os_image", kms_hash_fields);
ALLOW_KIND(kc_chain_kms_aggregated_mr, "chain.kms_aggregated_mr",
           kms_mr_fields);
ALLOW_KIND(kc_chain_kms_device, "chain.kms_device", kms_device_fields);
ALLOW_KIND(kc_chain_app_compose_hash, "chain.app_compose_hash",
           app_hash_fields);
ALLOW_KIND(kc_chain_app_device, "chain.app_device", app_device_fields);
