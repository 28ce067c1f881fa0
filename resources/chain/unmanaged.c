/* resources/chain/unmanaged.c: allowlist entries on chain that the manifest
 * does not list: chain.kms_unmanaged.main (OS images, aggregated MRs and
 * device ids of the KMS) and chain.app_unmanaged.<app> (compose hashes and
 * devices of an app).
 *
 * Candidates come from the contract's ...Added events since its deploy
 * block (eth_getLogs in ranges of CHAIN_LOG_RANGE blocks), kept if the
 * getter still says true and no entry resource of this run manages them
 * (the entry resources run first: this resource depends on all of them).
 * The observed `entries` ("os_image:0x...") is desired empty, so entries
 * added outside kmsctl are drift (an extra allowed OS image is the most
 * dangerous drift there is). With `prune: true`, apply revokes them; without,
 * apply leaves them, says so, and records them. Destroying forgets. */
#include "resources/chain/chain.h"

#include <strings.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"
#include "resources/chain/hex.h"

#define CHAIN_LOG_RANGE      5000
#define CHAIN_MAX_CANDIDATES 10000

struct category {
    const char *name;
    enum chain_fn event, get, remove;
};

static const struct category kms_cats[] = {
    { "os_image", EV_OS_IMAGE_ADDED, FN_ALLOWED_OS_IMAGES, FN_REMOVE_OS_IMAGE },
    { "aggregated_mr", EV_KMS_MR_ADDED, FN_KMS_MRS, FN_REMOVE_KMS_MR },
    { "device", EV_KMS_DEVICE_ADDED, FN_KMS_DEVICES, FN_REMOVE_KMS_DEVICE },
};
static const struct category app_cats[] = {
    { "compose_hash", EV_COMPOSE_HASH_ADDED, FN_COMPOSE_HASHES,
      FN_REMOVE_COMPOSE_HASH },
    { "device", EV_DEVICE_ADDED, FN_APP_DEVICES, FN_REMOVE_DEVICE },
};

struct candidate {
    const struct category *cat;
    uint8_t value[32];
    bool managed; /* listed in the manifest */
    bool allowed; /* unmanaged and still allowed on chain */
    struct chain_read rd;
    struct chain_tx_req tx;
    struct kc_buf calldata;
    char what[120];
    struct um_op *u;
};

struct um_op {
    struct kc_op *op;
    struct chain_prov *cp;
    const struct category *cats;
    size_t ncats;
    uint8_t contract[20];
    uint64_t from, to, latest;
    struct chain_rpc_call call;
    struct candidate *cand;
    size_t ncand, capcand;
    int pending;
    int status;
    bool write;   /* create/update: revoke when pruning */
    bool scanned; /* the logs up to latest were read */
};

static void um_free(struct um_op *u)
{
    for (size_t i = 0; i < u->ncand; i++) {
        chain_read_release(&u->cand[i].rd);
        chain_tx_req_release(&u->cand[i].tx);
        kc_buf_release(&u->cand[i].calldata);
    }
    free(u->cand);
    free(u);
}

static void um_done(struct um_op *u, int status)
{
    struct kc_op *op = u->op;

    if (status < 0 && kc_op_err(op)->code == 0)
        kc_err_set(kc_op_err(op), status, "%s", kc_strerror(status));
    um_free(u);
    kc_op_done(op, status);
}

/* Sets the observed entries: the allowed unmanaged candidates (sorted). */
static void sort_names(char **names, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
}

/* A sorted list of "category:0xhash" of the candidates (only the allowed
 * unmanaged ones when ONLY_ALLOWED). */
static struct kc_value *names_of(const struct um_op *u, bool only_allowed)
{
    struct kc_value *list = kc_value_new_list();
    char **names = kc_xcalloc(u->ncand + 1, sizeof(*names));
    size_t n = 0;
    char hex[67];

    for (size_t i = 0; i < u->ncand; i++) {
        if (only_allowed && !u->cand[i].allowed)
            continue;
        chain_hex_encode(u->cand[i].value, 32, true, hex, sizeof(hex));
        names[n++] = kc_xasprintf("%s:%s", u->cand[i].cat->name, hex);
    }
    sort_names(names, n);
    for (size_t i = 0; i < n; i++) {
        kc_value_list_push(list, kc_value_new_str(names[i]));
        free(names[i]);
    }
    free(names);
    return list;
}

