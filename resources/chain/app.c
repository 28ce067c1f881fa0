/* resources/chain/app.c: chain.app (a DstackApp created through the KMS
 * factory, or adopted), and the two settings chain.app_allow_any_device and
 * chain.kms_gateway_app_id.
 *
 * chain.app create is `kms:create-app`: one deployAndRegisterApp(signer,
 * disable_upgrades, false, 0, 0) on the KMS proxy; the app id is taken from
 * the AppDeployedViaFactory event of the receipt (reference/dstack.md
 * section 3.6). Before it is broadcast, the transaction's nonce and hash
 * are recorded as an intent; a later run takes the app id from that
 * transaction's receipt instead of creating a second app. */
#include "resources/chain/chain.h"

#include "reconcile/buf.h"
#include "reconcile/json.h"
#include "resources/chain/hex.h"

#define APP_PENDING_MSG                                                       \
    "the app creation recorded by an earlier run (nonce %llu) is not mined: " \
    "run again once it is"

/* ---- settings: allow_any_device, gateway_app_id --------------------- */

struct setting_kind {
    const char *parent; /* "app" or "kms" */
    const char *field;  /* "allow" or "app_id" */
    enum chain_fn get, set;
    bool is_bool;
};

static const struct setting_kind k_allow_any = {
    "app", "allow", FN_ALLOW_ANY_DEVICE, FN_SET_ALLOW_ANY_DEVICE, true
};
static const struct setting_kind k_gateway = { "kms", "app_id",
                                               FN_GATEWAY_APP_ID,
                                               FN_SET_GATEWAY_APP_ID, false };

struct setting_op {
    struct kc_op *op;
    const struct setting_kind *k;
    uint8_t parent[20];
    struct chain_read rd;
    struct chain_tx_req tx;
    struct kc_buf calldata;
    struct kc_value *value; /* what is written */
    char what[128];
};

static const struct setting_kind *setting_of(struct kc_op *op)
{
    return strcmp(kc_op_type(op)->kind, "chain.app_allow_any_device") == 0
               ? &k_allow_any
               : &k_gateway;
}

static void setting_done(struct setting_op *s, int status)
{
    struct kc_op *op = s->op;

    chain_read_release(&s->rd);
    chain_tx_req_release(&s->tx);
    kc_buf_release(&s->calldata);
    kc_value_free(s->value);
    free(s);
    kc_op_done(op, status);
}

static void setting_observed(struct setting_op *s, struct kc_value *v)
{
    struct kc_value *m = kc_value_new_map();

    kc_value_map_set(m, s->k->parent, chain_addr_value(s->parent));
    kc_value_map_set(m, s->k->field, v);
    kc_op_set_observed(s->op, m);
    kc_op_set_id(s->op, kc_op_address(s->op));
}

/* KC_EAGAIN: the contract is not known yet. */
static int setting_new(struct kc_op *op, struct setting_op **out)
{
    const struct setting_kind *k = setting_of(op);
    const struct kc_value *pv = kc_op_desired(op, k->parent);
    struct setting_op *s;
    int ret;

    if (!pv || pv->type == KC_VALUE_UNKNOWN)
        pv = kc_op_prior(op, k->parent);
    s = kc_xcalloc(1, sizeof(*s));
    s->op = op;
    s->k = k;
    ret = chain_value_addr(pv, k->parent, s->parent, kc_op_err(op));
    if (ret < 0) {
        free(s);
        return ret;
    }
    *out = s;
    return 0;
}

static void on_setting_read(struct chain_read *r, int status)
{
    struct setting_op *s = r->data;

    if (status == KC_EREMOTE && strstr(r->err.msg, "returned nothing")) {
        setting_done(s, 0); /* no contract: absent */
        return;
    }
    if (status < 0) {
        kc_err_set(kc_op_err(s->op), status, "%s", r->err.msg);
        setting_done(s, status);
        return;
    }
    if (s->k->is_bool)
        setting_observed(s, kc_value_new_bool(r->out[0].word[31] != 0));
    else
        setting_observed(
            s, kc_value_new_strn((const char *)r->out[0].bytes, r->out[0].len));
    setting_done(s, 0);
}

static void setting_read(struct setting_op *s)
{
    struct chain_prov *cp = chain_prov_of(s->op);

    s->rd.data = s;
    if (chain_read_start(cp, &s->rd, s->parent, cp->fn[s->k->get], NULL, 0,
                         on_setting_read, kc_op_err(s->op)) < 0)
        setting_done(s, kc_op_err(s->op)->code);
}

