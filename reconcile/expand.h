/* reconcile/expand.h: the manifest document becomes the resource graph
 * (DESIGN.md §3). expand.c is the only code that knows the manifest's
 * sections; each section has one function there (see reconcile/resource.h,
 * section 3, for who writes which and how references map to outputs).
 *
 * A section function adds resources and their desired attributes:
 *
 *     struct kc_resource *res;
 *     ret = kc_expand_add(ex, "gcp.instance", name, node, &res, err);
 *     if (ret == 0)
 *         ret = kc_expand_set_node(ex, res, "machine_type",
 *                                  kc_node_get(node, "machine_type"), err);
 *     kc_expand_alias(ex, "kms_vms.dstack-kms", "gcp.instance.dstack-kms");
 *
 * Attributes from nodes are interpolated by the engine (plan time, and again
 * at apply time when they held unknown references); the nodes are borrowed
 * from the document, which must outlive the graph.
 */
#ifndef KC_RECONCILE_EXPAND_H
#define KC_RECONCILE_EXPAND_H

#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/manifest.h"
#include "reconcile/value.h"

struct kc_expand;
struct kc_graph;
struct kc_resource;

/* What kc_expand_eval needs (the engine's eval_data). */
struct kc_expand_eval_ctx {
    const struct kc_doc *doc; /* ${file:} paths, reference checks */
    struct kc_log *log;       /* learns every secret read; may be NULL */
};

/* A section function: adds the resources of SECTION (the value node of the
 * manifest's top-level key). */
typedef int (*kc_expand_section_fn)(struct kc_expand *ex,
                                    const struct kc_node *section,
                                    struct kc_err *err);

/* Expands DOC (validated) into a new graph *OUT (kc_graph_free): every
 * section, then dependencies from references and kc_expand_depends_on.
 * Errors name the manifest position: unknown reference, duplicate address,
 * unknown kind field. */
int kc_expand_doc(const struct kc_doc *doc, struct kc_graph **out,
                  struct kc_err *err);

/* The engine's evaluator of node attributes (reconcile/exec.h
 * kc_eval_node_fn) over reconcile/interp: DATA is a struct
 * kc_expand_eval_ctx. A reference the resolver does not know yet becomes
 * UNKNOWN. */
int kc_expand_eval(void *data, const struct kc_node *node,
                   int (*resolve)(void *ctx, const char *ref,
                                  struct kc_value **out, struct kc_err *err),
                   void *ctx, struct kc_value **out, struct kc_err *err);

/* Adds resource KIND.NAME (WHERE, may be NULL, is its manifest node, for
 * messages). KC_EEXIST if the address exists. *OUT is borrowed from the
 * graph. */
int kc_expand_add(struct kc_expand *ex, const char *kind, const char *name,
                  const struct kc_node *where, struct kc_resource **out,
                  struct kc_err *err);
/* Desired attribute FIELD from manifest node NODE (interpolated later; NULL
 * NODE: nothing set, returns 0). */
int kc_expand_set_node(struct kc_expand *ex, struct kc_resource *res,
                       const char *field, const struct kc_node *node,
                       struct kc_err *err);
/* Desired attribute FIELD computed by expand (takes VAL). */
void kc_expand_set_value(struct kc_resource *res, const char *field,
                         struct kc_value *val);
/* Desired attribute FIELD is output OUTPUT of resource ADDR (and RES depends
 * on ADDR). */
void kc_expand_set_ref(struct kc_resource *res, const char *field,
                       const char *addr, const char *output);
/* RES depends on ADDR (which must exist when expansion ends). */
void kc_expand_depends_on(struct kc_resource *res, const char *addr);
/* References starting with PREFIX ("kms_vms.dstack-kms") mean resource ADDR
 * ("gcp.instance.dstack-kms"); the rest is the output name. */
void kc_expand_alias(struct kc_expand *ex, const char *prefix,
                     const char *addr);
/* Resolves REF as a manifest writes it ("contracts.kms.address") through
 * the aliases added so far (sections run in the order of sections[] in
 * expand.c: contracts, kms_vms, nitro_hosts): 0 with *ADDR (borrowed from
 * the graph) and *OUTPUT (caller frees), or KC_ENOENT (nothing supplies it).
 * Use it instead of guessing another section's addresses:
 *
 *     if (kc_expand_resolve(ex, "contracts.kms.address", &a, &o) == 0)
 *         kc_expand_set_ref(res, "kms_addr", a, o);
 */
int kc_expand_resolve(struct kc_expand *ex, const char *ref, const char **addr,
                      char **output);
/* The document being expanded (borrowed). */
const struct kc_doc *kc_expand_document(const struct kc_expand *ex);
/* The resource ADDR added so far, or NULL. */
struct kc_resource *kc_expand_find(struct kc_expand *ex, const char *addr);

#endif