/* Sets the observed entries (the allowed unmanaged candidates) and the
 * scan's resume point: the last block scanned and every value its events
 * named, so that the next run scans only the blocks after it. */
static void um_observed(struct um_op *u)
{
    static const char *const inputs[] = { "managed", "prune" };
    struct kc_value *m = kc_value_new_map();

    kc_value_map_set(m, "contract", chain_addr_value(u->contract));
    kc_value_map_set(m, "entries", names_of(u, true));
    /* Each one, with its kind and hash, for plan/drift --json. */
    for (size_t i = 0; i < u->ncand; i++) {
        char hex[67];

        if (!u->cand[i].allowed)
            continue;
        chain_hex_encode(u->cand[i].value, 32, true, hex, sizeof(hex));
        kc_op_found_entry(u->op, u->cand[i].cat->name, hex);
    }
    /* Inputs, not properties of the chain: as wanted. */
    for (size_t i = 0; i < KC_ARRAY_SIZE(inputs); i++) {
        const struct kc_value *d = kc_op_desired(u->op, inputs[i]);
        if (d && d->type != KC_VALUE_UNKNOWN)
            kc_value_map_set(m, inputs[i], kc_value_dup(d));
    }
    kc_op_set_observed(u->op, m);
    kc_op_set_id(u->op, kc_op_address(u->op));
    if (u->scanned) {
        kc_op_set_output(u->op, "log_cursor",
                         kc_value_new_int((int64_t)u->latest));
        kc_op_set_output(u->op, "seen", names_of(u, false));
    }
}

static size_t um_count(const struct um_op *u)
{
    size_t n = 0;

    for (size_t i = 0; i < u->ncand; i++)
        n += u->cand[i].allowed;
    return n;
}

/* ---- revoking ------------------------------------------------------- */

static void on_revoked(struct chain_tx_req *req, int status)
{
    struct candidate *c = req->data;
    struct um_op *u = c->u;

    if (status < 0) {
        if (u->status == 0)
            u->status =
                kc_err_set(kc_op_err(u->op), status, "%s", req->err.msg);
    } else {
        c->allowed = false;
    }
    if (--u->pending == 0) {
        um_observed(u);
        um_done(u, u->status);
    }
}

static void um_prune(struct um_op *u)
{
    char hex[67];

    u->pending = 1;
    for (size_t i = 0; i < u->ncand; i++) {
        struct candidate *c = &u->cand[i];
        const struct chain_abi_entry *fn = u->cp->fn[c->cat->remove];
        struct chain_abi_value arg;
        struct kc_err err = { 0 };
        if (!c->allowed)
            continue;
        chain_abi_val_bytes32(&arg, c->value);
        if (chain_abi_encode_call(fn, &arg, 1, &c->calldata, &err) < 0)
            KC_BUG("encoding %s: %s", fn->signature, err.msg);
        chain_hex_encode(c->value, 32, true, hex, sizeof(hex));
        snprintf(c->what, sizeof(c->what), "%s(%s) (unmanaged)", fn->name, hex);
        c->u = u;
        c->tx.data = c;
        c->tx.what = c->what;
        c->tx.has_to = true;
        memcpy(c->tx.to, u->contract, 20);
        c->tx.input = (const uint8_t *)c->calldata.data;
        c->tx.input_len = c->calldata.len;
        u->pending++;
        kc_op_progress(u->op, "%s", c->what);
        if (chain_txm_send(u->cp->txm, &c->tx, on_revoked, &err) < 0) {
            u->pending--;
            if (u->status == 0)
                u->status =
                    kc_err_set(kc_op_err(u->op), err.code, "%s", err.msg);
        }
    }
    if (--u->pending == 0) {
        um_observed(u);
        um_done(u, u->status);
    }
}

/* ---- scanning ------------------------------------------------------- */