static void on_setting_parent(void *arg, const uint8_t *addr)
{
    struct setting_op *s = arg;

    if (!addr) {
        setting_done(s, 0);
        return;
    }
    memcpy(s->parent, addr, 20);
    setting_read(s);
}

static int setting_observe(struct kc_op *op)
{
    struct setting_op *s = NULL;
    char *parent;
    int ret = setting_new(op, &s);

    if (ret == KC_EAGAIN) {
        /* Not bound yet: wait for the contract's observe. */
        parent = chain_parent_of(op);
        if (!parent) {
            kc_op_done(op, 0);
            return 0;
        }
        s = kc_xcalloc(1, sizeof(*s));
        s->op = op;
        s->k = setting_of(op);
        chain_parent_wait(chain_prov_of(op), parent, on_setting_parent, s);
        free(parent);
        return 0;
    }
    if (ret < 0)
        return ret;
    setting_read(s);
    return 0;
}

static void on_setting_written(struct chain_tx_req *req, int status)
{
    struct setting_op *s = req->data;

    if (status < 0) {
        kc_err_set(kc_op_err(s->op), status, "%s", req->err.msg);
        setting_done(s, status);
        return;
    }
    if (kc_op_phase(s->op) != KC_PHASE_DELETE) {
        setting_observed(s, s->value);
        s->value = NULL;
    }
    setting_done(s, 0);
}

static int setting_send(struct setting_op *s);

/* Create: the contract may already hold the value (a new app has
 * allowAnyDevice false): then nothing is sent. */
static void on_create_read(struct chain_read *r, int status)
{
    struct setting_op *s = r->data;
    bool same = false;

    if (status == 0)
        same = s->k->is_bool
                   ? (r->out[0].word[31] != 0) == kc_value_bool(s->value, false)
                   : strlen(kc_value_str(s->value)) == r->out[0].len &&
                         memcmp(kc_value_str(s->value), r->out[0].bytes,
                                r->out[0].len) == 0;
    chain_read_release(&s->rd);
    if (same) {
        setting_observed(s, s->value);
        s->value = NULL;
        setting_done(s, 0);
        return;
    }
    status = setting_send(s);
    if (status < 0)
        setting_done(s, status);
}

static int setting_write(struct kc_op *op)
{
    struct chain_prov *cp = chain_prov_of(op);
    struct setting_op *s = NULL;
    const struct kc_value *v;
    int ret = setting_new(op, &s);

    if (ret == KC_EAGAIN)
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "the %s contract address is not known",
                          setting_of(op)->parent);
    if (ret < 0)
        return ret;
    if (kc_op_phase(op) == KC_PHASE_DELETE) {
        /* Revoke: back to the default (false, or no gateway app). */
        s->value =
            s->k->is_bool ? kc_value_new_bool(false) : kc_value_new_str("");
    } else {
        v = kc_op_desired(op, s->k->field);
        if (!v ||
            (s->k->is_bool ? v->type != KC_VALUE_BOOL : !kc_value_str(v))) {
            setting_done(s, kc_err_set(kc_op_err(op), KC_EINVAL,
                                       "%s: expected a %s", s->k->field,
                                       s->k->is_bool ? "boolean" : "string"));
            return 0;
        }
        s->value = kc_value_dup(v);
    }
    if (kc_op_phase(op) == KC_PHASE_CREATE) {
        s->rd.data = s;
        ret = chain_read_start(cp, &s->rd, s->parent, cp->fn[s->k->get], NULL,
                               0, on_create_read, kc_op_err(op));
        if (ret < 0)
            setting_done(s, ret);
        return 0;
    }
    ret = setting_send(s);
    if (ret < 0)
        setting_done(s, ret);
    return 0;
}

static int setting_send(struct setting_op *s)
{
    struct kc_op *op = s->op;
    struct chain_prov *cp = chain_prov_of(op);
    struct chain_abi_value arg;
    int ret;

    if (s->k->is_bool) {
        chain_abi_val_bool(&arg, kc_value_bool(s->value, false));
        snprintf(s->what, sizeof(s->what), "%s(%s)", cp->fn[s->k->set]->name,
                 kc_value_bool(s->value, false) ? "true" : "false");
    } else {
        chain_abi_val_string(&arg, kc_value_str(s->value));
        snprintf(s->what, sizeof(s->what), "%s(\"%.60s\")",
                 cp->fn[s->k->set]->name, kc_value_str(s->value));
    }
    ret = chain_abi_encode_call(cp->fn[s->k->set], &arg, 1, &s->calldata,
                                kc_op_err(op));
    chain_abi_value_release(&arg);
    if (ret < 0)
        return ret;
    s->tx.data = s;
    s->tx.what = s->what;
    s->tx.has_to = true;
    memcpy(s->tx.to, s->parent, 20);
    s->tx.input = (const uint8_t *)s->calldata.data;
    s->tx.input_len = s->calldata.len;
    kc_op_progress(op, "%s", s->what);
    s->tx.op = op;
    return chain_txm_send(cp->txm, &s->tx, on_setting_written, kc_op_err(op));
}

