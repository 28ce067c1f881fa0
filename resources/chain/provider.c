/* resources/chain/provider.c: the chain provider (providers.chain): the
 * signer, the JSON-RPC client, the transaction manager, and helpers of the
 * kinds. */
#include "resources/chain/chain.h"

#include <ctype.h>

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "reconcile/secret.h"
#include "resources/chain/hex.h"
#include "resources/chain/keystore.h"

static const struct {
    enum chain_fn id;
    enum chain_abi_entry_kind kind;
    const char *sig, *out;
} chain_fns[] = {
    { FN_OWNER, CHAIN_ABI_FUNCTION, "owner()", "(address)" },
    { FN_APP_IMPLEMENTATION, CHAIN_ABI_FUNCTION, "appImplementation()",
      "(address)" },
    { FN_KMS_INITIALIZE, CHAIN_ABI_FUNCTION, "initialize(address,address)",
      NULL },
    { FN_SET_APP_IMPLEMENTATION, CHAIN_ABI_FUNCTION,
      "setAppImplementation(address)", NULL },
    { FN_ALLOWED_OS_IMAGES, CHAIN_ABI_FUNCTION, "allowedOsImages(bytes32)",
      "(bool)" },
    { FN_ADD_OS_IMAGE, CHAIN_ABI_FUNCTION, "addOsImageHash(bytes32)", NULL },
    { FN_REMOVE_OS_IMAGE, CHAIN_ABI_FUNCTION, "removeOsImageHash(bytes32)",
      NULL },
    { FN_KMS_MRS, CHAIN_ABI_FUNCTION, "kmsAllowedAggregatedMrs(bytes32)",
      "(bool)" },
    { FN_ADD_KMS_MR, CHAIN_ABI_FUNCTION, "addKmsAggregatedMr(bytes32)", NULL },
    { FN_REMOVE_KMS_MR, CHAIN_ABI_FUNCTION, "removeKmsAggregatedMr(bytes32)",
      NULL },
    { FN_KMS_DEVICES, CHAIN_ABI_FUNCTION, "kmsAllowedDeviceIds(bytes32)",
      "(bool)" },
    { FN_ADD_KMS_DEVICE, CHAIN_ABI_FUNCTION, "addKmsDevice(bytes32)", NULL },
    { FN_REMOVE_KMS_DEVICE, CHAIN_ABI_FUNCTION, "removeKmsDevice(bytes32)",
      NULL },
    { FN_GATEWAY_APP_ID, CHAIN_ABI_FUNCTION, "gatewayAppId()", "(string)" },
    { FN_SET_GATEWAY_APP_ID, CHAIN_ABI_FUNCTION, "setGatewayAppId(string)",
      NULL },
    { FN_REGISTERED_APPS, CHAIN_ABI_FUNCTION, "registeredApps(address)",
      "(bool)" },
    { FN_DEPLOY_AND_REGISTER_APP, CHAIN_ABI_FUNCTION,
      "deployAndRegisterApp(address,bool,bool,bytes32,bytes32)", "(address)" },
    { FN_COMPOSE_HASHES, CHAIN_ABI_FUNCTION, "allowedComposeHashes(bytes32)",
      "(bool)" },
    { FN_ADD_COMPOSE_HASH, CHAIN_ABI_FUNCTION, "addComposeHash(bytes32)",
      NULL },
    { FN_REMOVE_COMPOSE_HASH, CHAIN_ABI_FUNCTION, "removeComposeHash(bytes32)",
      NULL },
    { FN_APP_DEVICES, CHAIN_ABI_FUNCTION, "allowedDeviceIds(bytes32)",
      "(bool)" },
    { FN_ADD_DEVICE, CHAIN_ABI_FUNCTION, "addDevice(bytes32)", NULL },
    { FN_REMOVE_DEVICE, CHAIN_ABI_FUNCTION, "removeDevice(bytes32)", NULL },
    { FN_ALLOW_ANY_DEVICE, CHAIN_ABI_FUNCTION, "allowAnyDevice()", "(bool)" },
    { FN_SET_ALLOW_ANY_DEVICE, CHAIN_ABI_FUNCTION, "setAllowAnyDevice(bool)",
      NULL },
    { FN_PROXY_CTOR, CHAIN_ABI_CONSTRUCTOR, "constructor(address,bytes)",
      NULL },
    { EV_APP_DEPLOYED, CHAIN_ABI_EVENT,
      "AppDeployedViaFactory(address,address)", NULL },
    { EV_OS_IMAGE_ADDED, CHAIN_ABI_EVENT, "OsImageHashAdded(bytes32)", NULL },
    { EV_KMS_MR_ADDED, CHAIN_ABI_EVENT, "KmsAggregatedMrAdded(bytes32)", NULL },
    { EV_KMS_DEVICE_ADDED, CHAIN_ABI_EVENT, "KmsDeviceAdded(bytes32)", NULL },
    { EV_COMPOSE_HASH_ADDED, CHAIN_ABI_EVENT, "ComposeHashAdded(bytes32)",
      NULL },
    { EV_DEVICE_ADDED, CHAIN_ABI_EVENT, "DeviceAdded(bytes32)", NULL },
};

