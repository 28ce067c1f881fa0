/* reconcile/expand.c: the manifest's sections become resources (the only
 * code that knows the sections; see reconcile/resource.h, section 3). Each
 * section has one function below, written by the engineer of the provider
 * that owns it. */
#include "reconcile/expand.h"

#include <inttypes.h>

#include <openssl/evp.h>

#include "reconcile/buf.h"
#include "reconcile/check.h"
#include "reconcile/file.h"
#include "reconcile/graph.h"
#include "reconcile/hex.h"
#include "reconcile/interp.h"
#include "reconcile/json.h"

struct kc_expand {
    const struct kc_doc *doc;
    struct kc_graph *g;
};

/* Test executables define this to expand a `fake:` section for the fake
 * provider (tests/unit/helpers/fake_provider.c); NULL in kmsctl. */
extern int kc_expand_section_fake(struct kc_expand *ex,
                                  const struct kc_node *section,
                                  struct kc_err *err) __attribute__((weak));

/* Unused once every section has its function. */
KC_UNUSED static int not_built(const struct kc_node *section, const char *name,
                               const char *provider, struct kc_err *err)
{
    return kc_err_set(err, KC_ENOTSUP,
                      "%s:%d:%d: section '%s' cannot be planned yet: the %s "
                      "provider's expansion is not built",
                      section->pos.file, section->pos.line, section->pos.col,
                      name, provider);
}

/* --- contracts (chain provider) ---------------------------------------- */

/* The chain kinds (resources/chain): the KMS proxy, its allowlists, the
 * apps and theirs. Addresses are kind.name, so the single KMS contract is
 * chain.kms.main (and its gateway setting chain.kms_gateway_app_id.main);
 * allowlist entries are named by their 0x hash (lowercase). Hash sources are
 * read here, at plan time, so that the addresses are known. */
#define CONTRACTS_KMS          "chain.kms.main"
#define CONTRACTS_MAX_HASHFILE (64u << 10)

static int node_fail(const struct kc_node *n, struct kc_err *err, int code,
                     const char *fmt, ...) KC_PRINTF(4, 5);

static int node_fail(const struct kc_node *n, struct kc_err *err, int code,
                     const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return kc_err_set(err, code, "%s:%d:%d: %s", n->pos.file, n->pos.line,
                      n->pos.col, msg);
}