static const struct kc_field allow_any_fields[] = {
    { "app", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "allow", KC_VALUE_BOOL, 0 },
    { NULL, 0, 0 },
};

static const struct kc_field gateway_fields[] = {
    { "kms", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "app_id", KC_VALUE_STRING, 0 },
    { NULL, 0, 0 },
};

const struct kc_resource_type kc_chain_app_allow_any_device = {
    .kind = "chain.app_allow_any_device",
    .fields = allow_any_fields,
    .flags = KC_KIND_REVOKE,
    .observe = setting_observe,
    .create = setting_write,
    .update = setting_write,
    .delete = setting_write,
};

const struct kc_resource_type kc_chain_kms_gateway_app_id = {
    .kind = "chain.kms_gateway_app_id",
    .fields = gateway_fields,
    .flags = KC_KIND_REVOKE,
    .observe = setting_observe,
    .create = setting_write,
    .update = setting_write,
    .delete = setting_write,
};

/* ---- chain.app ------------------------------------------------------ */

struct app_op {
    struct kc_op *op;
    struct chain_prov *cp;
    uint8_t kms[20];
    bool have_kms;
    uint8_t addr[20];
    struct chain_read rd_owner, rd_reg;
    struct chain_rpc_call c_code, c_rcpt;
    int reads, read_status;
    bool code_empty;
    struct chain_tx_req tx;
    struct kc_buf calldata;
    bool persisting;
    bool recovering; /* an intent of a crashed create */
    bool exists;     /* observed */
    int64_t block;
    void (*after)(struct app_op *a, int status);
};

static void app_free(struct app_op *a)
{
    chain_read_release(&a->rd_owner);
    chain_read_release(&a->rd_reg);
    chain_tx_req_release(&a->tx);
    kc_buf_release(&a->calldata);
    free(a);
}

static void app_done(struct app_op *a, int status)
{
    struct kc_op *op = a->op;

    if (kc_op_phase(op) == KC_PHASE_OBSERVE || (a->exists && status == 0)) {
        const struct kc_value *b = kc_op_prior_output(op, "deploy_block");
        chain_parent_publish(
            a->cp, kc_op_address(op), a->exists && status == 0 ? a->addr : NULL,
            a->block >= 0                  ? a->block
            : b && b->type == KC_VALUE_INT ? kc_value_int(b, -1)
                                           : -1);
    }
    chain_op_unlink(op);
    app_free(a);
    kc_op_done(op, status);
}

static struct app_op *app_new(struct kc_op *op)
{
    struct app_op *a = kc_xcalloc(1, sizeof(*a));
    const struct kc_value *kv = kc_op_desired(op, "kms");

    a->op = op;
    a->cp = chain_prov_of(op);
    a->block = -1;
    if (!kv || kv->type == KC_VALUE_UNKNOWN)
        kv = kc_op_prior(op, "kms");
    a->have_kms = chain_value_addr(kv, "kms", a->kms, NULL) == 0;
    chain_op_link(op, a);
    return a;
}

static void app_set_observed(struct app_op *a, const uint8_t owner[20],
                             bool registered)
{
    struct kc_value *m = kc_value_new_map();
    const struct kc_value *du = kc_op_desired(a->op, "disable_upgrades");
    char s[43];

    if (a->have_kms) {
        kc_value_map_set(m, "kms", chain_addr_value(a->kms));
        kc_value_map_set(m, "registered", kc_value_new_bool(registered));
    }
    kc_value_map_set(m, "address", chain_addr_value(a->addr));
    kc_value_map_set(m, "owner", chain_addr_value(owner));
    (void)du; /* write-only: compared with the last applied value */
    kc_op_set_observed(a->op, m);
    chain_hex_encode(a->addr, 20, true, s, sizeof(s));
    kc_op_set_id(a->op, s);
    kc_op_set_output(a->op, "address", chain_addr_value(a->addr));
    if (a->block >= 0)
        kc_op_set_output(a->op, "deploy_block", kc_value_new_int(a->block));
    else if (kc_op_prior_output(a->op, "deploy_block"))
        kc_op_set_output(
            a->op, "deploy_block",
            kc_value_dup(kc_op_prior_output(a->op, "deploy_block")));
    else /* adopted: unknown, event scans start at 0 */
        kc_op_set_output(a->op, "deploy_block", kc_value_new_int(0));
}