/* Custom errors of the OpenZeppelin 5 bases, for reverts decoded before
 * (or without) the artifacts. */
static const char oz_errors_json[] =
    "["
    "{\"type\":\"error\",\"name\":\"OwnableUnauthorizedAccount\","
    "\"inputs\":[{\"name\":\"account\",\"type\":\"address\"}]},"
    "{\"type\":\"error\",\"name\":\"OwnableInvalidOwner\","
    "\"inputs\":[{\"name\":\"owner\",\"type\":\"address\"}]},"
    "{\"type\":\"error\",\"name\":\"InvalidInitialization\",\"inputs\":[]},"
    "{\"type\":\"error\",\"name\":\"NotInitializing\",\"inputs\":[]},"
    "{\"type\":\"error\",\"name\":\"ERC1967InvalidImplementation\","
    "\"inputs\":[{\"name\":\"implementation\",\"type\":\"address\"}]},"
    "{\"type\":\"error\",\"name\":\"UUPSUnauthorizedCallContext\","
    "\"inputs\":[]},"
    "{\"type\":\"error\",\"name\":\"FailedInnerCall\",\"inputs\":[]},"
    "{\"type\":\"error\",\"name\":\"AddressEmptyCode\","
    "\"inputs\":[{\"name\":\"target\",\"type\":\"address\"}]}"
    "]";

struct chain_prov *chain_prov_of(struct kc_op *op)
{
    return kc_op_provider_data(op);
}

void chain_op_link(struct kc_op *op, void *ctx)
{
    struct chain_prov *cp = chain_prov_of(op);
    struct chain_op_link *l = kc_xcalloc(1, sizeof(*l));

    l->op = op;
    l->ctx = ctx;
    l->next = cp->links;
    cp->links = l;
}

void *chain_op_ctx(struct kc_op *op)
{
    for (struct chain_op_link *l = chain_prov_of(op)->links; l; l = l->next)
        if (l->op == op)
            return l->ctx;
    return NULL;
}

void chain_op_unlink(struct kc_op *op)
{
    struct chain_prov *cp = chain_prov_of(op);

    for (struct chain_op_link **l = &cp->links; *l; l = &(*l)->next) {
        if ((*l)->op == op) {
            struct chain_op_link *dead = *l;
            *l = dead->next;
            free(dead);
            return;
        }
    }
}

char *chain_parent_of(struct kc_op *op)
{
    const char *kind = kc_op_type(op)->kind, *name = kc_op_name(op);
    size_t n = strlen(name);

    if (strcmp(kind, "chain.app") == 0 || strncmp(kind, "chain.kms_", 10) == 0)
        return kc_xstrdup("chain.kms.main");
    if (strcmp(kind, "chain.app_compose_hash") == 0 ||
        strcmp(kind, "chain.app_device") == 0) {
        /* "<app>.0x<64 hex>" */
        if (n > 67 && name[n - 67] == '.')
            return kc_xasprintf("chain.app.%.*s", (int)(n - 67), name);
        return NULL;
    }
    return kc_xasprintf("chain.app.%s", name);
}

static struct chain_parent *parent_get(struct chain_prov *cp,
                                       const char *address)
{
    struct chain_parent *p;

    for (p = cp->parents; p; p = p->next)
        if (strcmp(p->address, address) == 0)
            return p;
    p = kc_xcalloc(1, sizeof(*p));
    p->address = kc_xstrdup(address);
    p->next = cp->parents;
    cp->parents = p;
    return p;
}