static void scan_finished(struct um_op *u)
{
    size_t n = um_count(u);

    if (!u->write || n == 0) {
        um_observed(u);
        um_done(u, 0);
        return;
    }
    if (!kc_value_bool(kc_op_desired(u->op, "prune"), false)) {
        kc_log(kc_op_log(u->op), KC_LOG_WARN, "chain",
               "%s: %zu allowlist entries on chain are not in the manifest; "
               "left in place (set prune: true to revoke them)",
               kc_op_address(u->op), n);
        um_observed(u);
        um_done(u, 0);
        return;
    }
    um_prune(u);
}

static void on_getter(struct chain_read *r, int status)
{
    struct candidate *c = r->data;
    struct um_op *u = c->u;

    if (status < 0 && u->status == 0)
        u->status = kc_err_set(kc_op_err(u->op), status, "%s", r->err.msg);
    else if (status == 0)
        c->allowed = r->out[0].word[31] != 0;
    chain_read_release(r);
    if (--u->pending == 0) {
        if (u->status < 0)
            um_done(u, u->status);
        else
            scan_finished(u);
    }
}

/* Every candidate's getter, in one batch (the rpc client batches). */
static void check_candidates(struct um_op *u)
{
    u->pending = 1;
    u->scanned = true;
    for (size_t i = 0; i < u->ncand; i++) {
        struct candidate *c = &u->cand[i];
        struct chain_abi_value arg;
        struct kc_err err = { 0 };
        c->u = u;
        if (c->managed)
            continue;
        c->rd.data = c;
        chain_abi_val_bytes32(&arg, c->value);
        u->pending++;
        if (chain_read_start(u->cp, &c->rd, u->contract, u->cp->fn[c->cat->get],
                             &arg, 1, on_getter, &err) < 0) {
            u->pending--;
            if (u->status == 0)
                u->status =
                    kc_err_set(kc_op_err(u->op), err.code, "%s", err.msg);
        }
    }
    if (--u->pending == 0) {
        if (u->status < 0)
            um_done(u, u->status);
        else
            scan_finished(u);
    }
}

/* Listed in the manifest: the desired `managed` ("os_image:0x..."). */
static bool in_manifest(const struct um_op *u, const struct category *cat,
                        const uint8_t value[32])
{
    const struct kc_value *list = kc_op_desired(u->op, "managed");
    char want[96], hex[67];

    if (!list || list->type != KC_VALUE_LIST)
        list = kc_op_prior(u->op, "managed");
    chain_hex_encode(value, 32, true, hex, sizeof(hex));
    snprintf(want, sizeof(want), "%s:%s", cat->name, hex);
    for (size_t i = 0; list && i < kc_value_list_len(list); i++) {
        const char *s = kc_value_str(kc_value_list_get(list, i));
        if (s && strcasecmp(s, want) == 0)
            return true;
    }
    return false;
}

static void add_candidate(struct um_op *u, const struct category *cat,
                          const uint8_t value[32])
{
    for (size_t i = 0; i < u->ncand; i++)
        if (u->cand[i].cat == cat && memcmp(u->cand[i].value, value, 32) == 0)
            return;
    kc_xgrow(&u->cand, &u->capcand, u->ncand + 1, sizeof(*u->cand));
    memset(&u->cand[u->ncand], 0, sizeof(*u->cand));
    u->cand[u->ncand].cat = cat;
    memcpy(u->cand[u->ncand].value, value, 32);
    u->cand[u->ncand].managed =
        in_manifest(u, cat, value) ||
        chain_prov_is_managed(u->cp, u->contract, cat->event, value);
    u->ncand++;
}

/* Candidates seen by an earlier run's scan (output "seen"), when it was of
 * the same contract: the scan resumes after its "log_cursor". */