static void app_read_one(struct app_op *a, int status, const char *msg)
{
    if (status < 0 && a->read_status == 0) {
        a->read_status = status;
        kc_err_set(kc_op_err(a->op), status, "%s", msg);
    }
    if (--a->reads == 0)
        a->after(a, a->read_status);
}

static void on_app_read(struct chain_read *r, int status)
{
    app_read_one(r->data, status, r->err.msg);
}

static void on_app_code(struct chain_rpc_call *call, int status)
{
    struct app_op *a = call->data;
    const char *s = status == 0 ? json_object_get_string(call->result) : NULL;
    char msg[sizeof(call->err.msg)];

    a->code_empty = status == 0 && (!s || strcmp(s, "0x") == 0);
    memcpy(msg, call->err.msg, sizeof(msg));
    chain_rpc_call_release(call);
    app_read_one(a, status, msg);
}

/* Reads code and owner() of a->addr and registeredApps(a->addr) on the
 * KMS, in one batch; then a->after(a, status). */
static void app_read(struct app_op *a, void (*then)(struct app_op *a, int))
{
    struct chain_prov *cp = a->cp;
    struct json_object *p = json_object_new_array();
    struct chain_abi_value arg;
    struct kc_err err = { 0 };

    a->after = then;
    a->read_status = 0;
    a->reads = a->have_kms ? 3 : 2;
    chain_read_release(&a->rd_owner);
    chain_read_release(&a->rd_reg);
    a->rd_owner.data = a;
    a->rd_reg.data = a;
    a->c_code.data = a;
    json_object_array_add(p, chain_rpc_address(a->addr));
    json_object_array_add(p, json_object_new_string("latest"));
    if (chain_rpc_call(cp->rpc, &a->c_code, "eth_getCode", p, on_app_code,
                       &err) < 0)
        app_read_one(a, err.code, err.msg);
    if (chain_read_start(cp, &a->rd_owner, a->addr, cp->fn[FN_OWNER], NULL, 0,
                         on_app_read, &err) < 0)
        app_read_one(a, err.code, err.msg);
    if (a->have_kms) {
        chain_abi_val_address(&arg, a->addr);
        if (chain_read_start(cp, &a->rd_reg, a->kms, cp->fn[FN_REGISTERED_APPS],
                             &arg, 1, on_app_read, &err) < 0)
            app_read_one(a, err.code, err.msg);
    }
}

static int app_check(struct app_op *a, int status, bool *exists)
{
    const uint8_t *owner;
    char o[43], s[43];

    *exists = false;
    if (a->code_empty)
        return 0;
    if (status < 0)
        return status;
    owner = a->rd_owner.out[0].word + 12;
    /* Adopting: the signer must own it (see kms.c). */
    if (kc_op_desired(a->op, "address") &&
        kc_op_desired(a->op, "address")->type == KC_VALUE_STRING &&
        memcmp(owner, chain_signer_address(a->cp->signer), 20) != 0) {
        chain_address_format(owner, o);
        chain_address_format(chain_signer_address(a->cp->signer), s);
        return kc_err_set(kc_op_err(a->op), KC_ECONFLICT,
                          "the app contract's owner is %s, the signer is %s: "
                          "kmsctl cannot manage it with this key",
                          o, s);
    }
    *exists = true;
    a->exists = true;
    app_set_observed(a, owner,
                     a->have_kms && a->rd_reg.out && a->rd_reg.out[0].word[31]);
    return 0;
}

static void app_observe_after(struct app_op *a, int status)
{
    bool exists;
    const struct kc_value *adopt = kc_op_desired(a->op, "address");
    int ret = app_check(a, status, &exists);

    if (ret == 0 && !exists && adopt && adopt->type == KC_VALUE_STRING)
        ret = kc_err_set(kc_op_err(a->op), KC_ENOENT,
                         "no contract at %s (the app to adopt)",
                         kc_value_str(adopt));
    app_done(a, ret);
}

/* The app id from a receipt: AppDeployedViaFactory(appId, deployer) from
 * the KMS, topic 1. */