int64_t chain_parent_block(struct chain_prov *cp, const char *address)
{
    struct chain_parent *p = parent_get(cp, address);

    return p->published && p->exists ? p->block : -1;
}

void chain_parent_publish(struct chain_prov *cp, const char *address,
                          const uint8_t *addr, int64_t block)
{
    struct chain_parent *p = parent_get(cp, address);
    struct chain_parent_wait *w = p->waiters;

    p->block = block;
    p->published = true;
    p->exists = addr != NULL;
    if (addr)
        memcpy(p->addr, addr, 20);
    p->waiters = NULL;
    while (w) {
        struct chain_parent_wait *next = w->next;
        w->cb(w->arg, addr ? p->addr : NULL);
        free(w);
        w = next;
    }
}

void chain_parent_wait(struct chain_prov *cp, const char *address,
                       void (*cb)(void *arg, const uint8_t *addr), void *arg)
{
    struct chain_parent *p = parent_get(cp, address);
    struct chain_parent_wait *w;

    if (p->published) {
        cb(arg, p->exists ? p->addr : NULL);
        return;
    }
    w = kc_xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = p->waiters;
    p->waiters = w;
}

void chain_prov_manage(struct chain_prov *cp, const uint8_t contract[20],
                       enum chain_fn event, const uint8_t value[32])
{
    struct chain_managed *m;

    if (chain_prov_is_managed(cp, contract, event, value))
        return;
    m = kc_xcalloc(1, sizeof(*m));
    memcpy(m->contract, contract, 20);
    m->event = event;
    memcpy(m->value, value, 32);
    m->next = cp->managed;
    cp->managed = m;
}

bool chain_prov_is_managed(const struct chain_prov *cp,
                           const uint8_t contract[20], enum chain_fn event,
                           const uint8_t value[32])
{
    for (const struct chain_managed *m = cp->managed; m; m = m->next)
        if (m->event == event && memcmp(m->contract, contract, 20) == 0 &&
            memcmp(m->value, value, 32) == 0)
            return true;
    return false;
}

/* ---- configuration -------------------------------------------------- */

static const struct kc_value *cfg_get(const struct kc_value *cfg,
                                      const char *key)
{
    return cfg ? kc_value_map_get(cfg, key) : NULL;
}

/* A gwei amount (an integer, or a decimal string "0.5") in wei. */
static int gwei_to_wei(const struct kc_value *v, const char *what,
                       uint64_t *out, struct kc_err *err)
{
    const char *s;
    uint64_t whole = 0, frac = 0, scale = 1000000000ULL;
    bool dot = false;

    *out = 0;
    if (!v)
        return 0;
    if (v->type == KC_VALUE_INT) {
        int64_t i = kc_value_int(v, 0);
        if (i < 0 || i > 1000000000)
            return kc_err_set(err, KC_EINVAL,
                              "providers.chain.%s: %lld is out of range", what,
                              (long long)i);
        *out = (uint64_t)i * 1000000000ULL;
        return 0;
    }
    s = kc_value_str(v);
    if (!s || !*s)
        return kc_err_set(err, KC_EINVAL,
                          "providers.chain.%s: expected a number of gwei",
                          what);
    for (const char *c = s; *c; c++) {
        if (*c == '.' && !dot) {
            dot = true;
        } else if (isdigit((unsigned char)*c)) {
            if (!dot) {
                whole = whole * 10 + (uint64_t)(*c - '0');
                if (whole > 1000000000)
                    return kc_err_set(err, KC_EINVAL,
                                      "providers.chain.%s: too large", what);
            } else if (scale > 1) {
                scale /= 10;
                frac += (uint64_t)(*c - '0') * scale;
            }
        } else {
            return kc_err_set(err, KC_EINVAL,
                              "providers.chain.%s: '%.40s' is not a number "
                              "of gwei",
                              what, s);
        }
    }
    *out = whole * 1000000000ULL + frac;
    return 0;
}

/* A duration of providers.chain: "90s", "2m", "500ms", "1h" or a number of
 * seconds, within [min_ms, max_ms]. The bounds keep typos out, and a huge
 * count of hours from wrapping when multiplied to milliseconds. */
struct duration_knob {
    const char *name;
    uint64_t min_ms, max_ms;
    const char *min_text, *max_text;
};

#define WEEK_MS (7ull * 24 * 3600 * 1000)

