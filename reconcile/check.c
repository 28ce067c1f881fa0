/* reconcile/check.c: schema + interpolation + semantic checks of a
 * manifest, every problem reported with its position. */
#include "reconcile/check.h"

#include <ctype.h>
#include <inttypes.h>

#include "reconcile/buf.h"
#include "reconcile/interp.h"
#include "reconcile/schema.h"

/* Defaults of the KMS VM's ports (reference/dstack.md section 5.4). */
#define CHECK_PORT_KMS      12001
#define CHECK_PORT_AUTH_API 18000
#define CHECK_PORT_HELIOS   18545

/* A map's keys, sorted, for lookups in O(log n): manifests may be large
 * and hostile, kc_node_get() is linear. */
struct names {
    const char **v;
    size_t n;
};

struct chk {
    const struct kc_doc *doc;
    const struct kc_check_opts *opts;
    struct kc_diags *diags;
    struct names apps; /* contracts.apps */
    size_t nsuggest;   /* "did you mean" searches so far (bounded) */
};

/* "Did you mean" costs a pass over a map: at most this many per check. */
#define CHECK_MAX_SUGGEST 64

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void names_init(struct names *t, const struct kc_node *map)
{
    memset(t, 0, sizeof(*t));
    if (!map || map->type != KC_NODE_MAP || map->n == 0)
        return;
    t->v = kc_xcalloc(map->n, sizeof(*t->v));
    for (size_t i = 0; i < map->n; i++)
        t->v[t->n++] = map->pairs[i].key->str;
    qsort(t->v, t->n, sizeof(*t->v), str_cmp);
}

static bool names_has(const struct names *t, const char *key)
{
    return t->n && bsearch(&key, t->v, t->n, sizeof(*t->v), str_cmp);
}

