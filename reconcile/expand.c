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

static int expand_kms_vms(struct kc_expand *ex, const struct kc_node *section,
                          struct kc_err *err)
{
    (void)ex;
    return not_built(section, "kms_vms", "gcp", err);
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