static const struct duration_knob knob_tx_timeout = {
    "tx_timeout", 1, WEEK_MS, "above zero", "168h (a week)",
};
static const struct duration_knob knob_rpc_deadline = {
    "rpc_deadline", 1000, WEEK_MS, "1s", "168h (a week)",
};
static const struct duration_knob knob_rpc_timeout = {
    "rpc_timeout", 100, 3600000, "100ms", "1h",
};

static int duration_ms(const struct kc_value *cfg,
                       const struct duration_knob *k, uint64_t *out,
                       struct kc_err *err)
{
    const struct kc_value *v = cfg_get(cfg, k->name);
    const char *s;
    char *end;
    unsigned long long n, unit;

    if (!v)
        return 0;
    if (v->type == KC_VALUE_INT) {
        int64_t secs = kc_value_int(v, 0);

        if (secs <= 0 || (uint64_t)secs * 1000 < k->min_ms)
            return kc_err_set(err, KC_EINVAL, "providers.chain.%s must be %s%s",
                              k->name, k->min_ms > 1 ? "at least " : "",
                              k->min_text);
        if ((uint64_t)secs > k->max_ms / 1000)
            return kc_err_set(err, KC_ERANGE,
                              "providers.chain.%s: %lld seconds is more than "
                              "the limit of %s",
                              k->name, (long long)secs, k->max_text);
        *out = (uint64_t)secs * 1000;
        return 0;
    }
    s = kc_value_str(v);
    if (!s)
        return kc_err_set(err, KC_EINVAL,
                          "providers.chain.%s: expected a duration", k->name);
    errno = 0;
    n = strtoull(s, &end, 10);
    /* strtoull takes a sign ("-1" wraps to a huge number): digits only. */
    if (errno || end == s || *s < '0' || *s > '9')
        return kc_err_set(err, KC_EINVAL,
                          "providers.chain.%s: '%.40s' is not a duration",
                          k->name, s);
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else
        return kc_err_set(err, KC_EINVAL,
                          "providers.chain.%s: unit '%.10s' (use ms, s, m or "
                          "h)",
                          k->name, end);
    if (n > k->max_ms / unit)
        return kc_err_set(err, KC_ERANGE,
                          "providers.chain.%s: '%.40s' is more than the limit "
                          "of %s",
                          k->name, s, k->max_text);
    *out = n * unit;
    if (*out < k->min_ms)
        return kc_err_set(err, KC_EINVAL, "providers.chain.%s must be %s%s",
                          k->name, k->min_ms > 1 ? "at least " : "",
                          k->min_text);
    return 0;
}

static int load_signer(struct kc_provider *p, struct chain_signer **out,
                       struct kc_err *err)
{
    const struct kc_value *cfg = p->config;
    const struct kc_value *key = cfg_get(cfg, "private_key");
    const struct kc_value *ks = cfg_get(cfg, "keystore");
    struct kc_secret *sec;
    size_t len;
    const char *bytes;
    int ret;

    if (key) {
        bytes = kc_value_reveal(key, &len);
        if (!bytes)
            return kc_err_set(err, KC_EINVAL,
                              "providers.chain.private_key: expected a "
                              "string");
        sec = kc_secret_new(bytes, len);
        kc_log_add_secret(p->log, bytes, len);
        ret = chain_signer_from_hex(sec, out, err);
        kc_secret_free(sec);
        if (ret < 0)
            kc_err_prefix(err, "providers.chain");
        return ret;
    }
    if (ks) {
        const char *file = kc_value_str(kc_value_map_get(ks, "file"));
        const struct kc_value *pwv = kc_value_map_get(ks, "password");
        const char *pw = pwv ? kc_value_reveal(pwv, &len) : NULL;
        char *text = NULL, *path;
        size_t tlen = 0;
        struct json_object *root = NULL;
        uint8_t k[32];
        struct kc_secret *pws;

        if (!file || !pw)
            return kc_err_set(err, KC_EINVAL,
                              "providers.chain.keystore: file and password "
                              "are required");
        kc_log_add_secret(p->log, pw, len);
        /* Provider init runs before the loop: reading the file and the
         * (deliberately slow) key derivation block nothing else. */
        /* Relative to the manifest's folder. */
        path = p->manifest_dir ? kc_file_resolve(p->manifest_dir, file)
                               : kc_xstrdup(file);
        ret = kc_file_read(path, 1 << 16, &text, &tlen, err);
        if (ret == 0)
            ret = kc_json_parse(text, tlen, path, &root, err);
        free(text);
        free(path);
        if (ret < 0)
            return kc_err_prefix(err, "providers.chain.keystore");
        pws = kc_secret_new(pw, len);
        ret = chain_keystore_decrypt(root, pws, file, k, err);
        kc_secret_free(pws);
        json_object_put(root);
        if (ret == 0)
            ret = chain_signer_new(k, out, err);
        kc_memzero(k, sizeof(k));
        if (ret < 0)
            kc_err_prefix(err, "providers.chain.keystore");
        return ret;
    }
    return kc_err_set(err, KC_EINVAL,
                      "providers.chain: private_key or keystore is required");
}