static void resume(struct um_op *u)
{
    const struct kc_value *c = kc_op_prior(u->op, "contract");
    const struct kc_value *cur = kc_op_prior_output(u->op, "log_cursor");
    const struct kc_value *seen = kc_op_prior_output(u->op, "seen");
    uint8_t prev[20], v[32];

    if (!c || chain_value_addr(c, "contract", prev, NULL) < 0 ||
        memcmp(prev, u->contract, 20) != 0 || !cur ||
        cur->type != KC_VALUE_INT || !seen || seen->type != KC_VALUE_LIST ||
        kc_value_list_len(seen) > CHAIN_MAX_CANDIDATES)
        return;
    for (size_t i = 0; i < kc_value_list_len(seen); i++) {
        const char *s = kc_value_str(kc_value_list_get(seen, i));
        const char *colon = s ? strchr(s, ':') : NULL;
        if (!colon || chain_hex_decode_fixed(colon + 1, strlen(colon + 1), v,
                                             32, "seen", NULL) < 0)
            continue;
        for (size_t k = 0; k < u->ncats; k++)
            if (strlen(u->cats[k].name) == (size_t)(colon - s) &&
                strncmp(u->cats[k].name, s, (size_t)(colon - s)) == 0)
                add_candidate(u, &u->cats[k], v);
    }
    if ((uint64_t)kc_value_int(cur, 0) + 1 > u->from)
        u->from = (uint64_t)kc_value_int(cur, 0) + 1;
}

static void scan_range(struct um_op *u);

static void on_logs(struct chain_rpc_call *call, int status)
{
    struct um_op *u = call->data;
    size_t n;

    if (status < 0) {
        kc_err_set(kc_op_err(u->op), status, "%s", call->err.msg);
        chain_rpc_call_release(call);
        um_done(u, status);
        return;
    }
    if (!json_object_is_type(call->result, json_type_array)) {
        chain_rpc_call_release(call);
        um_done(u, kc_err_set(kc_op_err(u->op), KC_EPARSE,
                              "rpc eth_getLogs: expected an array"));
        return;
    }
    n = json_object_array_length(call->result);
    for (size_t i = 0; i < n; i++) {
        struct json_object *l = json_object_array_get_idx(call->result, i);
        struct json_object *topics = json_object_object_get(l, "topics");
        const char *t0 = kc_json_array_str(topics, 0);
        const char *data =
            json_object_get_string(json_object_object_get(l, "data"));
        uint8_t topic[32], word[32];
        if (!t0 || !data ||
            chain_hex_decode_fixed(t0, strlen(t0), topic, 32, "topic", NULL) <
                0 ||
            strlen(data) < 66 ||
            chain_hex_decode_fixed(data, 66, word, 32, "data", NULL) < 0)
            continue;
        for (size_t c = 0; c < u->ncats; c++)
            if (memcmp(u->cp->fn[u->cats[c].event]->topic, topic, 32) == 0)
                add_candidate(u, &u->cats[c], word);
        if (u->ncand > CHAIN_MAX_CANDIDATES) {
            chain_rpc_call_release(call);
            um_done(u, kc_err_set(kc_op_err(u->op), KC_ERANGE,
                                  "more than %d allowlist entries to check",
                                  CHAIN_MAX_CANDIDATES));
            return;
        }
    }
    chain_rpc_call_release(call);
    if (u->to >= u->latest) {
        check_candidates(u);
        return;
    }
    u->from = u->to + 1;
    scan_range(u);
}

/* eth_getLogs of the Added events of [from, from + range) (bounded). */
static void scan_range(struct um_op *u)
{
    struct json_object *p = json_object_new_array();
    struct json_object *f = json_object_new_object();
    struct json_object *topics = json_object_new_array();
    struct json_object *any = json_object_new_array();
    struct kc_err err = { 0 };

    u->to = u->from + CHAIN_LOG_RANGE - 1;
    if (u->to > u->latest)
        u->to = u->latest;
    json_object_object_add(f, "address", chain_rpc_address(u->contract));
    json_object_object_add(f, "fromBlock", chain_rpc_quantity(u->from));
    json_object_object_add(f, "toBlock", chain_rpc_quantity(u->to));
    for (size_t c = 0; c < u->ncats; c++)
        json_object_array_add(
            any, chain_rpc_hex(u->cp->fn[u->cats[c].event]->topic, 32));
    json_object_array_add(topics, any);
    json_object_object_add(f, "topics", topics);
    json_object_array_add(p, f);
    u->call.data = u;
    if (chain_rpc_call(u->cp->rpc, &u->call, "eth_getLogs", p, on_logs, &err) <
        0)
        um_done(u, kc_err_set(kc_op_err(u->op), err.code, "%s", err.msg));
}