static void names_release(struct names *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

static void err_at(struct chk *c, const struct kc_node *node,
                   const struct kc_pos *pos, const char *path, const char *fmt,
                   ...) KC_PRINTF(5, 6);

static void err_at(struct chk *c, const struct kc_node *node,
                   const struct kc_pos *pos, const char *path, const char *fmt,
                   ...)
{
    struct kc_buf b = { 0 };
    struct kc_pos p = { .file = c->doc->file, .line = 0, .col = 0 };
    va_list ap;

    if (pos)
        p = *pos;
    else if (node)
        p = node->pos;
    va_start(ap, fmt);
    kc_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    kc_diags_add(c->diags, &p, path, "%s", kc_buf_str(&b));
    kc_buf_release(&b);
}

static bool is_map(const struct kc_node *n)
{
    return n && n->type == KC_NODE_MAP;
}

static bool is_seq(const struct kc_node *n)
{
    return n && n->type == KC_NODE_SEQ;
}

static bool is_scalar(const struct kc_node *n)
{
    return n && n->type == KC_NODE_SCALAR;
}

static const struct kc_node *get(const struct kc_node *map, const char *key)
{
    return is_map(map) ? kc_node_get(map, key) : NULL;
}

/* The position of KEY in MAP (the key itself), else MAP's. */
static const struct kc_pos *key_pos(const struct kc_node *map, const char *key)
{
    const struct kc_node_pair *p = is_map(map) ? kc_node_pair(map, key) : NULL;

    return p ? &p->key->pos : map ? &map->pos : NULL;
}

static const char *str(const struct kc_node *n)
{
    return is_scalar(n) && kc_node_scalar_type(n) != KC_SCALAR_NULL ? n->str
                                                                    : NULL;
}

static bool is_true(const struct kc_node *n)
{
    bool b = false;

    return is_scalar(n) && kc_node_scalar_bool(n, &b) && b;
}

static int port_of(const struct kc_node *n, int def)
{
    int64_t v;

    if (is_scalar(n) && kc_node_scalar_int(n, &v) && v >= 1 && v <= 65535)
        return (int)v;
    return n ? 0 : def;
}

/* The key of MAP closest to NAME (other than EXCEPT), if close enough to
 * suggest. */
static const char *closest_key(const struct kc_node *map, const char *name,
                               const char *except)
{
    const char *best = NULL;
    size_t bestd = 3;

    for (size_t i = 0; is_map(map) && i < map->n; i++) {
        const char *k = map->pairs[i].key->str;
        size_t d;

        if (except && strcmp(k, except) == 0)
            continue;
        d = kc_schema_edit_distance(name, k);

        if (d < bestd && d * 3 <= strlen(k)) {
            best = k;
            bestd = d;
        }
    }
    return best;
}

/* ---- secrets ---------------------------------------------------------- */

static void check_secrets(struct chk *c,
                          const struct kc_schema_secrets *secrets)
{
    if (!secrets || (c->opts && c->opts->allow_literal_secrets))
        return;
    for (size_t i = 0; i < secrets->n; i++) {
        const struct kc_node *s = secrets->nodes[i];

        if (!is_scalar(s) || kc_node_scalar_type(s) == KC_SCALAR_NULL ||
            kc_interp_is_secret_source(s))
            continue;
        err_at(c, s, NULL, secrets->paths[i],
               "a literal secret: write ${env:NAME} or ${file:PATH} instead "
               "(or pass --allow-literal-secrets)");
    }
}

/* ---- duplicates, in O(n log n) --------------------------------------- */

struct keyed {
    const char *key;
    size_t idx;
};

static int keyed_cmp(const void *pa, const void *pb)
{
    const struct keyed *a = pa, *b = pb;
    int r = strcmp(a->key, b->key);

    if (r)
        return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* For each of the N KEYS (NULL: no key), the index of the first key equal
 * to it, or SIZE_MAX when it is the first (or NULL). Caller frees. */
static size_t *first_same(char *const *keys, size_t n)
{
    struct keyed *k = kc_xcalloc(n ? n : 1, sizeof(*k));
    size_t *first = kc_xcalloc(n ? n : 1, sizeof(*first)), m = 0;

    for (size_t i = 0; i < n; i++) {
        first[i] = SIZE_MAX;
        if (keys[i])
            k[m++] = (struct keyed){ keys[i], i };
    }
    qsort(k, m, sizeof(*k), keyed_cmp);
    for (size_t i = 1; i < m; i++) {
        if (strcmp(k[i].key, k[i - 1].key) != 0)
            continue;
        first[k[i].idx] = first[k[i - 1].idx] == SIZE_MAX ? k[i - 1].idx
                                                          : first[k[i - 1].idx];
    }
    free(k);
    return first;
}

static int keyed_name_cmp(const void *pa, const void *pb)
{
    return strcmp(((const struct keyed *)pa)->key,
                  ((const struct keyed *)pb)->key);
}

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- hashes ----------------------------------------------------------- */

static bool all_zero_hash(const char *s)
{
    if (!s || strncmp(s, "0x", 2) != 0 || strlen(s) != 66)
        return false;
    for (s += 2; *s; s++)
        if (*s != '0')
            return false;
    return true;
}

/* A comparable key for a hash source ("hash:0xab…", "image:NAME",
 * "nitro:PATH"), or NULL. Caller frees. */
static char *hash_key(const struct kc_node *item, bool fold)
{
    const char *h = NULL;

    if (is_scalar(item))
        h = str(item);
    else if (str(get(item, "hash")))
        h = str(get(item, "hash"));
    else if (str(get(item, "image")))
        return kc_xasprintf("image:%s", str(get(item, "image")));
    else if (str(get(item, "nitro_measurements")))
        return kc_xasprintf("nitro:%s", str(get(item, "nitro_measurements")));
    if (!h || kc_schema_has_interp(h, strlen(h)))
        return NULL;
    {
        char *k = kc_xasprintf("hash:%s", h);

        for (char *p = k; fold && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        return k;
    }
}

static void check_hash_list(struct chk *c, const struct kc_node *list,
                            const char *path, bool sources)
{
    char **keys;
    size_t *first;

    if (!is_seq(list))
        return;
    keys = kc_xcalloc(list->n ? list->n : 1, sizeof(*keys));
    for (size_t i = 0; i < list->n; i++) {
        const struct kc_node *it = list->items[i];
        const char *lit = is_scalar(it) ? str(it) : str(get(it, "hash"));

        if (sources && all_zero_hash(lit) && !is_true(get(it, "allow_zero"))) {
            char *ip = kc_xasprintf("%s[%zu]", path, i);

            err_at(c, is_scalar(it) ? it : get(it, "hash"), NULL, ip,
                   "the all-zero hash is refused (the guide's demo value, or "
                   "the PCRs of a debug-mode enclave); write {hash: 0x00..., "
                   "allow_zero: true} if you really mean it");
            free(ip);
        }
        keys[i] = hash_key(it, true);
    }
    first = first_same(keys, list->n);
    for (size_t i = 0; i < list->n; i++) {
        const struct kc_node *it = list->items[i], *f;
        char *a, *b, *ip;
        bool exact;

        if (first[i] == SIZE_MAX)
            continue;
        f = list->items[first[i]];
        a = hash_key(it, false);
        b = hash_key(f, false);
        exact = a && b && strcmp(a, b) == 0;
        free(a);
        free(b);
        /* Exact duplicates are the schema's (uniqueItems). */
        if (exact)
            continue;
        ip = kc_xasprintf("%s[%zu]", path, i);
        err_at(c, it, NULL, ip, "the same %s as item %zu (line %d)",
               strncmp(keys[i], "hash:", 5) == 0 ? "hash" : "source", first[i],
               f ? f->pos.line : 0);
        free(ip);
    }
    free(first);
    for (size_t i = 0; i < list->n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- sections --------------------------------------------------------- */

static void check_reserved_keys(struct chk *c, const struct kc_node *map,
                                const char *path, bool aws)
{
    if (!is_map(map))
        return;
    for (size_t i = 0; i < map->n; i++) {
        const struct kc_node *k = map->pairs[i].key;

        if (strncmp(k->str, "kmsctl-", 7) == 0)
            err_at(c, k, NULL, path,
                   "'%s' is reserved: kmsctl sets its own kmsctl-* %s on "
                   "everything it creates",
                   k->str, aws ? "tags" : "labels");
        else if (aws && strcmp(k->str, "Name") == 0)
            err_at(c, k, NULL, path,
                   "'Name' is reserved: kmsctl names the instance after its "
                   "key in nitro_hosts");
        else if (aws && strncmp(k->str, "aws:", 4) == 0)
            err_at(c, k, NULL, path,
                   "'%s' is reserved: the aws: prefix belongs to AWS", k->str);
    }
}

static void check_contracts(struct chk *c, const struct kc_node *root)
{
    const struct kc_node *ct = get(root, "contracts");
    const struct kc_node *kms = get(ct, "kms");
    const struct kc_node *apps = get(ct, "apps");
    const struct kc_node *al = get(ct, "kms_allowlist");

    if (!ct)
        return;
    if (!get(get(root, "providers"), "chain"))
        err_at(c, NULL, key_pos(root, "contracts"), "contracts",
               "the contracts need a chain: add providers.chain (rpc_url, "
               "chain_id and a signer)");
    if (get(kms, "app_implementation") && !get(kms, "address"))
        err_at(c, NULL, key_pos(kms, "app_implementation"),
               "contracts.kms.app_implementation",
               "only applies to an adopted KMS: set contracts.kms.address too, "
               "or drop it (a deployed KMS gets a new implementation)");
    check_hash_list(c, get(ct, "os_images"), "contracts.os_images", true);
    check_hash_list(c, get(al, "aggregated_mrs"),
                    "contracts.kms_allowlist.aggregated_mrs", true);
    check_hash_list(c, get(al, "device_ids"),
                    "contracts.kms_allowlist.device_ids", true);
    for (size_t i = 0; is_map(apps) && i < apps->n; i++) {
        const struct kc_node *app = apps->pairs[i].val;
        const char *name = apps->pairs[i].key->str;
        char *p = kc_xasprintf("contracts.apps.%s.compose_hashes", name);

        check_hash_list(c, get(app, "compose_hashes"), p, true);
        free(p);
        p = kc_xasprintf("contracts.apps.%s.devices", name);
        check_hash_list(c, get(app, "devices"), p, false);
        free(p);
        if (is_true(get(app, "allow_any_device")) &&
            is_seq(get(app, "devices")) && get(app, "devices")->n > 0) {
            p = kc_xasprintf("contracts.apps.%s.devices", name);
            err_at(c, NULL, key_pos(app, "devices"), p,
                   "has no effect with allow_any_device: true (any device "
                   "is allowed); remove one of the two");
            free(p);
        }
    }
}

static void check_firewall(struct chk *c, const struct kc_node *vm,
                           const char *path, int auth_port, int helios_port)
{
    const struct kc_node *fw = get(vm, "firewall");
    char **keys;
    size_t *first;

    if (!is_seq(fw))
        return;
    keys = kc_xcalloc(fw->n ? fw->n : 1, sizeof(*keys));
    for (size_t i = 0; i < fw->n; i++) {
        const struct kc_node *e = fw->items[i];
        int port = port_of(get(e, "port"), 0);

        if (port)
            keys[i] = kc_xasprintf(
                "%d/%s", port,
                str(get(e, "protocol")) ? str(get(e, "protocol")) : "tcp");
    }
    first = first_same(keys, fw->n);
    free_keys(keys, fw->n);
    for (size_t i = 0; i < fw->n; i++) {
        const struct kc_node *e = fw->items[i];
        const struct kc_node *pn = get(e, "port");
        const struct kc_node *ranges = get(e, "source_ranges");
        const char *proto =
            str(get(e, "protocol")) ? str(get(e, "protocol")) : "tcp";
        const char *action =
            str(get(e, "action")) ? str(get(e, "action")) : "allow";
        int port = port_of(pn, 0);
        char *ip = kc_xasprintf("%s.firewall[%zu]", path, i);

        if (!port) {
            free(ip);
            continue;
        }
        if (first[i] != SIZE_MAX) {
            char *pp = kc_xasprintf("%s.port", ip);

            err_at(c, pn, NULL, pp,
                   "port %d/%s already has a rule (firewall[%zu], line %d): "
                   "one rule per port",
                   port, proto, first[i], fw->items[first[i]]->pos.line);
            free(pp);
        }
        if (strcmp(action, "allow") == 0 &&
            (port == auth_port || port == helios_port)) {
            const char *what = port == auth_port ? "auth-api" : "helios";

            if (!ranges) {
                err_at(c, e, NULL, ip,
                       "port %d (%s) is for debugging: name its "
                       "source_ranges (e.g. [203.0.113.7/32])",
                       port, what);
            } else if (is_seq(ranges)) {
                for (size_t k = 0; k < ranges->n; k++) {
                    const char *r = str(ranges->items[k]);

                    if (r && (strcmp(r, "0.0.0.0/0") == 0 ||
                              strcmp(r, "::/0") == 0)) {
                        char *rp = kc_xasprintf("%s.source_ranges[%zu]", ip, k);

                        err_at(c, ranges->items[k], NULL, rp,
                               "port %d (%s) is for debugging and must not "
                               "be open to the world",
                               port, what);
                        free(rp);
                    }
                }
            }
        }
        free(ip);
    }
    free(first);
}

/* key_provider kms and env_encryption go together; every encrypted
 * variable is one the guest keeps (app_compose.allowed_envs). */
static void check_env_encryption(struct chk *c, const struct kc_node *vm,
                                 const char *path)
{
    const struct kc_node *ee = get(vm, "env_encryption");
    const struct kc_node *eenv = get(ee, "env");
    const struct kc_node *allowed = get(get(vm, "app_compose"), "allowed_envs");
    const char *kp = str(get(vm, "key_provider"));
    char *p = NULL;

    if (!kp)
        return;
    if (strcmp(kp, "kms") == 0 && !ee) {
        err_at(c, NULL, key_pos(vm, "key_provider"), path,
               "key_provider: kms needs env_encryption (kms_url, "
               "kms_k256_pubkey and env): kmsctl fetches the env encryption "
               "key from that KMS and pins its root key");
        return;
    }
    if (strcmp(kp, "kms") != 0 && ee) {
        p = kc_xasprintf("%s.env_encryption", path);
        err_at(c, NULL, key_pos(vm, "env_encryption"), p,
               "env_encryption needs key_provider: kms, not '%s'", kp);
        free(p);
        return;
    }
    if (!eenv || eenv->type != KC_NODE_MAP)
        return;
    for (size_t i = 0; i < eenv->n; i++) {
        const char *k = eenv->pairs[i].key->str;
        bool listed = false;

        for (size_t j = 0; allowed && allowed->type == KC_NODE_SEQ &&
                           j < allowed->n && !listed;
             j++)
            listed = str(allowed->items[j]) &&
                     strcmp(str(allowed->items[j]), k) == 0;
        if (listed)
            continue;
        p = kc_xasprintf("%s.env_encryption.env.%s", path, k);
        err_at(c, NULL, key_pos(eenv, k), p,
               "not in app_compose.allowed_envs: the VM drops encrypted "
               "variables it does not list there");
        free(p);
    }
}

static void check_kms_vm(struct chk *c, const struct kc_node *root,
                         const struct kc_node *vms, size_t idx)
{
    struct names env_names = { 0 };
    const struct kc_node *vm = vms->pairs[idx].val;
    const char *name = vms->pairs[idx].key->str;
    const struct kc_node *compose = get(vm, "compose");
    const struct kc_node *ports = get(vm, "ports");
    const struct kc_node *uc = get(vm, "user_config");
    const struct kc_node *env = get(compose, "env");
    const char *mode = str(get(vm, "mode"));
    const char *tmpl = str(get(compose, "template"));
    char *path = kc_xasprintf("kms_vms.%s", name);
    char *p = NULL;
    int kms_port, auth_port, helios_port;

    if (!is_map(vm))
        goto out;
    kms_port = port_of(get(ports, "kms"), CHECK_PORT_KMS);
    auth_port = port_of(get(ports, "auth_api"), CHECK_PORT_AUTH_API);
    helios_port = port_of(get(ports, "helios"), CHECK_PORT_HELIOS);
    if (kms_port && (kms_port == auth_port || kms_port == helios_port)) {
        p = kc_xasprintf("%s.ports.kms", path);
        err_at(c, get(ports, "kms"), NULL, p,
               "port %d is also the %s port: the KMS needs its own", kms_port,
               kms_port == auth_port ? "auth_api" : "helios");
        free(p);
    } else if (auth_port && auth_port == helios_port) {
        p = kc_xasprintf("%s.ports.helios", path);
        err_at(c, get(ports, "helios"), NULL, p,
               "port %d is also the auth_api port", helios_port);
        free(p);
    }
    check_firewall(c, vm, path, auth_port, helios_port);

    /* compose */
    if (get(compose, "file") && get(compose, "template")) {
        p = kc_xasprintf("%s.compose", path);
        err_at(c, NULL, key_pos(compose, "template"), p,
               "use either file (your own compose) or template (a built-in "
               "one), not both");
        free(p);
    }
    if (tmpl && mode && strcmp(tmpl, mode) != 0 &&
        (strcmp(tmpl, "direct") == 0 || strcmp(tmpl, "light") == 0)) {
        p = kc_xasprintf("%s.compose.template", path);
        err_at(c, get(compose, "template"), NULL, p,
               "template '%s' does not match mode '%s'", tmpl, mode);
        free(p);
    }
    /* The built-in templates read the chain through one variable, which
     * must come from one side: compose.env (measured) or user_config
     * (secret). */
    if (mode && !get(compose, "file") &&
        (strcmp(mode, "light") == 0 || strcmp(mode, "direct") == 0)) {
        bool light = strcmp(mode, "light") == 0;
        const char *need = light ? "EXECUTION_RPC" : "ETH_RPC_URL";

        if (!get(uc, need) && !get(env, need)) {
            p = kc_xasprintf("%s.mode", path);
            if (light)
                err_at(c, get(vm, "mode"), NULL, p,
                       "light mode needs user_config.EXECUTION_RPC (the "
                       "execution RPC helios verifies against; it must "
                       "serve eth_getProof), or EXECUTION_RPC in "
                       "compose.env");
            else
                err_at(c, get(vm, "mode"), NULL, p,
                       "direct mode needs ETH_RPC_URL (the chain RPC "
                       "auth-api reads) in compose.env, or in user_config "
                       "when the URL carries a key");
            free(p);
        }
    }
    names_init(&env_names, env);
    for (size_t i = 0; is_map(uc) && i < uc->n; i++) {
        const struct kc_node *k = uc->pairs[i].key;
        static const char *const set_by_kmsctl[] = {
            "KMS_HTTPS_PORT",
            "AUTH_HTTP_PORT",
            "HELIOS_RPC_PORT",
            "KMS_CONTRACT_ADDR",
            NULL,
        };
        static const char *const measured[] = {
            "KMS_IMAGE",
            "DSTACK_REPO",
            "DSTACK_REF",
            NULL,
        };

        p = kc_xasprintf("%s.user_config", path);
        if (names_has(&env_names, k->str)) {
            err_at(c, k, NULL, p,
                   "'%s' is also in compose.env: keep it in one (user_config "
                   "if it is a secret)",
                   k->str);
        } else if (!get(compose, "file")) {
            for (size_t j = 0; set_by_kmsctl[j]; j++)
                if (strcmp(k->str, set_by_kmsctl[j]) == 0)
                    err_at(c, k, NULL, p,
                           "'%s' is set by kmsctl (from ports and the KMS "
                           "contract); it cannot come from user_config",
                           k->str);
            for (size_t j = 0; measured[j]; j++)
                if (strcmp(k->str, measured[j]) == 0)
                    err_at(c, k, NULL, p,
                           "'%s' decides what runs in the VM: set it in "
                           "compose.env, where it is measured",
                           k->str);
        }
        free(p);
    }
    for (size_t i = 0; is_map(env) && i < env->n; i++) {
        const struct kc_node *v = env->pairs[i].val;

        if (is_scalar(v) &&
            (memchr(v->str, '\n', v->len) || memchr(v->str, '\r', v->len))) {
            p = kc_xasprintf("%s.compose.env.%s", path, env->pairs[i].key->str);
            err_at(c, v, NULL, p,
                   "a line break in a .env value would start another "
                   "variable");
            free(p);
        }

        if (is_scalar(v) && kc_interp_is_secret_source(v)) {
            p = kc_xasprintf("%s.compose.env.%s", path, env->pairs[i].key->str);
            err_at(c, v, NULL, p,
                   "compose.env is measured and public (it is written into "
                   "prelaunch.sh in app-compose.json): put secrets in "
                   "user_config");
            free(p);
        }
    }
    if (get(get(vm, "app_compose"), "allowed_envs") &&
        str(get(vm, "key_provider")) &&
        strcmp(str(get(vm, "key_provider")), "kms") != 0) {
        p = kc_xasprintf("%s.app_compose.allowed_envs", path);
        err_at(c, NULL, key_pos(get(vm, "app_compose"), "allowed_envs"), p,
               "KMS-encrypted env vars need key_provider: kms");
        free(p);
    }
    /* dstack forces gateway_enabled off for other key providers. */
    if (is_true(get(get(vm, "app_compose"), "gateway_enabled")) &&
        str(get(vm, "key_provider")) &&
        strcmp(str(get(vm, "key_provider")), "kms") != 0) {
        p = kc_xasprintf("%s.app_compose.gateway_enabled", path);
        err_at(c, get(get(vm, "app_compose"), "gateway_enabled"), NULL, p,
               "a gateway needs key_provider: kms (dstack turns it off for "
               "'%s')",
               str(get(vm, "key_provider")));
        free(p);
    }
    check_env_encryption(c, vm, path);
    if (!get(root, "contracts") && !get(env, "KMS_CONTRACT_ADDR"))
        err_at(c, NULL, key_pos(vms, name), path,
               "the KMS needs its contract: add a contracts section (kmsctl "
               "deploys or adopts it) or set compose.env.KMS_CONTRACT_ADDR");

    p = kc_xasprintf("%s.labels", path);
    check_reserved_keys(c, get(vm, "labels"), p, false);
    free(p);
out:
    names_release(&env_names);
    free(path);
}

/* Instance families that support Nitro Enclaves (x86: kmsctl boots Amazon
 * Linux 2023 x86_64), with their memory per vCPU in MiB. "Nitro Enclaves
 * requirements" in the AWS Nitro Enclaves user guide: Intel or AMD based
 * Nitro instances with at least 4 vCPUs, not T3/T3a. Sizes are "large"
 * (2 vCPUs), "xlarge" (4), "<n>xlarge" (4n). */
static const struct {
    const char *family;
    int mib_per_vcpu;
} nitro_families[] = {
    { "c5", 2048 },   { "c5a", 2048 },  { "c5ad", 2048 }, { "c5d", 2048 },
    { "c5n", 2688 },  { "c6a", 2048 },  { "c6i", 2048 },  { "c6id", 2048 },
    { "c6in", 2048 }, { "c7a", 2048 },  { "c7i", 2048 },  { "m5", 4096 },
    { "m5a", 4096 },  { "m5ad", 4096 }, { "m5d", 4096 },  { "m5n", 4096 },
    { "m5zn", 4096 }, { "m6a", 4096 },  { "m6i", 4096 },  { "m6id", 4096 },
    { "m7a", 4096 },  { "m7i", 4096 },  { "r5", 8192 },   { "r5a", 8192 },
    { "r5d", 8192 },  { "r5n", 8192 },  { "r6a", 8192 },  { "r6i", 8192 },
    { "r7a", 8192 },  { "r7i", 8192 },
};

const struct kc_node *kc_check_nitro_enclave(const struct kc_node *h,
                                             const char **field, char *msg,
                                             size_t len)
{
    const struct kc_node *type = kc_node_get(h, "instance_type");
    const struct kc_node *enc = kc_node_get(h, "enclave");
    const struct kc_node *cpu = is_map(enc) ? get(enc, "cpu_count") : NULL;
    const struct kc_node *mem = is_map(enc) ? get(enc, "memory_mib") : NULL;
    char family[32];
    const char *dot, *size;
    int64_t vcpus = 0, cpus = 0, mib = 0, mult = 0;
    int per = 0;

    if (!is_scalar(type) || !is_scalar(cpu) || !is_scalar(mem) ||
        !kc_node_scalar_int(cpu, &cpus) || !kc_node_scalar_int(mem, &mib))
        return NULL; /* the schema says what is missing */
    *field = "instance_type";
    dot = strchr(type->str, '.');
    if (!dot || (size_t)(dot - type->str) >= sizeof(family))
        return NULL; /* the schema's pattern reports it */
    memcpy(family, type->str, (size_t)(dot - type->str));
    family[dot - type->str] = '\0';
    for (size_t i = 0; i < KC_ARRAY_SIZE(nitro_families); i++)
        if (strcmp(nitro_families[i].family, family) == 0)
            per = nitro_families[i].mib_per_vcpu;
    if (!per) {
        /* Burstable and Arm/Mac families certainly not (kmsctl boots an
         * x86_64 AMI); other Nitro families may, but kmsctl has no table of
         * their sizes: say which it knows rather than guess. */
        static const char *const never[] = { "t2", "t3",   "t3a", "t4g",
                                             "a1", "mac1", "mac2" };
        bool no = false;

        for (size_t i = 0; i < KC_ARRAY_SIZE(never); i++)
            no = no || strcmp(never[i], family) == 0;
        snprintf(msg, len,
                 no ? "family '%s' does not support Nitro Enclaves (use an "
                      "Intel or AMD C5/C6/C7, M5/M6/M7 or R5/R6/R7 type such "
                      "as c5.xlarge)"
                    : "family '%s' is not one kmsctl knows for Nitro "
                      "Enclaves: it knows the Intel and AMD C5/C6/C7, "
                      "M5/M6/M7 and R5/R6/R7 families (such as c5.xlarge)",
                 family);
        return type;
    }
    size = dot + 1;
    if (strcmp(size, "large") == 0) {
        vcpus = 2;
    } else if (strcmp(size, "xlarge") == 0) {
        vcpus = 4;
    } else if (sscanf(size, "%" SCNd64 "xlarge", &mult) == 1 && mult > 1 &&
               mult < 100) {
        char check[32];

        snprintf(check, sizeof(check), "%" PRId64 "xlarge", mult);
        vcpus = strcmp(check, size) == 0 ? 4 * mult : 0;
    }
    if (!vcpus) {
        snprintf(msg, len,
                 "size '%s' is not one kmsctl knows (large, xlarge, "
                 "<n>xlarge; no metal)",
                 size);
        return type;
    }
    if (vcpus < 4) {
        snprintf(msg, len,
                 "%s has %" PRId64 " vCPUs; a Nitro Enclaves parent needs at "
                 "least 4",
                 type->str, vcpus);
        return type;
    }
    *field = "enclave.cpu_count";
    if (cpus % 2) {
        snprintf(msg, len,
                 "%" PRId64 " is odd; enclaves get whole cores (2 vCPUs "
                 "each)",
                 cpus);
        return cpu;
    }
    if (cpus > vcpus - 2) {
        snprintf(msg, len,
                 "%" PRId64 " leaves the host fewer than 2 of the %" PRId64
                 " vCPUs of %s (at most %" PRId64 ")",
                 cpus, vcpus, type->str, vcpus - 2);
        return cpu;
    }
    *field = "enclave.memory_mib";
    if (mib > vcpus * per - 1024) {
        snprintf(msg, len,
                 "%" PRId64 " leaves the host less than 1 GiB of the %" PRId64
                 " MiB of %s (at most %" PRId64 ")",
                 mib, vcpus * per, type->str, vcpus * per - 1024);
        return mem;
    }
    *field = NULL;
    return NULL;
}

static void check_nitro_host(struct chk *c, const struct kc_node *root,
                             const struct kc_node *hosts, size_t idx)
{
    const struct kc_node *h = hosts->pairs[idx].val;
    const char *name = hosts->pairs[idx].key->str;
    const struct kc_node *apps = get(get(root, "contracts"), "apps");
    const struct kc_node *ssh = get(h, "ssh");
    const char *app = str(get(h, "app"));
    char *path = kc_xasprintf("nitro_hosts.%s", name);
    const char *s;
    char *p;

    if (!is_map(h))
        goto out;
    if (app && !names_has(&c->apps, app)) {
        p = kc_xasprintf("%s.app", path);
        if (!apps)
            err_at(c, get(h, "app"), NULL, p,
                   "no app named '%s': contracts.apps is empty", app);
        else if ((s = c->nsuggest++ < CHECK_MAX_SUGGEST
                          ? closest_key(apps, app, NULL)
                          : NULL))
            err_at(c, get(h, "app"), NULL, p,
                   "no app named '%s' in contracts.apps (did you mean '%s'?)",
                   app, s);
        else
            err_at(c, get(h, "app"), NULL, p,
                   "no app named '%s' in contracts.apps", app);
        free(p);
    }
    if (is_map(ssh)) {
        bool pub = get(ssh, "public_key"), priv = get(ssh, "private_key_file");

        p = kc_xasprintf("%s.ssh", path);
        if (pub && priv)
            err_at(c, NULL, key_pos(ssh, "private_key_file"), p,
                   "use either public_key (import your key) or "
                   "private_key_file (kmsctl creates one), not both");
        else if (!pub && !priv)
            err_at(c, NULL, key_pos(h, "ssh"), p,
                   "needs public_key (a public key file to import) or "
                   "private_key_file (where a new private key is written)");
        free(p);
    }
    if (get(h, "vpc_id") && !get(h, "subnet_id")) {
        p = kc_xasprintf("%s.vpc_id", path);
        err_at(c, get(h, "vpc_id"), NULL, p,
               "give subnet_id too (a subnet of that VPC): the default "
               "subnet belongs to the default VPC");
        free(p);
    }
    {
        const char *field = NULL;
        char msg[300];
        const struct kc_node *bad =
            kc_check_nitro_enclave(h, &field, msg, sizeof(msg));

        if (bad) {
            p = kc_xasprintf("%s.%s", path, field);
            err_at(c, bad, NULL, p, "%s", msg);
            free(p);
        }
    }
    p = kc_xasprintf("%s.tags", path);
    check_reserved_keys(c, get(h, "tags"), p, true);
    free(p);
out:
    free(path);
}

/* bootstrap.onboard_from names another VM and onboarding has no cycle;
 * no two VMs share a domain. O(n log n) in the number of VMs. */
static void check_kms_vm_set(struct chk *c, const struct kc_node *vms)
{
    size_t n = vms->n;
    char **keys = kc_xcalloc(n ? n : 1, sizeof(*keys));
    struct keyed *names = kc_xcalloc(n ? n : 1, sizeof(*names));
    size_t *target = kc_xcalloc(n ? n : 1, sizeof(*target));
    size_t *stamp = kc_xcalloc(n ? n : 1, sizeof(*stamp));
    size_t *first;

    for (size_t i = 0; i < n; i++)
        names[i] = (struct keyed){ vms->pairs[i].key->str, i };
    qsort(names, n, sizeof(*names), keyed_cmp);
    for (size_t i = 0; i < n; i++) {
        const struct kc_node *vm = vms->pairs[i].val;
        const char *name = vms->pairs[i].key->str;
        const struct kc_node *of = get(get(vm, "bootstrap"), "onboard_from");
        const char *src = str(of), *dom = str(get(vm, "domain"));
        struct keyed want = { src, 0 }, *hit;
        char *p;

        target[i] = SIZE_MAX;
        stamp[i] = SIZE_MAX;
        if (dom && !kc_schema_has_interp(dom, strlen(dom))) {
            keys[i] = kc_xstrdup(dom);
            for (char *q = keys[i]; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        }
        if (!src)
            continue;
        p = kc_xasprintf("kms_vms.%s.bootstrap.onboard_from", name);
        hit = bsearch(&want, names, n, sizeof(*names), keyed_name_cmp);
        if (strcmp(src, name) == 0) {
            err_at(c, of, NULL, p, "a KMS cannot onboard from itself");
        } else if (!hit) {
            const char *s = c->nsuggest++ < CHECK_MAX_SUGGEST
                                ? closest_key(vms, src, name)
                                : NULL;

            if (s)
                err_at(c, of, NULL, p,
                       "no KMS VM named '%s' in kms_vms (did you mean "
                       "'%s'?)",
                       src, s);
            else
                err_at(c, of, NULL, p, "no KMS VM named '%s' in kms_vms", src);
        } else {
            target[i] = hit->idx;
        }
        free(p);
    }
    /* Each VM onboards from at most one other: follow the chains, marking
     * every VM with the walk that reached it first; meeting the current
     * walk's mark again is a cycle, reported once at its first member. */
    for (size_t i = 0; i < n; i++) {
        size_t cur = i, m, min;

        while (cur != SIZE_MAX && stamp[cur] == SIZE_MAX) {
            stamp[cur] = i;
            cur = target[cur];
        }
        if (cur == SIZE_MAX || stamp[cur] != i)
            continue;
        min = cur;
        for (m = target[cur]; m != cur; m = target[m])
            if (m < min)
                min = m;
        {
            const char *name = vms->pairs[min].key->str;
            const char *src = vms->pairs[target[min]].key->str;
            const struct kc_node *of =
                get(get(vms->pairs[min].val, "bootstrap"), "onboard_from");
            char *p = kc_xasprintf("kms_vms.%s.bootstrap.onboard_from", name);

            err_at(c, of, NULL, p,
                   "onboarding cycle: '%s' onboards, directly or not, from "
                   "'%s'; one KMS must bootstrap",
                   src, name);
            free(p);
        }
    }
    first = first_same(keys, n);
    for (size_t i = 0; i < n; i++) {
        const struct kc_node *d = get(vms->pairs[i].val, "domain");
        char *p;

        if (first[i] == SIZE_MAX)
            continue;
        p = kc_xasprintf("kms_vms.%s.domain", vms->pairs[i].key->str);
        err_at(c, d, NULL, p, "domain '%s' is already used by kms_vms.%s",
               d->str, vms->pairs[first[i]].key->str);
        free(p);
    }
    free(first);
    free_keys(keys, n);
    free(names);
    free(target);
    free(stamp);
}

/* One EC2 key pair name, one key: hosts may share a key pair only if they
 * say the same about it. */
static void check_key_pairs(struct chk *c, const struct kc_node *hosts)
{
    size_t n = hosts->n;
    char **keys = kc_xcalloc(n ? n : 1, sizeof(*keys));
    size_t *first;

    for (size_t i = 0; i < n; i++) {
        const char *k = str(get(get(hosts->pairs[i].val, "ssh"), "key_name"));

        keys[i] = k ? kc_xstrdup(k) : NULL;
    }
    first = first_same(keys, n);
    for (size_t i = 0; i < n; i++) {
        const struct kc_node *ssh, *o;
        const char *pub1, *pub2, *pk1, *pk2;

        if (first[i] == SIZE_MAX)
            continue;
        ssh = get(hosts->pairs[i].val, "ssh");
        o = get(hosts->pairs[first[i]].val, "ssh");
        pub1 = str(get(ssh, "public_key"));
        pub2 = str(get(o, "public_key"));
        pk1 = str(get(ssh, "private_key_file"));
        pk2 = str(get(o, "private_key_file"));
        if ((pub1 ? !pub2 || strcmp(pub1, pub2) != 0 : !!pub2) ||
            (pk1 ? !pk2 || strcmp(pk1, pk2) != 0 : !!pk2)) {
            char *p = kc_xasprintf("nitro_hosts.%s.ssh.key_name",
                                   hosts->pairs[i].key->str);

            err_at(c, get(ssh, "key_name"), NULL, p,
                   "key pair '%s' is also used by nitro_hosts.%s with another "
                   "key: use another name or the same key",
                   keys[i], hosts->pairs[first[i]].key->str);
            free(p);
        }
    }
    free(first);
    free_keys(keys, n);
}

void kc_check_semantics(const struct kc_doc *doc,
                        const struct kc_check_opts *opts,
                        const struct kc_schema_secrets *secrets,
                        struct kc_diags *diags)
{
    struct chk c = { .doc = doc, .opts = opts, .diags = diags };
    const struct kc_node *root = doc->root;
    const struct kc_node *vms = get(root, "kms_vms");
    const struct kc_node *hosts = get(root, "nitro_hosts");
    const struct kc_node *prov = get(root, "providers");

    check_secrets(&c, secrets);
    if (!is_map(root))
        return;
    names_init(&c.apps, get(get(root, "contracts"), "apps"));
    check_contracts(&c, root);
    if (is_map(vms) && vms->n > 0 && !get(prov, "gcp"))
        err_at(&c, NULL, key_pos(root, "kms_vms"), "kms_vms",
               "KMS VMs need a GCP project: add providers.gcp (project, zone, "
               "bucket)");
    for (size_t i = 0; is_map(vms) && i < vms->n; i++)
        check_kms_vm(&c, root, vms, i);
    if (is_map(vms))
        check_kms_vm_set(&c, vms);
    for (size_t i = 0; is_map(hosts) && i < hosts->n; i++)
        check_nitro_host(&c, root, hosts, i);
    if (is_map(hosts))
        check_key_pairs(&c, hosts);
    check_reserved_keys(&c, get(get(prov, "gcp"), "labels"),
                        "providers.gcp.labels", false);
    check_reserved_keys(&c, get(get(prov, "aws"), "tags"), "providers.aws.tags",
                        true);
    names_release(&c.apps);
}

int kc_manifest_check(const struct kc_doc *doc,
                      const struct kc_check_opts *opts, struct kc_diags *diags)
{
    struct kc_schema *schema = NULL;
    struct kc_schema_secrets secrets = { 0 };
    struct kc_err err = { 0 };
    size_t before = diags->n;

    if (!doc->root) {
        struct kc_pos p = { .file = doc->file, .line = 1, .col = 1 };

        kc_diags_add(diags, &p, "",
                     "the manifest is empty: expected a map with at least "
                     "'version' and 'name'");
        return KC_EINVAL;
    }
    if (kc_schema_load("manifest", &schema, &err) < 0) {
        struct kc_pos p = { .file = doc->file, .line = 0, .col = 0 };

        /* The embedded schema is part of the binary: this is a bug. */
        kc_diags_add(diags, &p, "", "internal error: %s", err.msg);
        return KC_EINVAL;
    }
    kc_schema_validate_node(schema, doc->root, diags, &secrets);
    kc_interp_check_doc(doc, diags);
    kc_check_semantics(doc, opts, &secrets, diags);
    kc_schema_secrets_release(&secrets);
    kc_schema_free(schema);
    kc_diags_sort(diags);
    return diags->n > before ? KC_EINVAL : 0;
}
