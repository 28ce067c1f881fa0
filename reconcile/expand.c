/* reconcile/expand.c: the manifest's sections become resources (the only
 * code that knows the sections; see reconcile/resource.h, section 3). Each
 * section has one function below, written by the engineer of the provider
 * that owns it. */
#include "reconcile/expand.h"

#include "reconcile/graph.h"
#include "reconcile/interp.h"

struct kc_expand {
    const struct kc_doc *doc;
    struct kc_graph *g;
};

/* Test executables define this to expand a `fake:` section for the fake
 * provider (tests/unit/helpers/fake_provider.c); NULL in kmsctl. */
extern int kc_expand_section_fake(struct kc_expand *ex,
                                  const struct kc_node *section,
                                  struct kc_err *err) __attribute__((weak));

static int not_built(const struct kc_node *section, const char *name,
                     const char *provider, struct kc_err *err)
{
    return kc_err_set(err, KC_ENOTSUP,
                      "%s:%d:%d: section '%s' cannot be planned yet: the %s "
                      "provider's expansion is not built",
                      section->pos.file, section->pos.line, section->pos.col,
                      name, provider);
}

/* --- contracts (chain provider) ---------------------------------------- */

static int expand_contracts(struct kc_expand *ex, const struct kc_node *section,
                            struct kc_err *err)
{
    (void)ex;
    return not_built(section, "contracts", "chain", err);
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

static const char *scalar(const struct kc_node *n)
{
    return n && n->type == KC_NODE_SCALAR ? n->str : NULL;
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
    kc_expand_set_ref(shared, "os_image_hash", a_os, "auth_hash");
    if (kc_expand_find(ex, "chain.kms"))
        kc_expand_set_ref(shared, "kms_addr", "chain.kms", "address");
    if (doc->dir)
        kc_expand_set_value(shared, "base_dir", kc_value_new_str(doc->dir));
    kc_expand_set_value(shared, "guest_os_features",
                        str_list("GVNIC", NULL, NULL));

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

static int expand_nitro_hosts(struct kc_expand *ex,
                              const struct kc_node *section, struct kc_err *err)
{
    (void)ex;
    return not_built(section, "nitro_hosts", "aws", err);
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