static void on_latest(struct chain_rpc_call *call, int status)
{
    struct um_op *u = call->data;

    if (status == 0)
        status = chain_rpc_result_u64(call, &u->latest, kc_op_err(u->op));
    else
        kc_err_set(kc_op_err(u->op), status, "%s", call->err.msg);
    chain_rpc_call_release(call);
    if (status < 0) {
        um_done(u, status);
        return;
    }
    if (u->from > u->latest) {
        check_candidates(u);
        return;
    }
    scan_range(u);
}

static void um_begin(struct um_op *u)
{
    struct kc_err err = { 0 };

    resume(u);
    u->call.data = u;
    if (chain_rpc_call(u->cp->rpc, &u->call, "eth_blockNumber", NULL, on_latest,
                       &err) < 0)
        um_done(u, kc_err_set(kc_op_err(u->op), err.code, "%s", err.msg));
}

/* The deploy block the contract's own kind found in this run (observe or
 * create), where the event scan starts; 0 when unknown (adopted). */
static void set_from(struct um_op *u)
{
    char *parent = chain_parent_of(u->op);
    int64_t b = parent ? chain_parent_block(u->cp, parent) : -1;

    u->from = b >= 0 ? (uint64_t)b : 0;
    free(parent);
}

static void on_um_parent(void *arg, const uint8_t *addr)
{
    struct um_op *u = arg;

    if (!addr) {
        um_done(u, 0); /* no contract: nothing unmanaged */
        return;
    }
    memcpy(u->contract, addr, 20);
    set_from(u);
    um_begin(u);
}

static int um_start(struct kc_op *op, bool write)
{
    struct chain_prov *cp = chain_prov_of(op);
    const struct kc_value *cv = kc_op_desired(op, "contract");
    struct um_op *u;
    bool app = strcmp(kc_op_type(op)->kind, "chain.app_unmanaged") == 0;
    char *parent;

    if (!cv || cv->type == KC_VALUE_UNKNOWN)
        cv = kc_op_prior(op, "contract");
    u = kc_xcalloc(1, sizeof(*u));
    u->op = op;
    u->cp = cp;
    u->write = write;
    u->cats = app ? app_cats : kms_cats;
    u->ncats = app ? KC_ARRAY_SIZE(app_cats) : KC_ARRAY_SIZE(kms_cats);
    if (chain_value_addr(cv, "contract", u->contract, NULL) == 0) {
        set_from(u);
        um_begin(u);
        return 0;
    }
    if (write) {
        um_done(u, kc_err_set(kc_op_err(op), KC_EINVAL,
                              "the contract address is not known"));
        return 0;
    }
    /* Observe before the reference is bound: wait for the contract's own
     * observe. */
    parent = chain_parent_of(op);
    if (!parent) {
        um_done(u, 0);
        return 0;
    }
    chain_parent_wait(cp, parent, on_um_parent, u);
    free(parent);
    return 0;
}

static int um_observe(struct kc_op *op)
{
    return um_start(op, false);
}

static int um_write(struct kc_op *op)
{
    return um_start(op, true);
}

static int um_delete(struct kc_op *op)
{
    /* Destroying forgets: the entry resources revoke what they own. */
    kc_op_done(op, 0);
    return 0;
}

static const struct kc_field um_fields[] = {
    { "contract", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "prune", KC_VALUE_BOOL, KC_FIELD_IGNORE_DRIFT },
    { "managed", KC_VALUE_LIST, KC_FIELD_IGNORE_DRIFT },
    { "entries", KC_VALUE_LIST, 0 },
    { NULL, 0, 0 },
};

const struct kc_resource_type kc_chain_kms_unmanaged = {
    .kind = "chain.kms_unmanaged",
    .fields = um_fields,
    .observe = um_observe,
    .create = um_write,
    .update = um_write,
    .delete = um_delete,
};

const struct kc_resource_type kc_chain_app_unmanaged = {
    .kind = "chain.app_unmanaged",
    .fields = um_fields,
    .observe = um_observe,
    .create = um_write,
    .update = um_write,
    .delete = um_delete,
};
