/* reconcile/graph.c: the resource DAG, its order and its cycles. */
#include "reconcile/graph.h"

#include "reconcile/buf.h"

struct kc_alias {
    char *prefix;
    char *addr;
};

struct kc_graph {
    struct kc_resource **res;
    size_t n, cap;
    size_t *order;
    struct kc_alias *aliases;
    size_t naliases, capaliases;
};

struct kc_graph *kc_graph_new(void)
{
    return kc_xcalloc(1, sizeof(struct kc_graph));
}

static void attr_release(struct kc_attr *a)
{
    free(a->field);
    kc_value_free(a->value);
    free(a->ref_addr);
    free(a->ref_output);
    memset(a, 0, sizeof(*a));
}

static void resource_free(struct kc_resource *r)
{
    for (size_t i = 0; i < r->nattrs; i++)
        attr_release(&r->attrs[i]);
    free(r->attrs);
    for (size_t i = 0; i < r->ndeps; i++)
        free(r->deps[i]);
    free(r->deps);
    free(r->edges);
    free(r->redges);
    free(r->address);
    free(r->kind);
    free(r->name);
    free(r);
}

void kc_graph_free(struct kc_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        resource_free(g->res[i]);
    free(g->res);
    free(g->order);
    for (size_t i = 0; i < g->naliases; i++) {
        free(g->aliases[i].prefix);
        free(g->aliases[i].addr);
    }
    free(g->aliases);
    free(g);
}

struct kc_resource *kc_graph_find(const struct kc_graph *g, const char *addr)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->res[i]->address, addr) == 0)
            return g->res[i];
    return NULL;
}

int kc_graph_add(struct kc_graph *g, const char *kind, const char *name,
                 struct kc_resource **out, struct kc_err *err)
{
    char *addr = kc_xasprintf("%s.%s", kind, name);
    struct kc_resource *r;

    if (out)
        *out = NULL;
    if (kc_graph_find(g, addr)) {
        kc_err_set(err, KC_EEXIST, "resource '%s' is defined twice", addr);
        free(addr);
        return KC_EEXIST;
    }
    r = kc_xcalloc(1, sizeof(*r));
    r->address = addr;
    r->kind = kc_xstrdup(kind);
    r->name = kc_xstrdup(name);
    kc_xgrow(&g->res, &g->cap, g->n + 1, sizeof(*g->res));
    r->index = g->n;
    g->res[g->n++] = r;
    free(g->order);
    g->order = NULL;
    if (out)
        *out = r;
    return 0;
}

size_t kc_graph_count(const struct kc_graph *g)
{
    return g->n;
}

struct kc_resource *kc_graph_at(const struct kc_graph *g, size_t i)
{
    return i < g->n ? g->res[i] : NULL;
}

void kc_resource_add_dep(struct kc_resource *res, const char *addr)
{
    for (size_t i = 0; i < res->ndeps; i++)
        if (strcmp(res->deps[i], addr) == 0)
            return;
    kc_xgrow(&res->deps, &res->capdeps, res->ndeps + 1, sizeof(*res->deps));
    res->deps[res->ndeps++] = kc_xstrdup(addr);
}

int kc_graph_add_edge(struct kc_graph *g, const char *from, const char *to)
{
    struct kc_resource *r = kc_graph_find(g, from);

    if (!r)
        return KC_ENOENT;
    kc_resource_add_dep(r, to);
    return 0;
}

static struct kc_attr *attr_slot(struct kc_resource *res, const char *field)
{
    struct kc_attr *a;

    for (size_t i = 0; i < res->nattrs; i++) {
        if (strcmp(res->attrs[i].field, field) == 0) {
            attr_release(&res->attrs[i]);
            res->attrs[i].field = kc_xstrdup(field);
            return &res->attrs[i];
        }
    }
    kc_xgrow(&res->attrs, &res->capattrs, res->nattrs + 1, sizeof(*res->attrs));
    a = &res->attrs[res->nattrs++];
    memset(a, 0, sizeof(*a));
    a->field = kc_xstrdup(field);
    return a;
}

void kc_resource_set_node(struct kc_resource *res, const char *field,
                          const struct kc_node *node)
{
    attr_slot(res, field)->node = node;
}

void kc_resource_set_value(struct kc_resource *res, const char *field,
                           struct kc_value *val)
{
    attr_slot(res, field)->value = val;
}

void kc_resource_set_ref(struct kc_resource *res, const char *field,
                         const char *addr, const char *output)
{
    struct kc_attr *a = attr_slot(res, field);

    a->ref_addr = kc_xstrdup(addr);
    a->ref_output = kc_xstrdup(output);
    kc_resource_add_dep(res, addr);
}

enum {
    WHITE = 0,
    GREY,
    BLACK
};

/* Depth-first visit; on a back edge, writes the cycle into ERR. */
static int visit(struct kc_graph *g, size_t i, unsigned char *color,
                 size_t *stack, size_t depth, size_t *out, size_t *nout,
                 struct kc_err *err)
{
    struct kc_resource *r = g->res[i];