static int app_from_receipt(struct app_op *a, struct json_object *rcpt)
{
    struct json_object *logs = NULL;
    const struct chain_abi_entry *ev = a->cp->fn[EV_APP_DEPLOYED];

    if (!json_object_object_get_ex(rcpt, "logs", &logs) ||
        !json_object_is_type(logs, json_type_array))
        return KC_ENOENT;
    for (size_t i = 0; i < json_object_array_length(logs); i++) {
        struct json_object *l = json_object_array_get_idx(logs, i);
        struct json_object *topics = NULL;
        const char *from =
            json_object_get_string(json_object_object_get(l, "address"));
        uint8_t la[20], t0[32], t1[32];
        const char *s0, *s1;
        if (!from || chain_address_parse(from, la, "log", NULL) < 0 ||
            memcmp(la, a->kms, 20) != 0 ||
            !json_object_object_get_ex(l, "topics", &topics) ||
            kc_json_array_len(topics) < 3)
            continue;
        /* The topics are measured, not assumed to be 66 characters: a short
         * one was read past its end. */
        s0 = kc_json_array_str(topics, 0);
        s1 = kc_json_array_str(topics, 1);
        if (!s0 || !s1 ||
            chain_hex_decode_fixed(s0, strlen(s0), t0, 32, "topic", NULL) < 0 ||
            memcmp(t0, ev->topic, 32) != 0)
            continue;
        if (chain_hex_decode_fixed(s1, strlen(s1), t1, 32, "topic", NULL) < 0 ||
            !chain_is_zero(t1, 12))
            continue;
        memcpy(a->addr, t1 + 12, 20);
        return 0;
    }
    return KC_ENOENT;
}

/* ---- recovery of a create recorded by a crashed run ----------------- */

static uint64_t intent_nonce(struct app_op *a)
{
    const struct kc_state_intent *in = kc_op_intent(a->op);

    return in ? (uint64_t)kc_value_int(kc_value_map_get(in->data, "nonce"), 0)
              : 0;
}

/* The AppDeployedViaFactory logs of the signer on the KMS: which one came
 * from the transaction with the recorded nonce (a fee-bumped re-broadcast
 * has another hash than the one recorded). */
struct log_tx {
    struct chain_rpc_call call;
    struct app_op *a;
    uint8_t app[20];
};

struct log_search {
    struct log_tx *txs;
    size_t n, pending;
    bool found;
};

/* One answer less to wait for; the last one decides. */
static void log_search_step(struct app_op *a, struct log_search *ls)
{
    bool found = ls->found;

    if (--ls->pending > 0)
        return;
    free(ls->txs);
    free(ls);
    if (!found) {
        /* Nothing of ours: that transaction made no app. Create one. */
        app_done(a, 0);
        return;
    }
    app_read(a, app_observe_after);
}

static void on_log_tx(struct chain_rpc_call *call, int status)
{
    struct log_tx *t = kc_container_of(call, struct log_tx, call);
    struct app_op *a = t->a;
    struct log_search *ls = call->data;
    const char *n =
        status == 0 && json_object_is_type(call->result, json_type_object)
            ? kc_json_opt_str(call->result, "nonce")
            : NULL;
    uint64_t nonce;

    if (n && chain_quantity_parse(n, &nonce, "nonce", NULL) == 0 &&
        nonce == intent_nonce(a) && !ls->found) {
        ls->found = true;
        memcpy(a->addr, t->app, 20);
    }
    chain_rpc_call_release(call);
    log_search_step(a, ls);
}

