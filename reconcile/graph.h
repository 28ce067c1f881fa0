/* reconcile/graph.h: the resource graph, a DAG of resources with their
 * desired attributes (as expand left them: nodes, values or references) and
 * dependencies; topological order; cycle report.
 *
 * Resources are owned by the graph and never move once added (pointers stay
 * valid until kc_graph_free). Edges are by address and are resolved by
 * kc_graph_sort(), which must succeed before the order and the edge indices
 * are used.
 */
#ifndef KC_RECONCILE_GRAPH_H
#define KC_RECONCILE_GRAPH_H

#include "reconcile/diag.h"
#include "reconcile/kc.h"
#include "reconcile/manifest.h"
#include "reconcile/value.h"

/* One desired attribute: exactly one of node, value, ref_addr is set. */
struct kc_attr {
    char *field;
    const struct kc_node *node; /* borrowed from the document */
    struct kc_value *value;     /* owned */
    char *ref_addr;             /* output ref_output of resource ref_addr */
    char *ref_output;
};

struct kc_resource {
    /* read-only */
    char *address; /* "<kind>.<name>" */
    char *kind;    /* "gcp.instance" */
    char *name;    /* "dstack-kms" */
    struct kc_pos pos;
    bool has_pos;
    bool orphan; /* only in the state: to be deleted */
    struct kc_attr *attrs;
    size_t nattrs, capattrs;
    char **deps; /* addresses it depends on (declared and from refs) */
    size_t ndeps, capdeps;
    /* after kc_graph_sort: indices into the graph */
    size_t index;
    size_t *edges; /* resources this one depends on */
    size_t nedges;
    size_t *redges; /* resources that depend on this one */
    size_t nredges, capredges;
};

struct kc_graph;

struct kc_graph *kc_graph_new(void);
void kc_graph_free(struct kc_graph *g);

/* Adds KIND.NAME. KC_EEXIST when the address exists. *OUT (may be NULL) is
 * borrowed from the graph. */
int kc_graph_add(struct kc_graph *g, const char *kind, const char *name,
                 struct kc_resource **out, struct kc_err *err);
struct kc_resource *kc_graph_find(const struct kc_graph *g, const char *addr);
size_t kc_graph_count(const struct kc_graph *g);
struct kc_resource *kc_graph_at(const struct kc_graph *g, size_t i);

/* FROM depends on TO (by address; duplicates ignored). Both are looked up
 * by kc_graph_sort. */
int kc_graph_add_edge(struct kc_graph *g, const char *from, const char *to);
void kc_resource_add_dep(struct kc_resource *res, const char *addr);
/* Attribute setters (replace an attribute of the same field). */
void kc_resource_set_node(struct kc_resource *res, const char *field,
                          const struct kc_node *node);
void kc_resource_set_value(struct kc_resource *res, const char *field,
                           struct kc_value *val);
void kc_resource_set_ref(struct kc_resource *res, const char *field,
                         const char *addr, const char *output);

/* Resolves edges and computes a topological order (dependencies first; ties
 * in insertion order). KC_ENOENT for a dependency on a missing address
 * ("'a' depends on 'b', which is not in the graph"), KC_ECYCLE naming every
 * address on one cycle in order ("dependency cycle: 'a' -> 'b' -> 'a'"). */
int kc_graph_sort(struct kc_graph *g, struct kc_err *err);
/* The I-th resource in topological order (after kc_graph_sort). */
struct kc_resource *kc_graph_order(const struct kc_graph *g, size_t i);

/* References: PREFIX ("contracts.kms") means resource ADDR. */
void kc_graph_alias(struct kc_graph *g, const char *prefix, const char *addr);
/* Splits reference REF ("kms_vms.x.external_ip", "chain.kms.address") into
 * the resource it names (*RES, borrowed) and the output name (*OUTPUT,
 * caller frees). KC_ENOENT when it names no resource. */
int kc_graph_resolve_ref(const struct kc_graph *g, const char *ref,
                         struct kc_resource **res, char **output,
                         struct kc_err *err);

/* True if A depends on B directly or transitively (after kc_graph_sort). */
bool kc_graph_depends(const struct kc_graph *g, size_t a, size_t b);

#endif