static void chain_cleanup(struct kc_provider *p);

static int chain_init(struct kc_provider *p, struct kc_err *err)
{
    struct chain_prov *cp;
    struct chain_rpc_config rc = { 0 };
    struct chain_txm_config tc = { 0 };
    const struct kc_value *cfg = p->config;
    const struct kc_value *url = cfg_get(cfg, "rpc_url");
    const char *urls;
    size_t ulen = 0;
    struct json_object *oz;
    int64_t chain_id = kc_value_int(cfg_get(cfg, "chain_id"), 0);
    int ret = 0;

    if (!cfg)
        return kc_err_set(err, KC_EINVAL, "providers.chain is not set");
    if (!p->http)
        return kc_err_set(err, KC_EINVAL, "chain: no HTTP client");
    urls = url ? kc_value_reveal(url, &ulen) : NULL;
    if (!urls || !ulen)
        return kc_err_set(err, KC_EINVAL, "providers.chain.rpc_url is not set");
    if (chain_id <= 0)
        return kc_err_set(err, KC_EINVAL,
                          "providers.chain.chain_id must be a positive "
                          "integer");
    cp = kc_xcalloc(1, sizeof(*cp));
    cp->p = p;
    cp->chain_id = (uint64_t)chain_id;
    p->data = cp;
    /* The URL may carry an API key: never in logs. */
    if (kc_value_is_sensitive(url))
        kc_log_add_secret(p->log, urls, ulen);
    for (size_t i = 0; i < KC_ARRAY_SIZE(chain_fns) && ret == 0; i++)
        ret = chain_abi_entry_parse(chain_fns[i].sig, chain_fns[i].out,
                                    chain_fns[i].kind, &cp->fn[chain_fns[i].id],
                                    err);
    oz = json_tokener_parse(oz_errors_json);
    if (ret == 0)
        ret = chain_abi_from_json(oz, &cp->oz_errors, err);
    json_object_put(oz);
    if (ret == 0)
        ret = load_signer(p, &cp->signer, err);
    rc.loop = p->loop;
    rc.http = p->http;
    rc.log = p->log;
    rc.url = urls;
    if (ret == 0) {
        uint64_t ms = 0;

        ret = duration_ms(cfg, &knob_rpc_timeout, &ms, err);
        rc.timeout_ms = (long)ms;
    }
    if (ret == 0)
        ret = chain_rpc_new(&rc, &cp->rpc, err);
    tc.loop = p->loop;
    tc.rpc = cp->rpc;
    tc.log = p->log;
    tc.signer = cp->signer;
    tc.chain_id = cp->chain_id;
    if (ret == 0)
        ret = gwei_to_wei(cfg_get(cfg, "max_fee_gwei"), "max_fee_gwei",
                          &tc.max_fee_wei, err);
    if (ret == 0)
        ret =
            gwei_to_wei(cfg_get(cfg, "max_priority_fee_gwei"),
                        "max_priority_fee_gwei", &tc.max_priority_fee_wei, err);
    if (ret == 0)
        ret = duration_ms(cfg, &knob_tx_timeout, &tc.tx_timeout_ms, err);
    if (ret == 0)
        ret = duration_ms(cfg, &knob_rpc_deadline, &tc.rpc_deadline_ms, err);
    tc.gas_margin_pct =
        (unsigned)kc_value_int(cfg_get(cfg, "gas_margin_percent"), 0);
    tc.legacy = kc_value_bool(cfg_get(cfg, "legacy_transactions"), false);
    if (ret == 0)
        ret = chain_txm_new(&tc, &cp->txm, err);
    if (ret < 0) {
        chain_cleanup(p);
        return ret;
    }
    chain_txm_add_error_abi(cp->txm, cp->oz_errors);
    return 0;
}