static void on_app_logs(struct chain_rpc_call *call, int status)
{
    struct app_op *a = call->data;
    struct log_search *ls;
    size_t n;

    if (status == 0 && !json_object_is_type(call->result, json_type_array))
        status = kc_err_set(&call->err, KC_EPARSE,
                            "rpc eth_getLogs: expected an array");
    if (status < 0) {
        kc_err_set(kc_op_err(a->op), status, "%s", call->err.msg);
        chain_rpc_call_release(call);
        app_done(a, status);
        return;
    }
    n = json_object_array_length(call->result);
    if (n == 0) {
        chain_rpc_call_release(call);
        app_done(a, 0);
        return;
    }
    ls = kc_xcalloc(1, sizeof(*ls));
    ls->txs = kc_xcalloc(n, sizeof(*ls->txs));
    ls->n = n;
    ls->pending = 1;
    for (size_t i = 0; i < n; i++) {
        struct json_object *l = json_object_array_get_idx(call->result, i);
        struct json_object *topics = json_object_object_get(l, "topics");
        const char *t1 = kc_json_array_str(topics, 1);
        const char *h = kc_json_opt_str(l, "transactionHash");
        uint8_t w[32];
        struct json_object *p;
        struct kc_err err = { 0 };
        if (!t1 || !h ||
            chain_hex_decode_fixed(t1, strlen(t1), w, 32, "topic", NULL) < 0)
            continue;
        ls->txs[i].a = a;
        memcpy(ls->txs[i].app, w + 12, 20);
        ls->txs[i].call.data = ls;
        p = json_object_new_array();
        json_object_array_add(p, json_object_new_string(h));
        ls->pending++;
        if (chain_rpc_call(a->cp->rpc, &ls->txs[i].call,
                           "eth_getTransactionByHash", p, on_log_tx, &err) < 0)
            ls->pending--;
    }
    chain_rpc_call_release(call);
    log_search_step(a, ls); /* the guard reference taken above */
}

static void app_search_logs(struct app_op *a)
{
    struct json_object *p = json_object_new_array();
    struct json_object *f = json_object_new_object();
    struct json_object *topics = json_object_new_array();
    uint8_t who[32] = { 0 };
    int64_t from = chain_parent_block(a->cp, "chain.kms.main");
    struct kc_err err = { 0 };

    memcpy(who + 12, chain_signer_address(a->cp->signer), 20);
    json_object_object_add(f, "address", chain_rpc_address(a->kms));
    json_object_object_add(f, "fromBlock",
                           chain_rpc_quantity(from > 0 ? (uint64_t)from : 0));
    json_object_object_add(f, "toBlock", json_object_new_string("latest"));
    json_object_array_add(topics,
                          chain_rpc_hex(a->cp->fn[EV_APP_DEPLOYED]->topic, 32));
    json_object_array_add(topics, NULL);
    json_object_array_add(topics, chain_rpc_hex(who, 32));
    json_object_object_add(f, "topics", topics);
    json_object_array_add(p, f);
    a->c_rcpt.data = a;
    if (chain_rpc_call(a->cp->rpc, &a->c_rcpt, "eth_getLogs", p, on_app_logs,
                       &err) < 0)
        app_done(a, kc_err_set(kc_op_err(a->op), err.code, "%s", err.msg));
}

static void on_recover_nonce(struct chain_rpc_call *call, int status)
{
    struct app_op *a = call->data;
    uint64_t latest = 0;

    if (status == 0)
        status = chain_rpc_result_u64(call, &latest, kc_op_err(a->op));
    else
        kc_err_set(kc_op_err(a->op), status, "%s", call->err.msg);
    chain_rpc_call_release(call);
    call->data = a;
    if (status < 0) {
        app_done(a, status);
        return;
    }
    if (latest <= intent_nonce(a)) {
        app_done(a, kc_err_set(kc_op_err(a->op), KC_EAGAIN, APP_PENDING_MSG,
                               (unsigned long long)intent_nonce(a)));
        return;
    }
    app_search_logs(a);
}

static void on_intent_receipt(struct chain_rpc_call *call, int status)
{
    struct app_op *a = call->data;
    uint64_t nonce = intent_nonce(a);
    struct json_object *p;
    int ret = status;

    if (ret < 0) {
        kc_err_set(kc_op_err(a->op), ret, "%s", call->err.msg);
    } else if (!json_object_is_type(call->result, json_type_object)) {
        /* Not that hash: pending, or mined under a re-broadcast's hash. */
        chain_rpc_call_release(call);
        call->data = a;
        p = json_object_new_array();
        json_object_array_add(
            p, chain_rpc_address(chain_signer_address(a->cp->signer)));
        json_object_array_add(p, json_object_new_string("latest"));
        if (chain_rpc_call(a->cp->rpc, &a->c_rcpt, "eth_getTransactionCount", p,
                           on_recover_nonce, kc_op_err(a->op)) < 0)
            app_done(a, kc_op_err(a->op)->code);
        return;
    } else if (app_from_receipt(a, call->result) < 0) {
        ret = kc_err_set(kc_op_err(a->op), KC_EREMOTE,
                         "the app creation recorded by an earlier run "
                         "(nonce %llu) made no AppDeployedViaFactory event",
                         (unsigned long long)nonce);
    }
    chain_rpc_call_release(call);
    if (ret < 0) {
        app_done(a, ret);
        return;
    }
    app_read(a, app_observe_after);
}