    color[i] = GREY;
    stack[depth] = i;
    for (size_t e = 0; e < r->nedges; e++) {
        size_t j = r->edges[e];

        if (color[j] == GREY) {
            struct kc_buf b;
            size_t start = 0;

            while (stack[start] != j)
                start++;
            kc_buf_init(&b, 0);
            kc_buf_addstr(&b, "dependency cycle: ");
            for (size_t k = start; k <= depth; k++)
                kc_buf_addf(&b, "'%s' -> ", g->res[stack[k]]->address);
            kc_buf_addf(&b, "'%s'", g->res[j]->address);
            kc_err_set(err, KC_ECYCLE, "%s", kc_buf_str(&b));
            kc_buf_release(&b);
            return KC_ECYCLE;
        }
        if (color[j] == WHITE) {
            int ret = visit(g, j, color, stack, depth + 1, out, nout, err);

            if (ret < 0)
                return ret;
        }
    }
    color[i] = BLACK;
    out[(*nout)++] = i;
    return 0;
}

int kc_graph_sort(struct kc_graph *g, struct kc_err *err)
{
    unsigned char *color = NULL;
    size_t *stack = NULL, nout = 0;
    int ret = 0;

    free(g->order);
    g->order = NULL;
    for (size_t i = 0; i < g->n; i++) {
        struct kc_resource *r = g->res[i];

        free(r->edges);
        r->edges = kc_xcalloc(r->ndeps + 1, sizeof(*r->edges));
        r->nedges = 0;
        r->nredges = 0;
    }
    for (size_t i = 0; i < g->n; i++) {
        struct kc_resource *r = g->res[i];

        for (size_t d = 0; d < r->ndeps; d++) {
            struct kc_resource *dep = kc_graph_find(g, r->deps[d]);

            if (!dep)
                return kc_err_set(err, KC_ENOENT,
                                  "'%s' depends on '%s', which is not in the "
                                  "graph",
                                  r->address, r->deps[d]);
            r->edges[r->nedges++] = dep->index;
            kc_xgrow(&dep->redges, &dep->capredges, dep->nredges + 1,
                     sizeof(*dep->redges));
            dep->redges[dep->nredges++] = r->index;
        }
    }
    color = kc_xcalloc(g->n + 1, 1);
    stack = kc_xcalloc(g->n + 1, sizeof(*stack));
    g->order = kc_xcalloc(g->n + 1, sizeof(*g->order));
    for (size_t i = 0; i < g->n && ret == 0; i++)
        if (color[i] == WHITE)
            ret = visit(g, i, color, stack, 0, g->order, &nout, err);
    if (ret < 0) {
        free(g->order);
        g->order = NULL;
    }
    free(color);
    free(stack);
    return ret;
}

struct kc_resource *kc_graph_order(const struct kc_graph *g, size_t i)
{
    if (!g->order)
        KC_BUG("kc_graph_order before a successful kc_graph_sort");
    return i < g->n ? g->res[g->order[i]] : NULL;
}

void kc_graph_alias(struct kc_graph *g, const char *prefix, const char *addr)
{
    for (size_t i = 0; i < g->naliases; i++) {
        if (strcmp(g->aliases[i].prefix, prefix) == 0) {
            free(g->aliases[i].addr);
            g->aliases[i].addr = kc_xstrdup(addr);
            return;
        }
    }
    kc_xgrow(&g->aliases, &g->capaliases, g->naliases + 1, sizeof(*g->aliases));
    g->aliases[g->naliases].prefix = kc_xstrdup(prefix);
    g->aliases[g->naliases].addr = kc_xstrdup(addr);
    g->naliases++;
}

/* True if S starts with P followed by '.'; *REST is what follows. */
static bool prefix_dot(const char *s, const char *p, const char **rest)
{
    size_t n = strlen(p);

    if (strncmp(s, p, n) != 0 || s[n] != '.' || !s[n + 1])
        return false;
    *rest = s + n + 1;
    return true;
}

int kc_graph_resolve_ref(const struct kc_graph *g, const char *ref,
                         struct kc_resource **res, char **output,
                         struct kc_err *err)
{
    const char *best_rest = NULL, *rest;
    size_t best_len = 0;
    struct kc_resource *best = NULL;

    *res = NULL;
    *output = NULL;
    for (size_t i = 0; i < g->naliases; i++) {
        size_t len = strlen(g->aliases[i].prefix);

        if (len > best_len && prefix_dot(ref, g->aliases[i].prefix, &rest)) {
            struct kc_resource *r = kc_graph_find(g, g->aliases[i].addr);

            if (r) {
                best = r;
                best_len = len;
                best_rest = rest;
            }
        }
    }
    for (size_t i = 0; i < g->n; i++) {
        size_t len = strlen(g->res[i]->address);

        if (len > best_len && prefix_dot(ref, g->res[i]->address, &rest)) {
            best = g->res[i];
            best_len = len;
            best_rest = rest;
        }
    }
    if (!best)
        return kc_err_set(err, KC_ENOENT,
                          "reference '%s' names no resource of this manifest",
                          ref);
    *res = best;
    *output = kc_xstrdup(best_rest);
    return 0;
}

bool kc_graph_depends(const struct kc_graph *g, size_t a, size_t b)
{
    bool *seen;
    size_t *todo, n = 0;
    bool found = false;

    if (a >= g->n || b >= g->n)
        return false;
    seen = kc_xcalloc(g->n, sizeof(*seen));
    todo = kc_xcalloc(g->n + 1, sizeof(*todo));
    todo[n++] = a;
    seen[a] = true;
    while (n && !found) {
        struct kc_resource *r = g->res[todo[--n]];

        for (size_t e = 0; e < r->nedges; e++) {
            size_t j = r->edges[e];

            if (j == b)
                found = true;
            if (!seen[j]) {
                seen[j] = true;
                todo[n++] = j;
            }
        }
    }
    free(seen);
    free(todo);
    return found;
}