static void chain_cleanup(struct kc_provider *p)
{
    struct chain_prov *cp = p->data;

    if (!cp)
        return;
    while (cp->parents) {
        struct chain_parent *par = cp->parents;
        cp->parents = par->next;
        while (par->waiters) {
            struct chain_parent_wait *w = par->waiters;
            par->waiters = w->next;
            free(w);
        }
        free(par->address);
        free(par);
    }
    while (cp->managed) {
        struct chain_managed *m = cp->managed;
        cp->managed = m->next;
        free(m);
    }
    while (cp->links) {
        struct chain_op_link *l = cp->links;
        cp->links = l->next;
        free(l);
    }
    chain_txm_free(cp->txm);
    chain_rpc_free(cp->rpc);
    chain_signer_free(cp->signer);
    for (size_t i = 0; i < CHAIN_FN_COUNT; i++)
        chain_abi_entry_free(cp->fn[i]);
    chain_abi_free(cp->oz_errors);
    chain_artifact_free(cp->art_kms);
    chain_artifact_free(cp->art_app);
    chain_artifact_free(cp->art_proxy);
    free(cp->artifacts_dir);
    free(cp);
    p->data = NULL;
}

/* ---- reads ---------------------------------------------------------- */

static void on_read(struct chain_rpc_call *call, int status)
{
    struct chain_read *r = kc_container_of(call, struct chain_read, call);
    uint8_t *data = NULL;
    size_t len = 0;

    if (status == KC_EREMOTE && call->revert) {
        struct kc_buf why = { 0 };
        chain_txm_describe_revert(r->cp->txm, call->revert, call->revert_len,
                                  &why);
        status = kc_err_set(&r->err, KC_EREMOTE, "%s reverted: %s",
                            r->fn->signature, kc_buf_str(&why));
        kc_buf_release(&why);
    } else if (status < 0) {
        kc_err_set(&r->err, status, "%s", call->err.msg);
    } else {
        status = chain_rpc_result_bytes(call, 1 << 20, &data, &len, &r->err);
        if (status == 0 && len == 0)
            status = kc_err_set(&r->err, KC_EREMOTE,
                                "%s returned nothing (no contract there?)",
                                r->fn->signature);
        if (status == 0)
            status = chain_abi_decode(r->fn->out, r->fn->nout, data, len,
                                      &r->out, &r->err);
        if (status < 0)
            kc_err_prefix(&r->err, "%s", r->fn->signature);
        free(data);
    }
    chain_rpc_call_release(call);
    r->cb(r, status);
}

int chain_read_start(struct chain_prov *cp, struct chain_read *r,
                     const uint8_t to[20], const struct chain_abi_entry *fn,
                     const struct chain_abi_value *args, size_t nargs,
                     chain_read_cb cb, struct kc_err *err)
{
    struct kc_buf data = { 0 };
    int ret;

    r->out = NULL;
    kc_err_clear(&r->err);
    r->cp = cp;
    r->fn = fn;
    r->nout = fn->nout;
    r->cb = cb;
    ret = chain_abi_encode_call(fn, args, nargs, &data, err);
    if (ret == 0)
        ret = chain_rpc_call(
            cp->rpc, &r->call, "eth_call",
            chain_rpc_call_params(NULL, to, data.data, data.len, "latest"),
            on_read, err);
    kc_buf_release(&data);
    return ret;
}

void chain_read_release(struct chain_read *r)
{
    if (r->out)
        chain_abi_values_free(r->out, r->nout);
    r->out = NULL;
}

/* ---- values --------------------------------------------------------- */

int chain_value_b32(const struct kc_value *v, const char *field,
                    uint8_t out[32], struct kc_err *err)
{
    const char *s = v ? kc_value_str(v) : NULL;

    if (!s)
        return kc_err_set(err, KC_EINVAL, "%s: expected a 0x hash", field);
    return chain_hex_decode_fixed(s, strlen(s), out, 32, field, err);
}

int chain_value_addr(const struct kc_value *v, const char *field,
                     uint8_t out[20], struct kc_err *err)
{
    const char *s;

    if (!v || v->type == KC_VALUE_UNKNOWN || v->type == KC_VALUE_NULL)
        return KC_EAGAIN;
    s = kc_value_str(v);
    if (!s)
        return kc_err_set(err, KC_EINVAL, "%s: expected an address", field);
    return chain_address_parse(s, out, field, err);
}