/* An earlier run recorded a deployAndRegisterApp: its receipt says, or
 * the signer's AppDeployedViaFactory events matched by nonce. */
static void app_recover(struct app_op *a)
{
    const struct kc_state_intent *in = kc_op_intent(a->op);
    const char *hash = kc_value_str(kc_value_map_get(in->data, "hash"));
    struct json_object *p;
    struct kc_err err = { 0 };

    if (!hash) {
        app_search_logs(a);
        return;
    }
    p = json_object_new_array();
    json_object_array_add(p, json_object_new_string(hash));
    a->c_rcpt.data = a;
    if (chain_rpc_call(a->cp->rpc, &a->c_rcpt, "eth_getTransactionReceipt", p,
                       on_intent_receipt, &err) < 0)
        app_done(a, kc_err_set(kc_op_err(a->op), err.code, "%s", err.msg));
}

static void on_kms_observed(void *arg, const uint8_t *addr)
{
    struct app_op *a = arg;

    if (!addr) {
        app_done(a, 0); /* no KMS: no app */
        return;
    }
    memcpy(a->kms, addr, 20);
    a->have_kms = true;
    if (a->recovering)
        app_recover(a);
    else
        app_read(a, app_observe_after);
}

static int app_observe(struct kc_op *op)
{
    const struct kc_value *adopt = kc_op_desired(op, "address");
    const char *id = kc_op_id(op);
    struct app_op *a = app_new(op);
    int ret = 0;

    if (adopt && adopt->type == KC_VALUE_STRING) {
        ret = chain_value_addr(adopt, "address", a->addr, kc_op_err(op));
    } else if (id) {
        ret = chain_address_parse(id, a->addr, "id", kc_op_err(op));
    } else if (kc_op_intent(op)) {
        a->recovering = true;
    } else {
        app_done(a, 0); /* never created */
        return 0;
    }
    if (ret < 0) {
        app_done(a, kc_op_err(op)->code ? kc_op_err(op)->code : KC_EINVAL);
        return 0;
    }
    if (!a->have_kms) {
        /* The KMS address is not bound yet: wait for its observe. */
        chain_parent_wait(a->cp, "chain.kms.main", on_kms_observed, a);
        return 0;
    }
    if (a->recovering)
        app_recover(a);
    else
        app_read(a, app_observe_after);
    return 0;
}

static void app_create_after(struct app_op *a, int status)
{
    bool exists;
    int ret = app_check(a, status, &exists);

    if (ret == 0 && !exists)
        ret =
            kc_err_set(kc_op_err(a->op), KC_EREMOTE, "the new app has no code");
    if (ret == 0)
        kc_op_intent_clear(a->op);
    app_done(a, ret);
}

static void on_app_persisted(struct kc_op *op, int status)
{
    struct app_op *a = chain_op_ctx(op);

    if (a && a->persisting) {
        a->persisting = false;
        chain_txm_continue(&a->tx, status);
    }
}

static void on_app_signed(struct chain_tx_req *req)
{
    struct app_op *a = req->data;
    struct kc_value *data = kc_value_new_map();
    char h[67];
    int ret;

    chain_hex_encode(req->hash, 32, true, h, sizeof(h));
    kc_value_map_set(data, "nonce", kc_value_new_int((int64_t)req->nonce));
    kc_value_map_set(data, "hash", kc_value_new_str(h));
    ret = kc_op_intent_put(a->op, "create", data, kc_op_err(a->op));
    kc_value_free(data);
    if (ret == 0) {
        a->persisting = true;
        ret = kc_op_persist(a->op, on_app_persisted);
        if (ret < 0)
            a->persisting = false;
    }
    if (ret < 0)
        chain_txm_continue(req, ret);
}

static void on_app_created(struct chain_tx_req *req, int status)
{
    struct app_op *a = req->data;

    if (status < 0) {
        kc_err_set(kc_op_err(a->op), status, "%s", req->err.msg);
        app_done(a, status);
        return;
    }
    if (app_from_receipt(a, req->receipt) < 0) {
        app_done(a, kc_err_set(kc_op_err(a->op), KC_EREMOTE,
                               "deployAndRegisterApp made no "
                               "AppDeployedViaFactory event"));
        return;
    }
    a->block = (int64_t)req->block_number;
    app_read(a, app_create_after);
}