/* Decodes N bytes of hex from S ("0x" optional, surrounding whitespace
 * ignored). */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    size_t len;

    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                       s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (len != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = kc_hex_digit((unsigned char)s[2 * i]);
        int lo = kc_hex_digit((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static void hash_str(const uint8_t h[32], char out[67])
{
    out[0] = '0';
    out[1] = 'x';
    kc_hex_encode(h, 32, out + 2);
}

static const char *scalar(const struct kc_node *n)
{
    return n && n->type == KC_NODE_SCALAR ? n->str : NULL;
}

/* An OS image's auth_hash.txt from the search paths: every kms_vms entry's
 * image_search_paths, then contracts.image_search_paths. */
static int image_hash(struct kc_expand *ex, const struct kc_node *section,
                      const struct kc_node *where, const char *image,
                      uint8_t out[32], struct kc_err *err)
{
    const struct kc_node *vms = kc_node_get(ex->doc->root, "kms_vms");
    const struct kc_node *lists[64];
    size_t nlists = 0;
    struct kc_buf tried = { 0 };
    int ret;

    if (strchr(image, '/') || strcmp(image, "..") == 0 ||
        strcmp(image, ".") == 0)
        return node_fail(where, err, KC_EINVAL,
                         "image '%s': a name, not a path", image);
    for (size_t i = 0; vms && vms->type == KC_NODE_MAP && i < vms->n &&
                       nlists < KC_ARRAY_SIZE(lists) - 1;
         i++) {
        const struct kc_node *p =
            kc_node_get(vms->pairs[i].val, "image_search_paths");
        if (p && p->type == KC_NODE_SEQ)
            lists[nlists++] = p;
    }
    if (kc_node_get(section, "image_search_paths"))
        lists[nlists++] = kc_node_get(section, "image_search_paths");
    for (size_t l = 0; l < nlists; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            const char *dir = scalar(lists[l]->items[i]);
            char *base, *path, *text = NULL;
            size_t len = 0;
            struct kc_err ferr = { 0 };
            if (!dir)
                continue;
            base = kc_file_resolve(ex->doc->dir, dir);
            path = kc_xasprintf("%s/%s/auth_hash.txt", base, image);
            kc_buf_addf(&tried, "%s%s", tried.len ? ", " : "", path);
            ret =
                kc_file_read(path, CONTRACTS_MAX_HASHFILE, &text, &len, &ferr);
            free(base);
            if (ret == KC_ENOENT || (ret < 0 && ferr.code == KC_ENOENT)) {
                free(path);
                continue;
            }
            if (ret < 0) {
                ret = node_fail(where, err, ret, "image '%s': %s", image,
                                ferr.msg);
            } else if (!unhex(text, out, 32)) {
                ret = node_fail(where, err, KC_EINVAL,
                                "image '%s': '%s' does not hold a 32-byte "
                                "hex hash",
                                image, path);
            }
            free(text);
            free(path);
            kc_buf_release(&tried);
            return ret;
        }
    }
    ret = node_fail(where, err, KC_ENOENT,
                    "image '%s': no auth_hash.txt in the image search paths "
                    "(looked for %s)",
                    image, tried.len ? kc_buf_str(&tried) : "no search path");
    kc_buf_release(&tried);
    return ret;
}

/* sha256(PCR0 || PCR1 || PCR2) of `nitro-cli build-enclave` output. */
static int nitro_hash(struct kc_expand *ex, const struct kc_node *where,
                      const char *file, uint8_t out[32], bool *all_zero,
                      struct kc_err *err)
{
    char *path = kc_file_resolve(ex->doc->dir, file);
    char *text = NULL;
    size_t len = 0;
    struct json_object *root = NULL;
    struct kc_err ferr = { 0 };
    uint8_t pcrs[3][48];
    unsigned int hlen = 0;
    int ret;

    ret = kc_file_read(path, CONTRACTS_MAX_HASHFILE, &text, &len, &ferr);
    if (ret == 0)
        ret = kc_json_parse(text, len, path, &root, &ferr);
    for (int i = 0; ret == 0 && i < 3; i++) {
        char key[32];
        const char *hex;
        snprintf(key, sizeof(key), "Measurements.PCR%d", i);
        ret = kc_json_get_str(root, key, &hex, &ferr);
        if (ret == 0 && !unhex(hex, pcrs[i], 48))
            ret = kc_err_set(&ferr, KC_EINVAL, "%s: %s is not 48 bytes of hex",
                             path, key);
    }
    if (ret == 0) {
        *all_zero = true;
        for (int i = 0; i < 3; i++)
            for (int b = 0; b < 48; b++)
                *all_zero &= pcrs[i][b] == 0;
        if (*all_zero) {
            /* Debug-mode enclaves: the hash is 32 zero bytes
             * (reference/dstack.md section 4.6). */
            memset(out, 0, 32);
        } else if (!EVP_Digest(pcrs, sizeof(pcrs), out, &hlen, EVP_sha256(),
                               NULL) ||
                   hlen != 32) {
            ret = kc_err_from_ssl(&ferr, "sha256");
        }
    }
    if (ret < 0)
        ret = node_fail(where, err, ret, "nitro_measurements: %s", ferr.msg);
    json_object_put(root);
    free(text);
    free(path);
    return ret;
}

/* The 32-byte hash of a hash source node (literal, {hash}, {image},
 * {nitro_measurements}); the all-zero hash only with allow_zero: true. */
static int hash_source(struct kc_expand *ex, const struct kc_node *section,
                       const struct kc_node *n, uint8_t out[32],
                       struct kc_err *err)
{
    const struct kc_node *v;
    bool allow_zero = false, zero = true;
    int ret = 0;

    if (n->type == KC_NODE_SCALAR) {
        if (strstr(n->str, "${"))
            return node_fail(n, err, KC_EINVAL,
                             "hashes are read at plan time: references "
                             "are not supported here");
        if (!unhex(n->str, out, 32))
            return node_fail(n, err, KC_EINVAL,
                             "expected a 0x hash of 64 hex digits");
    } else if (n->type == KC_NODE_MAP) {
        v = kc_node_get(n, "allow_zero");
        if (v && !kc_node_scalar_bool(v, &allow_zero))
            return node_fail(v, err, KC_EINVAL,
                             "allow_zero: expected a "
                             "boolean");
        if ((v = kc_node_get(n, "hash")) != NULL) {
            if (!scalar(v) || !unhex(v->str, out, 32))
                return node_fail(v, err, KC_EINVAL,
                                 "expected a 0x hash of 64 hex digits");
        } else if ((v = kc_node_get(n, "image")) != NULL && scalar(v)) {
            ret = image_hash(ex, section, v, v->str, out, err);
        } else if ((v = kc_node_get(n, "nitro_measurements")) != NULL &&
                   scalar(v)) {
            bool pcr_zero = false;
            ret = nitro_hash(ex, v, v->str, out, &pcr_zero, err);
        } else {
            return node_fail(n, err, KC_EINVAL,
                             "expected hash, image or nitro_measurements");
        }
    } else {
        return node_fail(n, err, KC_EINVAL, "expected a hash source");
    }
    if (ret < 0)
        return ret;
    for (int i = 0; i < 32; i++)
        zero &= out[i] == 0;
    if (zero && !allow_zero)
        return node_fail(n, err, KC_EPERM,
                         "the all-zero hash (a demo or debug-mode value) is "
                         "refused; say allow_zero: true if you mean it");
    return 0;
}

/* One allowlist resource per entry of LIST: KIND.<prefix><hash> with FIELD
 * = the hash and PARENT_FIELD = output address of PARENT. */
static int expand_hashes(struct kc_expand *ex, const struct kc_node *section,
                         const struct kc_node *list, const char *kind,
                         const char *prefix, const char *field,
                         const char *parent_field, const char *parent,
                         struct kc_resource *unmanaged, const char *category,
                         struct kc_value *managed, struct kc_err *err)
{
    for (size_t i = 0; list && list->type == KC_NODE_SEQ && i < list->n; i++) {
        const struct kc_node *item = list->items[i];
        struct kc_resource *res;
        uint8_t h[32];
        char hs[67], *name;
        int ret = hash_source(ex, section, item, h, err);

        if (ret < 0)
            return ret;
        hash_str(h, hs);
        name = kc_xasprintf("%s%s", prefix, hs);
        ret = kc_expand_add(ex, kind, name, item, &res, err);
        free(name);
        if (ret < 0)
            return ret;
        kc_expand_set_value(res, field, kc_value_new_str(hs));
        kc_expand_set_ref(res, parent_field, parent, "address");
        /* The unmanaged-entry scan knows the entries and runs after them. */
        kc_expand_depends_on(unmanaged, res->address);
        name = kc_xasprintf("%s:%s", category, hs);
        kc_value_list_push(managed, kc_value_new_str(name));
        free(name);
    }
    return 0;
}

/* The resource that finds entries of CONTRACT (an address) on chain that
 * the manifest does not list; PRUNE is the section's prune node. */
static int add_unmanaged(struct kc_expand *ex, const char *kind,
                         const char *name, const char *contract,
                         const struct kc_node *prune,
                         const struct kc_node *where, struct kc_resource **out,
                         struct kc_err *err)
{
    int ret = kc_expand_add(ex, kind, name, where, out, err);

    if (ret < 0)
        return ret;
    kc_expand_set_ref(*out, "contract", contract, "address");
    kc_expand_set_value(*out, "entries", kc_value_new_list());
    if (prune)
        kc_expand_set_node(ex, *out, "prune", prune, err);
    return 0;
}

static int expand_contracts(struct kc_expand *ex, const struct kc_node *section,
                            struct kc_err *err)
{
    const struct kc_node *kms = kc_node_get(section, "kms");
    const struct kc_node *art = kc_node_get(section, "artifacts");
    const struct kc_node *allow = kc_node_get(section, "kms_allowlist");
    const struct kc_node *gw = kc_node_get(section, "gateway_app_id");
    const struct kc_node *apps = kc_node_get(section, "apps");
    struct kc_resource *res, *um = NULL;
    struct kc_value *managed;
    int ret;

    if (section->type != KC_NODE_MAP)
        return node_fail(section, err, KC_EINVAL, "contracts: expected a map");
    ret =
        kc_expand_add(ex, "chain.kms", "main", kms ? kms : section, &res, err);
    if (ret < 0)
        return ret;
    if (scalar(art) && !strstr(art->str, "${")) {
        char *dir = kc_file_resolve(ex->doc->dir, art->str);
        kc_expand_set_value(res, "artifacts", kc_value_new_str(dir));
        free(dir);
    } else if (art)
        kc_expand_set_node(ex, res, "artifacts", art, err);
    if (kms && kms->type == KC_NODE_MAP) {
        kc_expand_set_node(ex, res, "address", kc_node_get(kms, "address"),
                           err);
        kc_expand_set_node(ex, res, "app_implementation",
                           kc_node_get(kms, "app_implementation"), err);
    }
    kc_expand_alias(ex, "contracts.kms", CONTRACTS_KMS);
    ret = add_unmanaged(ex, "chain.kms_unmanaged", "main", CONTRACTS_KMS,
                        kc_node_get(section, "prune"), section, &um, err);
    managed = kc_value_new_list();
    if (ret == 0)
        ret = expand_hashes(ex, section, kc_node_get(section, "os_images"),
                            "chain.kms_os_image", "", "hash", "kms",
                            CONTRACTS_KMS, um, "os_image", managed, err);
    if (ret == 0 && allow)
        ret = expand_hashes(ex, section, kc_node_get(allow, "aggregated_mrs"),
                            "chain.kms_aggregated_mr", "", "mr", "kms",
                            CONTRACTS_KMS, um, "aggregated_mr", managed, err);
    if (ret == 0 && allow)
        ret = expand_hashes(ex, section, kc_node_get(allow, "device_ids"),
                            "chain.kms_device", "", "device", "kms",
                            CONTRACTS_KMS, um, "device", managed, err);
    if (ret == 0)
        kc_expand_set_value(um, "managed", managed);
    else
        kc_value_free(managed);
    if (ret < 0)
        return ret;
    if (gw) {
        ret = kc_expand_add(ex, "chain.kms_gateway_app_id", "main", gw, &res,
                            err);
        if (ret < 0)
            return ret;
        kc_expand_set_node(ex, res, "app_id", gw, err);
        kc_expand_set_ref(res, "kms", CONTRACTS_KMS, "address");
    }
    for (size_t i = 0; apps && apps->type == KC_NODE_MAP && i < apps->n; i++) {
        const char *name = apps->pairs[i].key->str;
        const struct kc_node *app = apps->pairs[i].val;
        char *addr = kc_xasprintf("chain.app.%s", name);
        char *alias = kc_xasprintf("contracts.apps.%s", name);
        char *prefix = kc_xasprintf("%s.", name);

        ret = kc_expand_add(ex, "chain.app", name, app, &res, err);
        if (ret == 0) {
            kc_expand_set_ref(res, "kms", CONTRACTS_KMS, "address");
            kc_expand_set_value(res, "registered", kc_value_new_bool(true));
            kc_expand_set_node(ex, res, "address", kc_node_get(app, "address"),
                               err);
            kc_expand_set_node(ex, res, "disable_upgrades",
                               kc_node_get(app, "disable_upgrades"), err);
            kc_expand_alias(ex, alias, addr);
            ret = add_unmanaged(ex, "chain.app_unmanaged", name, addr,
                                kc_node_get(app, "prune"), app, &um, err);
        }
        if (ret == 0 && kc_node_get(app, "allow_any_device")) {
            ret =
                kc_expand_add(ex, "chain.app_allow_any_device", name,
                              kc_node_get(app, "allow_any_device"), &res, err);
            if (ret == 0) {
                kc_expand_set_ref(res, "app", addr, "address");
                kc_expand_set_node(ex, res, "allow",
                                   kc_node_get(app, "allow_any_device"), err);
            }
        }
        managed = kc_value_new_list();
        if (ret == 0)
            ret = expand_hashes(ex, section, kc_node_get(app, "compose_hashes"),
                                "chain.app_compose_hash", prefix, "hash", "app",
                                addr, um, "compose_hash", managed, err);
        if (ret == 0)
            ret = expand_hashes(ex, section, kc_node_get(app, "devices"),
                                "chain.app_device", prefix, "device", "app",
                                addr, um, "device", managed, err);
        if (ret == 0)
            kc_expand_set_value(um, "managed", managed);
        else
            kc_value_free(managed);
        free(addr);
        free(alias);
        free(prefix);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* --- kms_vms (gcp provider, with the dstack kinds it needs) ------------ */

/* Per KMS VM <n> (reference dstack.md §5.2; the resources/gcp kinds say how
 * each kind works):
 *   gcp.os_image.<n>        data source: the local OS image (disk, hash)
 *   gcp.image.<os-image>    boot image (UEFI_COMPATIBLE, TDX_CAPABLE,
 *                           GVNIC), shared by the VMs of that OS image
 *   gcp.image.dstack-data-disk  the data-disk image (GVNIC), made once
 *   gcp.image.<n>-shared    the shared disk (compose, configs), GVNIC
 *   gcp.disk.<n>-data       the data disk, kept when the VM goes
 *   gcp.instance.<n>        the TDX VM; `${kms_vms.<n>.external_ip}`
 *   gcp.firewall.<n>-<allow|deny>-<proto>-<port>  one per firewall entry
 * Data-disk size, boot disk size and the default machine type follow
 * dstack-cloud (20 GB, 10 GB, c3-standard-4). */
#define GCP_DATA_IMAGE      "dstack-data-disk"
#define GCP_DATA_IMAGE_SIZE "gpt:10485760" /* dstack-cloud: 10 MiB sparse */

static struct kc_value *str_list(const char *a, const char *b, const char *c)
{
    struct kc_value *l = kc_value_new_list();

    if (a)
        kc_value_list_push(l, kc_value_new_str(a));
    if (b)
        kc_value_list_push(l, kc_value_new_str(b));
    if (c)
        kc_value_list_push(l, kc_value_new_str(c));
    return l;
}

static int vm_firewalls(struct kc_expand *ex, const char *name,
                        const struct kc_node *vm, struct kc_err *err)
{
    const struct kc_node *fw = kc_node_get(vm, "firewall");
    char tag[128];
    int ret = 0;

    kc_snprintf(tag, sizeof(tag), "fw-%s", name);
    for (size_t i = 0; fw && fw->type == KC_NODE_SEQ && i < fw->n; i++) {
        const struct kc_node *e = fw->items[i];
        const char *port = scalar(kc_node_get(e, "port"));
        const char *proto = scalar(kc_node_get(e, "protocol"));
        const char *action = scalar(kc_node_get(e, "action"));
        const struct kc_node *sr = kc_node_get(e, "source_ranges");
        struct kc_resource *r;
        char *rname, *desc;

        if (!port)
            continue; /* the schema requires it */
        proto = proto ? proto : "tcp";
        action = action ? action : "allow";
        rname = kc_xasprintf("%s-%s-%s-%s", name, action, proto, port);
        ret = kc_expand_add(ex, "gcp.firewall", rname, e, &r, err);
        free(rname);
        if (ret < 0)
            return ret;
        kc_expand_set_value(r, "network", kc_value_new_str("default"));
        if (kc_node_get(vm, "network"))
            ret = kc_expand_set_node(ex, r, "network",
                                     kc_node_get(vm, "network"), err);
        kc_expand_set_value(r, "protocol", kc_value_new_str(proto));
        kc_expand_set_node(ex, r, "port", kc_node_get(e, "port"), err);
        kc_expand_set_value(r, "action", kc_value_new_str(action));
        kc_expand_set_value(
            r, "priority",
            kc_value_new_int(strcmp(action, "deny") == 0 ? 900 : 1000));
        if (sr)
            kc_expand_set_node(ex, r, "source_ranges", sr, err);
        else
            kc_expand_set_value(r, "source_ranges",
                                str_list("0.0.0.0/0", NULL, NULL));
        kc_expand_set_value(r, "target_tag", kc_value_new_str(tag));
        desc =
            kc_xasprintf("%s %s port %s for %s",
                         strcmp(action, "deny") == 0 ? "Deny" : "Allow",
                         strcmp(proto, "udp") == 0 ? "UDP" : "TCP", port, name);
        kc_expand_set_value(r, "description", kc_value_new_str(desc));
        free(desc);
    }
    return ret;
}

static int expand_one_vm(struct kc_expand *ex, const char *name,
                         const struct kc_node *vm, struct kc_err *err)
{
    const struct kc_doc *doc = kc_expand_document(ex);
    const struct kc_node *gcp =
        kc_node_get(kc_node_get(doc->root, "providers"), "gcp");
    const struct kc_node *zone = kc_node_get(vm, "zone");
    const char *os = scalar(kc_node_get(vm, "os_image"));
    struct kc_resource *osr, *boot, *data, *shared, *disk, *inst;
    char *a_os, *bname, *a_boot, *sname, *a_shared, *dname, *a_disk, *a_vm;
    struct kc_value *tags;
    const struct kc_node *extra;
    int ret;

    if (!zone)
        zone = kc_node_get(gcp, "zone");
    if (!os)
        return kc_err_set(err, KC_EINVAL, "kms_vms.%s.os_image: missing", name);
    a_os = kc_xasprintf("gcp.os_image.%s", name);
    bname = kc_xstrdup(os);
    for (char *p = bname; *p; p++)
        if (*p == '.' || *p == '_')
            *p = '-';
    a_boot = kc_xasprintf("gcp.image.%s", bname);
    sname = kc_xasprintf("%s-shared", name);
    a_shared = kc_xasprintf("gcp.image.%s", sname);
    dname = kc_xasprintf("%s-data", name);
    a_disk = kc_xasprintf("gcp.disk.%s", dname);
    a_vm = kc_xasprintf("gcp.instance.%s", name);

    /* The OS image on the local disk. */
    ret = kc_expand_add(ex, "gcp.os_image", name, vm, &osr, err);
    if (ret < 0)
        goto out;
    kc_expand_set_node(ex, osr, "name", kc_node_get(vm, "os_image"), err);
    if (kc_node_get(vm, "image_search_paths"))
        kc_expand_set_node(ex, osr, "search_paths",
                           kc_node_get(vm, "image_search_paths"), err);
    if (doc->dir)
        kc_expand_set_value(osr, "base_dir", kc_value_new_str(doc->dir));

    /* The boot image, shared by every VM of this OS image. */
    if (!kc_expand_find(ex, a_boot)) {
        ret = kc_expand_add(ex, "gcp.image", bname, vm, &boot, err);
        if (ret < 0)
            goto out;
        kc_expand_set_ref(boot, "disk", a_os, "disk");
        kc_expand_set_ref(boot, "digest", a_os, "digest");
        kc_expand_set_value(
            boot, "guest_os_features",
            str_list("UEFI_COMPATIBLE", "TDX_CAPABLE", "GVNIC"));
    }
    /* The data-disk image, made once, shared. */
    if (!kc_expand_find(ex, "gcp.image." GCP_DATA_IMAGE)) {
        ret = kc_expand_add(ex, "gcp.image", GCP_DATA_IMAGE, vm, &data, err);
        if (ret < 0)
            goto out;
        kc_expand_set_value(data, "generate",
                            kc_value_new_str(GCP_DATA_IMAGE_SIZE));
        kc_expand_set_value(data, "digest",
                            kc_value_new_str("gpt-10m-dstack-data"));
        kc_expand_set_value(data, "guest_os_features",
                            str_list("GVNIC", NULL, NULL));
    }
    /* The shared disk image: rendered at apply time from these inputs. */
    ret = kc_expand_add(ex, "gcp.image", sname, vm, &shared, err);
    if (ret < 0)
        goto out;
    kc_expand_set_value(shared, "generate", kc_value_new_str("shared"));
    kc_expand_set_value(shared, "vm_name", kc_value_new_str(name));
    kc_expand_set_node(ex, shared, "mode", kc_node_get(vm, "mode"), err);
    kc_expand_set_node(ex, shared, "key_provider",
                       kc_node_get(vm, "key_provider"), err);
    kc_expand_set_node(ex, shared, "key_provider_id",
                       kc_node_get(vm, "key_provider_id"), err);
    kc_expand_set_node(ex, shared, "compose", kc_node_get(vm, "compose"), err);
    kc_expand_set_node(ex, shared, "user_config",
                       kc_node_get(vm, "user_config"), err);
    kc_expand_set_node(ex, shared, "app_compose",
                       kc_node_get(vm, "app_compose"), err);
    kc_expand_set_node(ex, shared, "ports", kc_node_get(vm, "ports"), err);
    kc_expand_set_node(ex, shared, "pccs_url", kc_node_get(vm, "pccs_url"),
                       err);
    kc_expand_set_ref(shared, "os_image_hash", a_os, "auth_hash");
    /* KMS_CONTRACT_ADDR: the KMS contract's address once it is deployed
     * (compose.env may also set it). */
    if (kc_expand_find(ex, CONTRACTS_KMS))
        kc_expand_set_ref(shared, "kms_addr", CONTRACTS_KMS, "address");
    if (doc->dir)
        kc_expand_set_value(shared, "base_dir", kc_value_new_str(doc->dir));
    kc_expand_set_value(shared, "guest_os_features",
                        str_list("GVNIC", NULL, NULL));
    /* key_provider kms: .encrypted-env, made at plan time by
     * dstack.encrypted_env (resources/dstack/dstack_kinds.h). */
    if (scalar(kc_node_get(vm, "key_provider")) &&
        strcmp(scalar(kc_node_get(vm, "key_provider")), "kms") == 0) {
        const struct kc_node *ee = kc_node_get(vm, "env_encryption");
        struct kc_resource *enc;
        char *a_enc = kc_xasprintf("dstack.encrypted_env.%s", name);

        ret = kc_expand_add(ex, "dstack.encrypted_env", name, vm, &enc, err);
        if (ret == 0) {
            kc_expand_set_value(enc, "vm_name", kc_value_new_str(name));
            kc_expand_set_node(ex, enc, "env_encryption", ee, err);
            if (doc->dir)
                kc_expand_set_value(enc, "base_dir",
                                    kc_value_new_str(doc->dir));
            kc_expand_set_node(ex, shared, "env_kms_url",
                               kc_node_get(ee, "kms_url"), err);
            kc_expand_set_ref(shared, "encrypted_env", a_enc, "encrypted_env");
        }
        free(a_enc);
        if (ret < 0)
            goto out;
    }

    /* The data disk: its own resource (the KMS's keys live there). */
    ret = kc_expand_add(ex, "gcp.disk", dname, vm, &disk, err);
    if (ret < 0)
        goto out;
    kc_expand_set_node(ex, disk, "zone", zone, err);
    if (kc_node_get(vm, "data_size"))
        kc_expand_set_node(ex, disk, "size_gb", kc_node_get(vm, "data_size"),
                           err);
    else
        kc_expand_set_value(disk, "size_gb", kc_value_new_int(20));
    kc_expand_set_value(disk, "type", kc_value_new_str("pd-balanced"));
    kc_expand_set_ref(disk, "image", "gcp.image." GCP_DATA_IMAGE, "name");
    if (kc_node_get(vm, "allow_identity_loss"))
        kc_expand_set_node(ex, disk, "allow_identity_loss",
                           kc_node_get(vm, "allow_identity_loss"), err);

    /* The VM. */
    ret = kc_expand_add(ex, "gcp.instance", name, vm, &inst, err);
    if (ret < 0)
        goto out;
    kc_expand_set_node(ex, inst, "zone", zone, err);
    if (kc_node_get(vm, "machine_type"))
        kc_expand_set_node(ex, inst, "machine_type",
                           kc_node_get(vm, "machine_type"), err);
    else
        kc_expand_set_value(inst, "machine_type",
                            kc_value_new_str("c3-standard-4"));
    kc_expand_set_ref(inst, "boot_image", a_boot, "name");
    kc_expand_set_ref(inst, "boot_digest", a_boot, "digest");
    if (kc_node_get(vm, "boot_disk_size"))
        kc_expand_set_node(ex, inst, "boot_disk_size_gb",
                           kc_node_get(vm, "boot_disk_size"), err);
    else
        kc_expand_set_value(inst, "boot_disk_size_gb", kc_value_new_int(10));
    kc_expand_set_ref(inst, "data_disk", a_disk, "name");
    kc_expand_set_ref(inst, "shared_image", a_shared, "name");
    kc_expand_set_ref(inst, "shared_digest", a_shared, "digest");
    if (kc_node_get(vm, "network"))
        kc_expand_set_node(ex, inst, "network", kc_node_get(vm, "network"),
                           err);
    else
        kc_expand_set_value(inst, "network", kc_value_new_str("default"));
    kc_expand_set_node(ex, inst, "subnet", kc_node_get(vm, "subnet"), err);
    kc_expand_set_node(ex, inst, "service_account",
                       kc_node_get(vm, "service_account"), err);
    kc_expand_set_node(ex, inst, "scopes", kc_node_get(vm, "scopes"), err);
    /* Tags: fw-<name> always (the firewall rules target it), then the
     * manifest's literal ones. */
    tags = kc_value_new_list();
    {
        char *t = kc_xasprintf("fw-%s", name);

        kc_value_list_push(tags, kc_value_new_str(t));
        free(t);
    }
    extra = kc_node_get(vm, "tags");
    for (size_t i = 0; extra && extra->type == KC_NODE_SEQ && i < extra->n; i++)
        if (scalar(extra->items[i]))
            kc_value_list_push(tags, kc_value_new_str(extra->items[i]->str));
    kc_expand_set_value(inst, "tags", tags);
    if (kc_node_get(vm, "labels"))
        kc_expand_set_node(ex, inst, "labels", kc_node_get(vm, "labels"), err);
    else
        kc_expand_set_value(inst, "labels", kc_value_new_map());
    kc_expand_set_value(inst, "running", kc_value_new_bool(true));
    if (kc_node_get(vm, "allow_identity_loss"))
        kc_expand_set_node(ex, inst, "allow_identity_loss",
                           kc_node_get(vm, "allow_identity_loss"), err);
    {
        char *prefix = kc_xasprintf("kms_vms.%s", name);

        kc_expand_alias(ex, prefix, a_vm);
        free(prefix);
    }
    ret = vm_firewalls(ex, name, vm, err);
out:
    free(a_os);
    free(bname);
    free(a_boot);
    free(sname);
    free(a_shared);
    free(dname);
    free(a_disk);
    free(a_vm);
    return ret;
}

static int expand_kms_vms(struct kc_expand *ex, const struct kc_node *section,
                          struct kc_err *err)
{
    int ret = 0;

    if (section->type != KC_NODE_MAP)
        return kc_err_set(err, KC_EINVAL, "%s:%d:%d: kms_vms: expected a map",
                          section->pos.file, section->pos.line,
                          section->pos.col);
    for (size_t i = 0; i < section->n && ret == 0; i++)
        ret = expand_one_vm(ex, section->pairs[i].key->str,
                            section->pairs[i].val, err);
    return ret;
}

/* --- nitro_hosts (aws provider) ----------------------------------------- */

/* The host's instance type and enclave settings against the Nitro rules of
 * reconcile/check.c (kc_check_nitro_enclave: one family table for validate
 * and apply), then what only expansion checks. */
static int nitro_validate(const char *host, const struct kc_node *h,
                          struct kc_err *err)
{
    const struct kc_node *type = kc_node_get(h, "instance_type");
    const struct kc_node *enc = kc_node_get(h, "enclave");
    const struct kc_node *cpu = enc ? kc_node_get(enc, "cpu_count") : NULL;
    const struct kc_node *mem = enc ? kc_node_get(enc, "memory_mib") : NULL;
    const struct kc_node *bad;
    const char *dot, *field = NULL;
    char msg[256];
    int64_t cpus = 0, mib = 0;

    if (!type || type->type != KC_NODE_SCALAR || !cpu || !mem ||
        !kc_node_scalar_int(cpu, &cpus) || !kc_node_scalar_int(mem, &mib))
        return node_fail(h, err, KC_EINVAL,
                         "nitro_hosts.%s: instance_type, enclave.cpu_count and "
                         "enclave.memory_mib are required",
                         host);
    dot = strchr(type->str, '.');
    if (!dot || dot == type->str || (size_t)(dot - type->str) >= 32)
        return node_fail(
            type, err, KC_EINVAL,
            "nitro_hosts.%s.instance_type: '%s' is not an instance "
            "type",
            host, type->str);
    bad = kc_check_nitro_enclave(h, &field, msg, sizeof(msg));
    if (bad)
        return node_fail(bad, err, KC_EINVAL, "nitro_hosts.%s.%s: %s", host,
                         field ? field : "instance_type", msg);
    if (kc_node_get(h, "vpc_id") && !kc_node_get(h, "subnet_id"))
        return node_fail(
            kc_node_get(h, "vpc_id"), err, KC_EINVAL,
            "nitro_hosts.%s.vpc_id: give subnet_id too (a subnet of "
            "that VPC); without vpc_id the default VPC is used",
            host);
    {
        const struct kc_node *ssh = kc_node_get(h, "ssh");
        const struct kc_node *from = ssh ? kc_node_get(ssh, "from") : NULL;

        for (size_t i = 0; from && from->type == KC_NODE_SEQ && i < from->n;
             i++)
            if (from->items[i]->type == KC_NODE_SCALAR &&
                strchr(from->items[i]->str, ':'))
                return node_fail(
                    from->items[i], err, KC_ENOTSUP,
                    "nitro_hosts.%s.ssh.from[%zu]: IPv6 ranges are "
                    "not supported yet (IPv4 CIDRs only)",
                    host, i);
    }
    return 0;
}

/* Name and ownership tags plus the provider's and EXTRA's (a map node of
 * plain strings). */
static struct kc_value *nitro_tags(const struct kc_doc *doc, const char *name,
                                   const char *addr,
                                   const struct kc_node *extra)
{
    const struct kc_node *deployment = kc_node_get(doc->root, "name");
    const struct kc_node *prov = kc_node_get(doc->root, "providers");
    const struct kc_node *aws = prov ? kc_node_get(prov, "aws") : NULL;
    const struct kc_node *ptags = aws ? kc_node_get(aws, "tags") : NULL;
    const struct kc_node *lists[2] = { ptags, extra };
    struct kc_value *m = kc_value_new_map();

    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0;
             lists[l] && lists[l]->type == KC_NODE_MAP && i < lists[l]->n; i++)
            if (lists[l]->pairs[i].val->type == KC_NODE_SCALAR)
                kc_value_map_set(m, lists[l]->pairs[i].key->str,
                                 kc_value_new_str(lists[l]->pairs[i].val->str));
    if (name)
        kc_value_map_set(m, "Name", kc_value_new_str(name));
    kc_value_map_set(m, "kmsctl-deployment",
                     kc_value_new_str(deployment ? deployment->str : ""));
    kc_value_map_set(m, "kmsctl-address", kc_value_new_str(addr));
    return m;
}

static int nitro_key_pair(struct kc_expand *ex, const struct kc_node *ssh,
                          struct kc_err *err)
{
    const struct kc_doc *doc = kc_expand_document(ex);
    const struct kc_node *name = kc_node_get(ssh, "key_name");
    const struct kc_node *pub = kc_node_get(ssh, "public_key");
    const struct kc_node *priv = kc_node_get(ssh, "private_key_file");
    struct kc_resource *res;
    char *addr, *path, *text = NULL;
    size_t len = 0;
    int ret;

    if (!name || name->type != KC_NODE_SCALAR)
        return node_fail(ssh, err, KC_EINVAL, "ssh.key_name is required");
    addr = kc_xasprintf("aws.key_pair.%s", name->str);
    if (kc_expand_find(ex, addr)) {
        free(addr); /* shared by several hosts */
        return 0;
    }
    if (!pub && !priv) {
        free(addr);
        return node_fail(
            ssh, err, KC_EINVAL,
            "ssh needs public_key (a file to import, recommended) or "
            "private_key_file (where a new key is written)");
    }
    ret = kc_expand_add(ex, "aws.key_pair", name->str, ssh, &res, err);
    if (ret < 0)
        goto out;
    kc_expand_set_value(res, "key_name", kc_value_new_str(name->str));
    if (pub) {
        /* The key itself is the attribute: a new key file means a new key
         * pair. Public keys are not secrets. */
        path = kc_file_resolve(doc->dir, pub->str);
        ret = kc_file_read(path, 16384, &text, &len, err);
        free(path);
        if (ret < 0) {
            node_fail(pub, err, ret, "ssh.public_key: %s", err->msg);
            goto out;
        }
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
        if (strncmp(text, "ssh-ed25519 ", 12) != 0 &&
            strncmp(text, "ssh-rsa ", 8) != 0) {
            ret = node_fail(
                pub, err, KC_EINVAL,
                "ssh.public_key: not an OpenSSH ssh-ed25519 or ssh-rsa "
                "public key");
            goto out;
        }
        kc_expand_set_value(res, "public_key", kc_value_new_str(text));
    } else {
        path = kc_file_resolve(doc->dir, priv->str);
        kc_expand_set_value(res, "private_key_file", kc_value_new_str(path));
        free(path);
    }
    kc_expand_set_value(res, "tags", nitro_tags(doc, NULL, addr, NULL));
out:
    free(text);
    free(addr);
    return ret;
}

static int nitro_host(struct kc_expand *ex, const char *host,
                      const struct kc_node *h, struct kc_err *err)
{
    const struct kc_doc *doc = kc_expand_document(ex);
    const struct kc_node *dep = kc_node_get(doc->root, "name");
    const struct kc_node *ssh = kc_node_get(h, "ssh");
    const struct kc_node *enc = kc_node_get(h, "enclave");
    const struct kc_node *root = kc_node_get(h, "root_volume");
    const struct kc_node *n;
    struct kc_resource *sg, *inst, *ami;
    char *addr = NULL, *sg_addr = NULL, *ami_addr = NULL, *gname = NULL;
    int ret;

    ret = nitro_validate(host, h, err);
    if (ret < 0)
        return ret;
    if (ssh && (ret = nitro_key_pair(ex, ssh, err)) < 0)
        return ret;

    /* The host's own security group. */
    sg_addr = kc_xasprintf("aws.security_group.%s", host);
    ret = kc_expand_add(ex, "aws.security_group", host, h, &sg, err);
    if (ret < 0)
        goto out;
    gname = kc_xasprintf("kmsctl-%s-%s", dep ? dep->str : "", host);
    kc_expand_set_value(sg, "group_name", kc_value_new_str(gname));
    kc_expand_set_value(sg, "description",
                        kc_value_new_str("kmsctl: SSH to the Nitro Enclaves "
                                         "host"));
    ret = kc_expand_set_node(ex, sg, "vpc_id", kc_node_get(h, "vpc_id"), err);
    if (ret < 0)
        goto out;
    n = ssh ? kc_node_get(ssh, "from") : NULL;
    if (n)
        ret = kc_expand_set_node(ex, sg, "ssh_from", n, err);
    else
        kc_expand_set_value(sg, "ssh_from", kc_value_new_list());
    if (ret < 0)
        goto out;
    kc_expand_set_value(sg, "tags", nitro_tags(doc, gname, sg_addr, NULL));

    /* The AMI: given, or looked up at plan time. */
    n = kc_node_get(h, "ami");
    if (!n) {
        ami_addr = kc_xasprintf("aws.ami.%s", host);
        ret = kc_expand_add(ex, "aws.ami", host, h, &ami, err);
        if (ret < 0)
            goto out;
        kc_expand_set_value(ami, "owner", kc_value_new_str("amazon"));
        kc_expand_set_value(ami, "name_pattern",
                            kc_value_new_str("al2023-ami-2023.*-x86_64"));
        kc_expand_set_value(ami, "architecture", kc_value_new_str("x86_64"));
    }

    /* The instance. */
    addr = kc_xasprintf("aws.instance.%s", host);
    ret = kc_expand_add(ex, "aws.instance", host, h, &inst, err);
    if (ret < 0)
        goto out;
    if (n)
        ret = kc_expand_set_node(ex, inst, "ami", n, err);
    else
        kc_expand_set_ref(inst, "ami", ami_addr, "image_id");
    if (ret == 0)
        ret = kc_expand_set_node(ex, inst, "instance_type",
                                 kc_node_get(h, "instance_type"), err);
    if (ret == 0)
        ret = kc_expand_set_node(ex, inst, "enclave_cpu_count",
                                 kc_node_get(enc, "cpu_count"), err);
    if (ret == 0)
        ret = kc_expand_set_node(ex, inst, "enclave_memory_mib",
                                 kc_node_get(enc, "memory_mib"), err);
    if (ret == 0)
        ret = kc_expand_set_node(ex, inst, "subnet_id",
                                 kc_node_get(h, "subnet_id"), err);
    if (ret < 0)
        goto out;
    n = root ? kc_node_get(root, "size_gb") : NULL;
    if (n)
        ret = kc_expand_set_node(ex, inst, "root_volume_size_gb", n, err);
    else
        kc_expand_set_value(inst, "root_volume_size_gb", kc_value_new_int(20));
    n = root ? kc_node_get(root, "type") : NULL;
    if (n)
        ret = kc_expand_set_node(ex, inst, "root_volume_type", n, err);
    else
        kc_expand_set_value(inst, "root_volume_type", kc_value_new_str("gp3"));
    if (ret < 0)
        goto out;
    if (ssh) {
        char *kp =
            kc_xasprintf("aws.key_pair.%s", kc_node_get(ssh, "key_name")->str);

        kc_expand_set_ref(inst, "key_name", kp, "key_name");
        free(kp);
        n = kc_node_get(ssh, "user");
    } else {
        n = NULL;
    }
    if (n)
        ret = kc_expand_set_node(ex, inst, "ssh_user", n, err);
    else
        kc_expand_set_value(inst, "ssh_user", kc_value_new_str("ec2-user"));
    if (ret < 0)
        goto out;
    kc_expand_set_ref(inst, "security_group_id", sg_addr, "group_id");
    kc_expand_set_value(inst, "tags",
                        nitro_tags(doc, host, addr, kc_node_get(h, "tags")));
    kc_expand_set_value(inst, "state", kc_value_new_str("running"));
    {
        char *prefix = kc_xasprintf("nitro_hosts.%s", host);

        kc_expand_alias(ex, prefix, addr);
        free(prefix);
    }
out:
    free(addr);
    free(sg_addr);
    free(ami_addr);
    free(gname);
    return ret;
}

static int expand_nitro_hosts(struct kc_expand *ex,
                              const struct kc_node *section, struct kc_err *err)
{
    if (section->type != KC_NODE_MAP)
        return node_fail(section, err, KC_EINVAL,
                         "nitro_hosts: expected a map");
    for (size_t i = 0; i < section->n; i++) {
        int ret = nitro_host(ex, section->pairs[i].key->str,
                             section->pairs[i].val, err);

        if (ret < 0)
            return ret;
    }
    return 0;
}

/* --- the engine side ---------------------------------------------------- */

static const struct {
    const char *name;
    kc_expand_section_fn fn;
} sections[] = {
    /* Order matters only for the order of resources in plans. */
    { "contracts", expand_contracts },
    { "kms_vms", expand_kms_vms },
    { "nitro_hosts", expand_nitro_hosts },
};

int kc_expand_resolve(struct kc_expand *ex, const char *ref, const char **addr,
                      char **output)
{
    struct kc_resource *res;
    int ret = kc_graph_resolve_ref(ex->g, ref, &res, output, NULL);

    *addr = ret == 0 ? res->address : NULL;
    return ret;
}

const struct kc_doc *kc_expand_document(const struct kc_expand *ex)
{
    return ex->doc;
}

struct kc_resource *kc_expand_find(struct kc_expand *ex, const char *addr)
{
    return kc_graph_find(ex->g, addr);
}

int kc_expand_add(struct kc_expand *ex, const char *kind, const char *name,
                  const struct kc_node *where, struct kc_resource **out,
                  struct kc_err *err)
{
    int ret = kc_graph_add(ex->g, kind, name, out, err);

    if (ret < 0) {
        if (where)
            kc_err_prefix(err, "%s:%d:%d", where->pos.file, where->pos.line,
                          where->pos.col);
        return ret;
    }
    if (where) {
        (*out)->pos = where->pos;
        (*out)->has_pos = true;
    }
    return 0;
}

int kc_expand_set_node(struct kc_expand *ex, struct kc_resource *res,
                       const char *field, const struct kc_node *node,
                       struct kc_err *err)
{
    (void)ex;
    (void)err;
    if (node)
        kc_resource_set_node(res, field, node);
    return 0;
}

void kc_expand_set_value(struct kc_resource *res, const char *field,
                         struct kc_value *val)
{
    kc_resource_set_value(res, field, val);
}

void kc_expand_set_ref(struct kc_resource *res, const char *field,
                       const char *addr, const char *output)
{
    kc_resource_set_ref(res, field, addr, output);
}

void kc_expand_depends_on(struct kc_resource *res, const char *addr)
{
    kc_resource_add_dep(res, addr);
}

void kc_expand_alias(struct kc_expand *ex, const char *prefix, const char *addr)
{
    kc_graph_alias(ex->g, prefix, addr);
}

/* Edges from every ${reference} inside RES's node attributes. */
static int ref_edges(struct kc_expand *ex, struct kc_resource *res,
                     struct kc_err *err)
{
    for (size_t a = 0; a < res->nattrs; a++) {
        const struct kc_node *node = res->attrs[a].node;
        char **refs = NULL;
        size_t n = 0;
        int ret = 0;

        if (!node)
            continue;
        kc_interp_refs(node, &refs, &n);
        for (size_t i = 0; i < n && ret == 0; i++) {
            struct kc_resource *dep;
            char *output = NULL;

            ret = kc_graph_resolve_ref(ex->g, refs[i], &dep, &output, err);
            if (ret == 0 && dep == res)
                ret = kc_err_set(err, KC_ECYCLE,
                                 "'%s' refers to itself through '${%s}'",
                                 res->address, refs[i]);
            else if (ret == 0)
                kc_resource_add_dep(res, dep->address);
            if (ret < 0)
                kc_err_prefix(err, "%s:%d:%d", node->pos.file, node->pos.line,
                              node->pos.col);
            free(output);
        }
        kc_interp_refs_free(refs, n);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int kc_expand_doc(const struct kc_doc *doc, struct kc_graph **out,
                  struct kc_err *err)
{
    struct kc_expand ex = { doc, kc_graph_new() };
    int ret = 0;

    *out = NULL;
    for (size_t i = 0; i < KC_ARRAY_SIZE(sections) && ret == 0; i++) {
        const struct kc_node *node = kc_node_get(doc->root, sections[i].name);

        if (node)
            ret = sections[i].fn(&ex, node, err);
    }
    if (ret == 0 && kc_expand_section_fake) {
        const struct kc_node *node = kc_node_get(doc->root, "fake");

        if (node)
            ret = kc_expand_section_fake(&ex, node, err);
    }
    for (size_t i = 0; i < kc_graph_count(ex.g) && ret == 0; i++)
        ret = ref_edges(&ex, kc_graph_at(ex.g, i), err);
    if (ret < 0) {
        kc_graph_free(ex.g);
        return ret;
    }
    *out = ex.g;
    return 0;
}

struct eval_adapter {
    int (*resolve)(void *ctx, const char *ref, struct kc_value **out,
                   struct kc_err *err);
    void *ctx;
};

/* The engine's resolver gives UNKNOWN values; interp wants NULL for them. */
static int adapt_resolve(void *data, const char *ref, struct kc_value **out,
                         struct kc_err *err)
{
    struct eval_adapter *ad = data;
    int ret = ad->resolve(ad->ctx, ref, out, err);

    if (ret == 0 && *out && (*out)->type == KC_VALUE_UNKNOWN) {
        kc_value_free(*out);
        *out = NULL;
    }
    return ret;
}

int kc_expand_eval(void *data, const struct kc_node *node,
                   int (*resolve)(void *ctx, const char *ref,
                                  struct kc_value **out, struct kc_err *err),
                   void *ctx, struct kc_value **out, struct kc_err *err)
{
    const struct kc_expand_eval_ctx *ec = data;
    struct eval_adapter ad = { resolve, ctx };
    struct kc_interp_opts o = { 0 };

    o.doc = ec ? ec->doc : NULL;
    o.log = ec ? ec->log : NULL;
    o.resolve = adapt_resolve;
    o.resolve_ctx = &ad;
    return kc_interp_node(&o, node, out, err);
}