struct kc_value *chain_addr_value(const uint8_t a[20])
{
    char s[43];

    chain_hex_encode(a, 20, true, s, sizeof(s));
    return kc_value_new_str(s);
}

struct kc_value *chain_b32_value(const uint8_t b[32])
{
    char s[67];

    chain_hex_encode(b, 32, true, s, sizeof(s));
    return kc_value_new_str(s);
}

/* ---- artifacts ------------------------------------------------------ */

struct art_work {
    uv_work_t w;
    struct kc_op *op;
    void (*cb)(struct kc_op *op, int status);
    char *dir;
    struct chain_artifact *kms, *app, *proxy;
    struct kc_err err;
    int status;
};

static void art_load(uv_work_t *w)
{
    struct art_work *a = kc_container_of(w, struct art_work, w);

    a->status = chain_artifact_load(a->dir, "DstackKms", &a->kms, &a->err);
    if (a->status == 0)
        a->status = chain_artifact_load(a->dir, "DstackApp", &a->app, &a->err);
    if (a->status == 0)
        a->status =
            chain_artifact_load(a->dir, "ERC1967Proxy", &a->proxy, &a->err);
}

static void art_noop(uv_work_t *w)
{
    (void)w;
}

static void art_done(uv_work_t *w, int status)
{
    struct art_work *a = kc_container_of(w, struct art_work, w);
    struct chain_prov *cp = chain_prov_of(a->op);

    if (status < 0 && a->status == 0)
        a->status = kc_err_from_uv(&a->err, status, "loading artifacts");
    if (a->status == 0 && !cp->art_kms) {
        cp->artifacts_dir = kc_xstrdup(a->dir);
        cp->art_kms = a->kms;
        cp->art_app = a->app;
        cp->art_proxy = a->proxy;
        a->kms = a->app = a->proxy = NULL;
        chain_txm_add_error_abi(cp->txm, cp->art_kms->abi);
        chain_txm_add_error_abi(cp->txm, cp->art_app->abi);
        chain_txm_add_error_abi(cp->txm, cp->art_proxy->abi);
    }
    if (a->status < 0)
        kc_err_set(kc_op_err(a->op), a->status, "%s", a->err.msg);
    chain_artifact_free(a->kms);
    chain_artifact_free(a->app);
    chain_artifact_free(a->proxy);
    a->cb(a->op, a->status);
    free(a->dir);
    free(a);
}

int chain_prov_artifacts(struct kc_op *op, const char *dir,
                         void (*cb)(struct kc_op *op, int status))
{
    struct chain_prov *cp = chain_prov_of(op);
    struct art_work *a;
    int ret;

    if (cp->art_kms && strcmp(cp->artifacts_dir, dir) != 0)
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "artifacts '%s': another folder ('%s') is already "
                          "in use in this run",
                          dir, cp->artifacts_dir);
    a = kc_xcalloc(1, sizeof(*a));
    a->op = op;
    a->cb = cb;
    a->dir = kc_xstrdup(dir);
    /* Already loaded: an empty job keeps the callback asynchronous. */
    ret = uv_queue_work(kc_op_loop(op), &a->w,
                        cp->art_kms ? art_noop : art_load, art_done);
    if (ret < 0) {
        free(a->dir);
        free(a);
        return kc_err_from_uv(kc_op_err(op), ret, "loading artifacts");
    }
    return 0;
}

/* ---- the provider --------------------------------------------------- */

static const struct kc_resource_type *const chain_kinds[] = {
    &kc_chain_kms,
    &kc_chain_kms_os_image,
    &kc_chain_kms_aggregated_mr,
    &kc_chain_kms_device,
    &kc_chain_kms_gateway_app_id,
    &kc_chain_app,
    &kc_chain_app_compose_hash,
    &kc_chain_app_device,
    &kc_chain_app_allow_any_device,
    &kc_chain_kms_unmanaged,
    &kc_chain_app_unmanaged,
    NULL,
};

const struct kc_provider_type kc_provider_chain = {
    .name = "chain",
    .kinds = chain_kinds,
    .init = chain_init,
    .cleanup = chain_cleanup,
};