static int app_create(struct kc_op *op)
{
    const struct kc_value *adopt = kc_op_desired(op, "address");
    struct app_op *a;
    struct chain_abi_value args[5];
    uint8_t zero[32] = { 0 };
    int ret;

    if (adopt && adopt->type == KC_VALUE_STRING)
        return kc_err_set(kc_op_err(op), KC_ENOENT,
                          "no contract at %s to adopt", kc_value_str(adopt));
    a = app_new(op);
    if (!a->have_kms) {
        app_done(a, kc_err_set(kc_op_err(op), KC_EINVAL,
                               "the KMS contract address is not known"));
        return 0;
    }
    chain_abi_val_address(&args[0], chain_signer_address(a->cp->signer));
    chain_abi_val_bool(
        &args[1], kc_value_bool(kc_op_desired(op, "disable_upgrades"), false));
    chain_abi_val_bool(&args[2], false);
    chain_abi_val_bytes32(&args[3], zero);
    chain_abi_val_bytes32(&args[4], zero);
    ret = chain_abi_encode_call(a->cp->fn[FN_DEPLOY_AND_REGISTER_APP], args, 5,
                                &a->calldata, kc_op_err(op));
    if (ret < 0) {
        app_done(a, ret);
        return 0;
    }
    a->tx.data = a;
    a->tx.what = "deployAndRegisterApp";
    a->tx.has_to = true;
    memcpy(a->tx.to, a->kms, 20);
    a->tx.input = (const uint8_t *)a->calldata.data;
    a->tx.input_len = a->calldata.len;
    a->tx.on_signed = on_app_signed;
    kc_op_progress(op, "deployAndRegisterApp");
    a->tx.op = op;
    ret = chain_txm_send(a->cp->txm, &a->tx, on_app_created, kc_op_err(op));
    if (ret < 0)
        app_done(a, ret);
    return 0;
}

/* Update: registration lost (registerApp) or upgrades to disable. */
static void on_app_updated(struct chain_tx_req *req, int status)
{
    struct app_op *a = req->data;

    if (status < 0) {
        kc_err_set(kc_op_err(a->op), status, "%s", req->err.msg);
        app_done(a, status);
        return;
    }
    app_read(a, app_observe_after);
}

static int app_update(struct kc_op *op)
{
    const char *id = kc_op_id(op);
    struct app_op *a = app_new(op);
    struct chain_abi_value arg;
    int ret;

    if (!id || chain_address_parse(id, a->addr, "id", kc_op_err(op)) < 0 ||
        !a->have_kms) {
        app_done(a, kc_err_set(kc_op_err(op), KC_EINVAL,
                               "the app or KMS address is not known"));
        return 0;
    }
    if (kc_op_changed(op, "disable_upgrades")) {
        if (!kc_value_bool(kc_op_desired(op, "disable_upgrades"), false)) {
            app_done(a, kc_err_set(kc_op_err(op), KC_EPERM,
                                   "upgrades of this app were disabled, "
                                   "which cannot be undone"));
            return 0;
        }
        /* disableUpgrades() */
        ret = kc_buf_add(&a->calldata, "\xec\x66\x90\x36", 4);
        a->tx.what = "disableUpgrades";
        memcpy(a->tx.to, a->addr, 20);
    } else {
        /* registerApp(address): same argument as registeredApps */
        chain_abi_val_address(&arg, a->addr);
        ret = kc_buf_add(&a->calldata, "\x17\xa1\xd8\x0f", 4);
        if (ret == 0)
            ret = chain_abi_encode(a->cp->fn[FN_REGISTERED_APPS]->in, &arg, 1,
                                   &a->calldata, kc_op_err(op));
        a->tx.what = "registerApp";
        memcpy(a->tx.to, a->kms, 20);
    }
    if (ret < 0) {
        app_done(a, ret);
        return 0;
    }
    a->tx.data = a;
    a->tx.has_to = true;
    a->tx.input = (const uint8_t *)a->calldata.data;
    a->tx.input_len = a->calldata.len;
    a->tx.op = op;
    ret = chain_txm_send(a->cp->txm, &a->tx, on_app_updated, kc_op_err(op));
    if (ret < 0)
        app_done(a, ret);
    return 0;
}

static const struct kc_field app_fields[] = {
    { "kms", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "address", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "disable_upgrades", KC_VALUE_BOOL, KC_FIELD_IGNORE_DRIFT },
    { "registered", KC_VALUE_BOOL, 0 },
    { "owner", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

const struct kc_resource_type kc_chain_app = {
    .kind = "chain.app",
    .fields = app_fields,
    .flags = KC_KIND_RETAIN,
    .observe = app_observe,
    .create = app_create,
    .update = app_update,
};
