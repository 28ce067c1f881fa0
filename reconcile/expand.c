/* reconcile/expand.c: the manifest's sections become resources (the only
 * code that knows the sections; see reconcile/resource.h, section 3). Each
 * section has one function below, written by the engineer of the provider
 * that owns it. */
#include "reconcile/expand.h"

#include <inttypes.h>

#include "reconcile/file.h"
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

static int expand_contracts(struct kc_expand *ex, const struct kc_node *section,
                            struct kc_err *err)
{
    (void)ex;
    return not_built(section, "contracts", "chain", err);
}

/* --- kms_vms (gcp provider, with the dstack kinds it needs) ------------ */

static int expand_kms_vms(struct kc_expand *ex, const struct kc_node *section,
                          struct kc_err *err)
{
    (void)ex;
    return not_built(section, "kms_vms", "gcp", err);
}

/* --- nitro_hosts (aws provider) ----------------------------------------- */

/* Instance families that support Nitro Enclaves (x86; "Nitro Enclaves
 * requirements" in the AWS Nitro Enclaves user guide: Intel or AMD based
 * Nitro instances with at least 4 vCPUs, not T3/T3a), with their memory per
 * vCPU in MiB. Sizes are "large" (2 vCPUs), "xlarge" (4), "<n>xlarge"
 * (4n). */
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

static int at(const struct kc_node *n, struct kc_err *err, int code,
              const char *fmt, ...) KC_PRINTF(4, 5);
static int at(const struct kc_node *n, struct kc_err *err, int code,
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

/* The host's instance type and enclave settings against the Nitro rules:
 * whole cores for the enclave (2 vCPUs each on these SMT families), at least
 * one core (2 vCPUs) and 1 GiB left to the parent (dstack.md §7, "E22 CPU
 * allocator": cpu_count must stay below nproc). */
static int nitro_validate(const char *host, const struct kc_node *h,
                          struct kc_err *err)
{
    const struct kc_node *type = kc_node_get(h, "instance_type");
    const struct kc_node *enc = kc_node_get(h, "enclave");
    const struct kc_node *cpu = enc ? kc_node_get(enc, "cpu_count") : NULL;
    const struct kc_node *mem = enc ? kc_node_get(enc, "memory_mib") : NULL;
    char family[32];
    const char *dot, *size;
    int64_t vcpus = 0, cpus = 0, mib = 0, mult = 0;
    int per = 0;

    if (!type || type->type != KC_NODE_SCALAR || !cpu || !mem ||
        !kc_node_scalar_int(cpu, &cpus) || !kc_node_scalar_int(mem, &mib))
        return at(h, err, KC_EINVAL,
                  "nitro_hosts.%s: instance_type, enclave.cpu_count and "
                  "enclave.memory_mib are required",
                  host);
    dot = strchr(type->str, '.');
    if (!dot || (size_t)(dot - type->str) >= sizeof(family))
        return at(type, err, KC_EINVAL,
                  "nitro_hosts.%s.instance_type: '%s' is not an instance "
                  "type",
                  host, type->str);
    memcpy(family, type->str, (size_t)(dot - type->str));
    family[dot - type->str] = '\0';
    for (size_t i = 0; i < KC_ARRAY_SIZE(nitro_families); i++)
        if (strcmp(nitro_families[i].family, family) == 0)
            per = nitro_families[i].mib_per_vcpu;
    if (!per)
        return at(type, err, KC_EINVAL,
                  "nitro_hosts.%s.instance_type: family '%s' does not "
                  "support Nitro Enclaves (use an Intel or AMD C5/C6/C7, "
                  "M5/M6/M7 or R5/R6/R7 type such as c5.xlarge)",
                  host, family);
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
    if (!vcpus)
        return at(type, err, KC_EINVAL,
                  "nitro_hosts.%s.instance_type: size '%s' is not one "
                  "kmsctl knows (large, xlarge, <n>xlarge; no metal)",
                  host, size);
    if (vcpus < 4)
        return at(type, err, KC_EINVAL,
                  "nitro_hosts.%s.instance_type: %s has %" PRId64
                  " vCPUs; a Nitro Enclaves parent needs at least 4",
                  host, type->str, vcpus);
    if (cpus % 2)
        return at(cpu, err, KC_EINVAL,
                  "nitro_hosts.%s.enclave.cpu_count: %" PRId64
                  " is odd; enclaves get whole cores (2 vCPUs each)",
                  host, cpus);
    if (cpus > vcpus - 2)
        return at(cpu, err, KC_EINVAL,
                  "nitro_hosts.%s.enclave.cpu_count: %" PRId64
                  " leaves the host fewer than 2 of the %" PRId64
                  " vCPUs of %s (at most %" PRId64 ")",
                  host, cpus, vcpus, type->str, vcpus - 2);
    if (kc_node_get(h, "vpc_id") && !kc_node_get(h, "subnet_id"))
        return at(kc_node_get(h, "vpc_id"), err, KC_EINVAL,
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
                return at(from->items[i], err, KC_ENOTSUP,
                          "nitro_hosts.%s.ssh.from[%zu]: IPv6 ranges are "
                          "not supported yet (IPv4 CIDRs only)",
                          host, i);
    }
    if (mib > vcpus * per - 1024)
        return at(mem, err, KC_EINVAL,
                  "nitro_hosts.%s.enclave.memory_mib: %" PRId64
                  " leaves the host less than 1 GiB of the %" PRId64
                  " MiB of %s (at most %" PRId64 ")",
                  host, mib, vcpus * per, type->str, vcpus * per - 1024);
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
        return at(ssh, err, KC_EINVAL, "ssh.key_name is required");
    addr = kc_xasprintf("aws.key_pair.%s", name->str);
    if (kc_expand_find(ex, addr)) {
        free(addr); /* shared by several hosts */
        return 0;
    }
    if (!pub && !priv) {
        free(addr);
        return at(ssh, err, KC_EINVAL,
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
            at(pub, err, ret, "ssh.public_key: %s", err->msg);
            goto out;
        }
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
        if (strncmp(text, "ssh-ed25519 ", 12) != 0 &&
            strncmp(text, "ssh-rsa ", 8) != 0) {
            ret = at(pub, err, KC_EINVAL,
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
        return at(section, err, KC_EINVAL, "nitro_hosts: expected a map");
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
