/* reconcile/exec.c: the scheduler on the loop, and the op API providers
 * see (reconcile/resource.h). */
#include "reconcile/exec.h"

#include "reconcile/buf.h"
#include "reconcile/http.h"

struct kc_op {
    struct kc_engine *eng;
    struct kc_plan_item *item;
    enum kc_op_phase phase;
    struct kc_err err;
    bool in_start;
    bool deferred;
    int deferred_status;
    uint64_t started_ms;
    struct kc_value *observed; /* set by the callback */
    bool observed_set;
    struct kc_value *outputs;
    char *progress;
    struct op_persist *persists; /* kc_op_persist calls in flight */
    struct kc_state_write_req fwrite;
    /* replace: 0 first half, 1 second half */
    int step;
    char *old_id;    /* create-before-destroy: the object to delete */
    char *new_id;    /* ... and the one that replaces it */
    int fail_status; /* set while a failed item's state is being written */
    char *fail_msg;
    bool waiting; /* kc_op_waiting(op, true): not counted by --parallelism */
};

static void schedule(struct kc_engine *eng);
static void item_finish(struct kc_engine *eng, struct kc_plan_item *it,
                        int status, const char *msg);

const char *kc_action_name(enum kc_action a)
{
    switch (a) {
    case KC_ACTION_NOOP:
        return "noop";
    case KC_ACTION_CREATE:
        return "create";
    case KC_ACTION_UPDATE:
        return "update";
    case KC_ACTION_REPLACE:
        return "replace";
    case KC_ACTION_DELETE:
        return "delete";
    case KC_ACTION_READ:
        return "read";
    }
    return "?";
}

const struct kc_field *kc_resource_type_field(const struct kc_resource_type *t,
                                              const char *field)
{
    for (size_t i = 0; t->fields && t->fields[i].name; i++)
        if (strcmp(t->fields[i].name, field) == 0)
            return &t->fields[i];
    return NULL;
}

const char *kc_op_phase_name(enum kc_op_phase p)
{
    switch (p) {
    case KC_PHASE_OBSERVE:
        return "observe";
    case KC_PHASE_READ:
        return "read";
    case KC_PHASE_REVIEW:
        return "review";
    case KC_PHASE_CREATE:
        return "create";
    case KC_PHASE_UPDATE:
        return "update";
    case KC_PHASE_DELETE:
        return "delete";
    case KC_PHASE_LIST:
        return "list";
    }
    return "?";
}

/* --- the op API --- */

const char *kc_op_address(const struct kc_op *op)
{
    return op->item->res->address;
}

const char *kc_op_name(const struct kc_op *op)
{
    return op->item->res->name;
}

const struct kc_resource_type *kc_op_type(const struct kc_op *op)
{
    return op->item->type;
}

enum kc_op_phase kc_op_phase(const struct kc_op *op)
{
    return op->phase;
}

enum kc_action kc_op_action(const struct kc_op *op)
{
    return op->item->action;
}

struct kc_provider *kc_op_provider(const struct kc_op *op)
{
    return op->item->prov;
}

void *kc_op_provider_data(const struct kc_op *op)
{
    return op->item->prov ? op->item->prov->data : NULL;
}

uv_loop_t *kc_op_loop(const struct kc_op *op)
{
    return op->eng->loop;
}

struct kc_log *kc_op_log(const struct kc_op *op)
{
    return op->eng->log;
}

struct kc_http *kc_op_http(const struct kc_op *op)
{
    return op->eng->http;
}

struct kc_err *kc_op_err(struct kc_op *op)
{
    return &op->err;
}

const struct kc_value *kc_op_desired(const struct kc_op *op, const char *field)
{
    return op->item->desired ? kc_value_map_get(op->item->desired, field)
                             : NULL;
}

const struct kc_value *kc_op_desired_all(const struct kc_op *op)
{
    if (!op->item->desired)
        op->item->desired = kc_value_new_map();
    return op->item->desired;
}

static const struct kc_state_resource *op_rec(const struct kc_op *op)
{
    return kc_state_get(op->eng->state, op->item->res->address);
}

const struct kc_value *kc_op_prior(const struct kc_op *op, const char *field)
{
    const struct kc_state_resource *rec = op_rec(op);

    return rec && rec->attrs ? kc_value_map_get(rec->attrs, field) : NULL;
}

const struct kc_value *kc_op_prior_all(const struct kc_op *op)
{
    const struct kc_state_resource *rec = op_rec(op);

    return rec ? rec->attrs : NULL;
}

const struct kc_value *kc_op_prior_output(const struct kc_op *op,
                                          const char *name)
{
    const struct kc_state_resource *rec = op_rec(op);

    return rec && rec->outputs ? kc_value_map_get(rec->outputs, name) : NULL;
}

const struct kc_value *kc_op_observed(const struct kc_op *op, const char *field)
{
    const struct kc_value *m = op->observed ? op->observed : op->item->observed;

    return m ? kc_value_map_get(m, field) : NULL;
}

const char *kc_op_id(const struct kc_op *op)
{
    return op->item->id;
}

bool kc_op_changed(const struct kc_op *op, const char *field)
{
    const struct kc_plan_item *it = op->item;

    for (size_t i = 0; i < it->nchanges; i++)
        if (strcmp(it->changes[i].field, field) == 0)
            return it->changes[i].differs;
    return false;
}

void kc_op_set_observed(struct kc_op *op, struct kc_value *attrs)
{
    kc_value_free(op->observed);
    op->observed = attrs ? attrs : kc_value_new_map();
    op->observed_set = true;
}

void kc_op_set_id(struct kc_op *op, const char *id)
{
    free(op->item->id);
    op->item->id = id ? kc_xstrdup(id) : NULL;
}

void kc_op_set_output(struct kc_op *op, const char *name, struct kc_value *val)
{
    if (!op->outputs)
        op->outputs = kc_value_new_map();
    kc_value_map_set(op->outputs, name, val);
}

/* MSG with every secret the logger knows replaced by "[redacted]" (caller
 * frees). Errors quote what failed, and that may be a secret: a chain RPC URL
 * from ${env:} carries its API key in the path, and the HTTP module names the
 * URL of a request that failed. */
static char *redacted(const struct kc_engine *eng, const char *msg)
{
    struct kc_buf b;

    kc_buf_init(&b, 0);
    if (kc_log_redact(eng->log, msg, strlen(msg), &b) < 0) {
        kc_buf_release_wipe(&b);
        return kc_xstrdup("[message withheld: it could not be redacted]");
    }
    return kc_buf_detach(&b, NULL);
}

static void emit(struct kc_engine *eng, enum kc_event_type type,
                 const struct kc_plan_item *it, const char *what,
                 double elapsed, const char *msg)
{
    char *safe = msg ? redacted(eng, msg) : NULL;
    struct kc_event ev = { type, it->res->address, what, elapsed, safe };

    if (eng->on_event)
        eng->on_event(eng->event_data, &ev);
    free(safe);
}

static double since(const struct kc_engine *eng, uint64_t start_ms)
{
    return (double)(uv_now(eng->loop) - start_ms) / 1000.0;
}

void kc_op_progress(struct kc_op *op, const char *fmt, ...)
{
    va_list ap;
    char msg[256];

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation is fine */
    va_end(ap);
    emit(op->eng, KC_EVENT_PROGRESS, op->item, kc_op_phase_name(op->phase),
         since(op->eng, op->started_ms), msg);
}

void kc_op_warn(struct kc_op *op, const char *fmt, ...)
{
    struct kc_plan_item *it = op->item;
    va_list ap;
    char msg[512];

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation is fine */
    va_end(ap);
    kc_xgrow(&it->warnings, &it->capwarnings, it->nwarnings + 1,
             sizeof(*it->warnings));
    it->warnings[it->nwarnings++] = kc_xstrdup(msg);
}

void kc_op_require_consent(struct kc_op *op, const char *fmt, ...)
{
    struct kc_plan_item *it = op->item;
    va_list ap;
    char msg[512];

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation is fine */
    va_end(ap);
    free(it->consent);
    it->consent = kc_xstrdup(msg);
    it->consented = false;
    for (size_t i = 0; i < op->eng->nconsent; i++)
        if (strcmp(op->eng->consent[i], it->res->address) == 0)
            it->consented = true;
}

static bool op_may_write(const struct kc_op *op)
{
    return !op->eng->readonly && op->phase != KC_PHASE_OBSERVE &&
           op->phase != KC_PHASE_READ && op->phase != KC_PHASE_REVIEW &&
           op->phase != KC_PHASE_LIST;
}

const struct kc_state_intent *kc_op_intent(const struct kc_op *op)
{
    return kc_state_intent_get(op->eng->state, op->item->res->address);
}

int kc_op_intent_put(struct kc_op *op, const char *what,
                     const struct kc_value *data, struct kc_err *err)
{
    if (!op_may_write(op))
        return kc_err_set(err, KC_EPERM,
                          "'%s': an intent cannot be recorded during %s",
                          kc_op_address(op), kc_op_phase_name(op->phase));
    return kc_state_intent_put(op->eng->state, op->item->res->address, what,
                               data, err);
}

void kc_op_intent_clear(struct kc_op *op)
{
    if (op_may_write(op))
        kc_state_intent_clear(op->eng->state, op->item->res->address);
}

const struct kc_value *kc_op_generated(const struct kc_op *op, const char *key)
{
    return kc_state_generated_get(op->eng->state, key);
}

int kc_op_generated_put(struct kc_op *op, const char *key,
                        const struct kc_value *val, struct kc_err *err)
{
    if (!op_may_write(op))
        return kc_err_set(err, KC_EPERM,
                          "'%s': a generated value cannot be kept during %s",
                          kc_op_address(op), kc_op_phase_name(op->phase));
    return kc_state_generated_put(op->eng->state, key, val, err);
}

/* One kc_op_persist call: its own write request (several may be in flight
 * for one op, e.g. a contract's implementation and proxy deploys). An op
 * that completes first leaves it orphaned: the write finishes, the
 * callback is not called. */
struct op_persist {
    struct kc_state_write_req req;
    struct kc_op *op; /* NULL once the op completed */
    kc_op_cb cb;
    struct op_persist *next;
};

static void on_persist(struct kc_state_write_req *req, int status)
{
    struct op_persist *p = kc_container_of(req, struct op_persist, req);
    struct kc_op *op = p->op;

    if (op) {
        struct op_persist **pp = &op->persists;

        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        if (status < 0)
            op->err = req->err;
        p->cb(op, status);
    }
    free(p);
}

int kc_op_persist(struct kc_op *op, kc_op_cb cb)
{
    struct op_persist *p;

    if (!op_may_write(op))
        return kc_err_set(&op->err, KC_EPERM,
                          "'%s': the state cannot be written during %s",
                          kc_op_address(op), kc_op_phase_name(op->phase));
    p = kc_xcalloc(1, sizeof(*p));
    p->op = op;
    p->cb = cb;
    if (kc_state_write_async(op->eng->state, op->eng->loop, &p->req, on_persist,
                             &op->err) < 0) {
        free(p);
        return op->err.code;
    }
    p->next = op->persists;
    op->persists = p;
    return 0;
}

bool kc_op_is_canceled(const struct kc_op *op)
{
    return op->eng->canceled;
}

/* --- evaluation of desired values --- */

struct resolve_ctx {
    struct kc_engine *eng;
    struct kc_plan_item *it;
};

/* The value of output OUTPUT of DEP as known now. */
static int dep_value(struct kc_engine *eng, struct kc_plan_item *dep,
                     const char *ref, const char *output, struct kc_value **out,
                     struct kc_err *err)
{
    const struct kc_value *v = NULL;
    bool pending;

    *out = NULL;
    /* At refresh time a dependency that will be made or remade has no
     * outputs yet; at apply time it has finished by now. */
    pending = eng->phase == 1 && (dep->action == KC_ACTION_CREATE ||
                                  dep->action == KC_ACTION_REPLACE ||
                                  dep->action == KC_ACTION_READ);
    if (dep->st == KC_ITEM_FAILED || dep->st == KC_ITEM_SKIPPED)
        return kc_err_set(err, KC_ENOENT, "'%s' did not finish", ref);
    /* Observes run at once, before their dependencies are planned: they
     * see the dependency's last known outputs (from the state, or observed
     * just now), as an observe needs them to find its object (an allowlist
     * entry needs the contract's address). Values are bound again once the
     * dependency is planned (settle). */
    if (eng->phase == 1 && dep->st != KC_ITEM_DONE) {
        v = dep->outputs ? kc_value_map_get(dep->outputs, output) : NULL;
        if (v && !(v->type == KC_VALUE_STRING && kc_value_str(v) &&
                   strncmp(kc_value_str(v), "(sensitive:", 11) == 0)) {
            *out = kc_value_dup(v);
            return 0;
        }
        pending = true;
    }
    if (pending) {
        *out = kc_value_new_unknown(ref);
        return 0;
    }
    if (dep->outputs)
        v = kc_value_map_get(dep->outputs, output);
    if (!v && dep->desired)
        v = kc_value_map_get(dep->desired, output);
    if (v && v->type == KC_VALUE_STRING && kc_value_str(v) &&
        strncmp(kc_value_str(v), "(sensitive:", 11) == 0) {
        /* Only the state's digest is known: the provider's observe did not
         * read the value again. Never pass a digest on as the value. */
        if (eng->phase == 1) {
            *out = kc_value_new_unknown(ref);
            return 0;
        }
        return kc_err_set(err, KC_ENOENT,
                          "output '%s' of '%s' is sensitive and was not read "
                          "again by observe",
                          output, dep->res->address);
    }
    if (!v) {
        if (eng->phase == 1 && dep->action == KC_ACTION_UPDATE) {
            *out = kc_value_new_unknown(ref);
            return 0;
        }
        return kc_err_set(err, KC_ENOENT, "'%s' has no output '%s'",
                          dep->res->address, output);
    }
    *out = kc_value_dup(v);
    return 0;
}

static int resolve(void *data, const char *ref, struct kc_value **out,
                   struct kc_err *err)
{
    struct resolve_ctx *ctx = data;
    struct kc_resource *res;
    char *output = NULL;
    int ret;

    ret = kc_graph_resolve_ref(ctx->eng->plan->graph, ref, &res, &output, err);
    if (ret == 0) {
        if (res == ctx->it->res)
            ret = kc_err_set(err, KC_ECYCLE, "'%s' refers to itself", ref);
        else
            ret = dep_value(ctx->eng, &ctx->eng->plan->items[res->index], ref,
                            output, out, err);
    }
    free(output);
    return ret;
}

/* KC_FIELD_OBSERVED fields: the world's value stands as the desired one. */
static void merge_observed(const struct kc_plan_item *it, struct kc_value *map)
{
    for (size_t i = 0; it->type && it->observed && it->type->fields[i].name;
         i++) {
        const struct kc_field *f = &it->type->fields[i];
        const struct kc_value *o = kc_value_map_get(it->observed, f->name);

        if ((f->flags & KC_FIELD_OBSERVED) && o)
            kc_value_map_set(map, f->name, kc_value_dup(o));
    }
}

static int eval_desired(struct kc_engine *eng, struct kc_plan_item *it,
                        struct kc_err *err)
{
    struct resolve_ctx ctx = { eng, it };
    struct kc_value *map = kc_value_new_map();
    struct kc_resource *r = it->res;

    for (size_t i = 0; i < r->nattrs; i++) {
        const struct kc_attr *a = &r->attrs[i];
        const struct kc_field *f = kc_resource_type_field(it->type, a->field);
        struct kc_value *v = NULL;
        int ret = 0;

        if (a->value) {
            v = kc_value_dup(a->value);
        } else if (a->ref_addr) {
            char *ref = kc_xasprintf("%s.%s", a->ref_addr, a->ref_output);

            ret = resolve(&ctx, ref, &v, err);
            free(ref);
        } else if (a->node && eng->eval_node) {
            ret =
                eng->eval_node(eng->eval_data, a->node, resolve, &ctx, &v, err);
        } else {
            ret =
                kc_err_set(err, KC_ENOTSUP, "no evaluator for manifest values");
        }
        if (ret < 0) {
            kc_err_prefix(err, "'%s' attribute '%s'", r->address, a->field);
            kc_value_free(map);
            return ret;
        }
        if (f && (f->flags & KC_FIELD_SENSITIVE) && v->type == KC_VALUE_STRING)
            kc_value_set_sensitive(v);
        kc_value_map_set(map, a->field, v);
    }
    merge_observed(it, map);
    kc_value_free(it->desired);
    it->desired = map;
    return 0;
}

/* --- preparation --- */

static bool is_target(const struct kc_engine *eng, const char *addr)
{
    for (size_t i = 0; i < eng->ntargets; i++)
        if (strcmp(eng->targets[i], addr) == 0)
            return true;
    return false;
}

static int add_orphans(struct kc_engine *eng, struct kc_graph *g,
                       struct kc_err *err)
{
    size_t n = kc_state_count(eng->state);

    for (size_t i = 0; i < n; i++) {
        const char *addr = kc_state_address(eng->state, i);
        const struct kc_state_resource *rec = kc_state_get(eng->state, addr);
        size_t klen = strlen(rec->kind);
        struct kc_resource *r;
        int ret;

        if (kc_graph_find(g, addr))
            continue;
        if (strncmp(addr, rec->kind, klen) != 0 || addr[klen] != '.')
            return kc_err_set(err, KC_ESTATE,
                              "state record '%s' does not start with its "
                              "kind '%s'",
                              addr, rec->kind);
        ret = kc_graph_add(g, rec->kind, addr + klen + 1, &r, err);
        if (ret < 0)
            return ret;
        r->orphan = true;
    }
    /* Orphans keep the dependencies recorded in the state, among orphans,
     * so they are deleted in reverse order. */
    for (size_t i = 0; i < kc_graph_count(g); i++) {
        struct kc_resource *r = kc_graph_at(g, i);
        const struct kc_state_resource *rec;

        if (!r->orphan)
            continue;
        rec = kc_state_get(eng->state, r->address);
        for (size_t d = 0; d < rec->ndeps; d++) {
            struct kc_resource *dep = kc_graph_find(g, rec->deps[d]);

            if (dep && dep != r)
                kc_resource_add_dep(r, rec->deps[d]);
        }
    }
    return 0;
}

static void select_targets(struct kc_engine *eng, struct kc_plan *plan)
{
    struct kc_graph *g = plan->graph;

    if (!eng->ntargets)
        return;
    for (size_t i = 0; i < plan->n; i++) {
        bool keep = false;

        for (size_t t = 0; t < plan->n && !keep; t++) {
            if (!is_target(eng, plan->items[t].res->address))
                continue;
            keep = t == i || (plan->destroy ? kc_graph_depends(g, i, t)
                                            : kc_graph_depends(g, t, i));
        }
        plan->items[i].excluded = !keep;
    }
}

static int init_providers(struct kc_engine *eng, struct kc_plan *plan,
                          struct kc_err *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        struct kc_plan_item *it = &plan->items[i];
        struct kc_provider *p = NULL;

        if (it->excluded)
            continue;
        for (size_t k = 0; k < eng->nprovs; k++)
            if (eng->provs[k]->type == it->ptype)
                p = eng->provs[k];
        if (!p) {
            int ret;

            p = kc_xcalloc(1, sizeof(*p));
            p->type = it->ptype;
            p->config = eng->providers
                            ? kc_value_map_get(eng->providers, p->type->name)
                            : NULL;
            p->deployment = eng->deployment;
            p->manifest_dir = eng->manifest_dir;
            p->loop = eng->loop;
            p->log = eng->log;
            p->http = eng->http;
            ret = p->type->init ? p->type->init(p, err) : 0;
            if (ret < 0) {
                free(p);
                return kc_err_prefix(err, "provider '%s'", it->ptype->name);
            }
            eng->provs = kc_xrealloc(eng->provs,
                                     (eng->nprovs + 1) * sizeof(*eng->provs));
            eng->provs[eng->nprovs++] = p;
        }
        it->prov = p;
    }
    return 0;
}

int kc_engine_prepare(struct kc_engine *eng, struct kc_graph *g, bool destroy,
                      struct kc_plan **out, struct kc_err *err)
{
    struct kc_plan *plan = NULL;
    int ret;

    *out = NULL;
    if (!eng->parallelism)
        eng->parallelism = 10;
    ret = add_orphans(eng, g, err);
    if (ret == 0)
        ret = kc_graph_sort(g, err);
    if (ret < 0) {
        kc_graph_free(g);
        return ret;
    }
    plan = kc_plan_new(g);
    plan->destroy = destroy;
    plan->lineage = kc_xstrdup(kc_state_lineage(eng->state));
    plan->serial = kc_state_serial(eng->state);
    plan->deployment = eng->deployment ? kc_xstrdup(eng->deployment) : NULL;
    plan->targets = kc_xcalloc(eng->ntargets + 1, sizeof(*plan->targets));
    for (size_t i = 0; i < eng->ntargets; i++)
        plan->targets[plan->ntargets++] = kc_xstrdup(eng->targets[i]);
    for (size_t i = 0; i < eng->ntargets; i++) {
        if (!kc_graph_find(g, eng->targets[i])) {
            ret = kc_err_set(err, KC_ENOENT,
                             "--target '%s' is not a resource of this "
                             "manifest or state",
                             eng->targets[i]);
            goto out;
        }
    }
    for (size_t i = 0; i < plan->n; i++) {
        struct kc_plan_item *it = &plan->items[i];
        const struct kc_state_resource *rec;

        ret = kc_registry_kind(eng->reg, it->res->kind, &it->type, &it->ptype,
                               err);
        if (ret < 0) {
            kc_err_prefix(err, "'%s'", it->res->address);
            goto out;
        }
        for (size_t a = 0; a < it->res->nattrs; a++) {
            const struct kc_field *f =
                kc_resource_type_field(it->type, it->res->attrs[a].field);

            if (!f || (f->flags & KC_FIELD_COMPUTED)) {
                const struct kc_node *n = it->res->attrs[a].node;

                ret = kc_err_set(err, KC_EINVAL,
                                 "'%s': kind '%s' has no %sfield '%s'",
                                 it->res->address, it->res->kind,
                                 f ? "settable " : "", it->res->attrs[a].field);
                if (n)
                    kc_err_prefix(err, "%s:%d:%d", n->pos.file, n->pos.line,
                                  n->pos.col);
                goto out;
            }
        }
        rec = kc_state_get(eng->state, it->res->address);
        it->in_state = rec != NULL;
        if (rec) {
            if (strcmp(rec->kind, it->res->kind) != 0) {
                ret = kc_err_set(err, KC_ESTATE, "'%s' is a '%s' in the state",
                                 it->res->address, rec->kind);
                goto out;
            }
            it->id = rec->provider_id ? kc_xstrdup(rec->provider_id) : NULL;
            it->outputs = rec->outputs ? kc_value_dup(rec->outputs) : NULL;
        }
    }
    select_targets(eng, plan);
    ret = init_providers(eng, plan, err);
out:
    if (ret < 0) {
        kc_plan_free(plan);
        return ret;
    }
    *out = plan;
    return 0;
}

/* --- the scheduler --- */

static size_t running_of(const struct kc_engine *eng,
                         const struct kc_provider_type *pt,
                         const struct kc_resource_type *t)
{
    size_t n = 0;

    for (size_t i = 0; i < eng->plan->n; i++) {
        const struct kc_plan_item *it = &eng->plan->items[i];

        if (it->st == KC_ITEM_RUNNING &&
            ((pt && it->ptype == pt) || (t && it->type == t)))
            n++;
    }
    return n;
}

static bool has_work(const struct kc_engine *eng, const struct kc_plan_item *it)
{
    if (it->excluded)
        return false;
    if (eng->phase == 1)
        return true;
    return it->action != KC_ACTION_NOOP;
}

static bool is_delete(const struct kc_plan_item *it)
{
    return it->action == KC_ACTION_DELETE;
}

/* 1: ready; 0: wait; -1: skip (a dependency failed). */
static int readiness(const struct kc_engine *eng, const struct kc_plan_item *it)
{
    const struct kc_plan *plan = eng->plan;
    const struct kc_resource *r = it->res;
    int ready = 1;

    /* Observing needs no dependency (values are bound when they are
     * planned, in settle()); reading a data source needs its inputs. */
    if (eng->phase == 1 && !(it->type->flags & KC_KIND_DATA))
        return 1;
    if (eng->phase == 2 && is_delete(it)) {
        for (size_t e = 0; e < r->nredges; e++) {
            const struct kc_plan_item *d = &plan->items[r->redges[e]];

            if (!has_work(eng, d) || !is_delete(d))
                continue;
            if (d->st == KC_ITEM_FAILED || d->st == KC_ITEM_SKIPPED)
                return -1;
            if (d->st != KC_ITEM_DONE)
                ready = 0;
        }
        return ready;
    }
    for (size_t e = 0; e < r->nedges; e++) {
        const struct kc_plan_item *d = &plan->items[r->edges[e]];

        if (!has_work(eng, d) || (eng->phase == 2 && is_delete(d)))
            continue;
        if (d->st == KC_ITEM_FAILED || d->st == KC_ITEM_SKIPPED)
            return -1;
        /* A finished dependency releases its dependents at once; its
         * record reaches the disk meanwhile (the write is coalesced). */
        if (d->st != KC_ITEM_DONE && !d->released)
            ready = 0;
    }
    return ready;
}

static struct kc_op *op_new(struct kc_engine *eng, struct kc_plan_item *it,
                            enum kc_op_phase phase)
{
    struct kc_op *op = kc_xcalloc(1, sizeof(*op));

    op->eng = eng;
    op->item = it;
    op->phase = phase;
    op->started_ms = uv_now(eng->loop);
    it->op = op;
    return op;
}

static void op_free(struct kc_op *op)
{
    if (!op)
        return;
    kc_value_free(op->observed);
    kc_value_free(op->outputs);
    free(op->progress);
    free(op->old_id);
    free(op->new_id);
    free(op->fail_msg);
    for (struct op_persist *p = op->persists; p; p = p->next)
        p->op = NULL; /* its callback is dropped (see struct op_persist) */
    op->item->op = NULL;
    free(op);
}

/* Calls the callback of OP's phase. < 0: nothing started (err set). */
static int op_call(struct kc_op *op)
{
    const struct kc_resource_type *t = op->item->type;
    kc_op_fn fn = NULL;
    int ret;

    switch (op->phase) {
    case KC_PHASE_OBSERVE:
        fn = t->observe;
        break;
    case KC_PHASE_READ:
        fn = t->read;
        break;
    case KC_PHASE_CREATE:
        fn = t->create;
        break;
    case KC_PHASE_UPDATE:
        fn = t->update;
        break;
    case KC_PHASE_DELETE:
        fn = t->delete;
        break;
    case KC_PHASE_LIST:
        fn = t->list;
        break;
    case KC_PHASE_REVIEW:
        break;
    }
    if (!fn)
        return kc_err_set(&op->err, KC_ENOTSUP, "kind '%s' cannot %s", t->kind,
                          kc_op_phase_name(op->phase));
    kc_err_clear(&op->err);
    op->in_start = true;
    ret = fn(op);
    op->in_start = false;
    if (ret < 0) {
        if (op->deferred)
            KC_BUG("'%s': %s returned %d after kc_op_done", t->kind,
                   kc_op_phase_name(op->phase), ret);
        if (!op->err.code)
            kc_err_set(&op->err, ret, "%s", kc_strerror(ret));
    }
    return ret;
}

static void on_kick(uv_timer_t *t);

static void arm_kick(struct kc_engine *eng)
{
    int ret;

    if (eng->kick_armed)
        return;
    ret = uv_timer_start(&eng->kick, on_kick, 0, 0);
    if (ret < 0)
        KC_BUG("uv_timer_start: %s", uv_strerror(ret));
    eng->kick_armed = true;
}

static void op_complete(struct kc_op *op, int status);

void kc_op_waiting(struct kc_op *op, bool waiting)
{
    struct kc_engine *eng = op->eng;

    if (op->deferred || op->waiting == waiting)
        return;
    op->waiting = waiting;
    if (waiting) {
        eng->nwaiting++;
        if (eng->nwaiting > eng->max_waiting)
            eng->max_waiting = eng->nwaiting;
        arm_kick(eng); /* a slot of --parallelism is free */
    } else {
        eng->nwaiting--;
    }
}

void kc_op_done(struct kc_op *op, int status)
{
    if (op->deferred)
        KC_BUG("kc_op_done called twice for '%s'", kc_op_address(op));
    kc_op_waiting(op, false);
    if (op->in_start) {
        op->deferred = true;
        op->deferred_status = status;
        kc_xgrow(&op->eng->deferred, &op->eng->capdeferred,
                 op->eng->ndeferred + 1, sizeof(*op->eng->deferred));
        op->eng->deferred[op->eng->ndeferred++] = op;
        arm_kick(op->eng);
        return;
    }
    op_complete(op, status);
}

void kc_op_fail(struct kc_op *op, int code, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof(op->err.msg)];

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation is fine */
    va_end(ap);
    kc_err_set(&op->err, code, "%s", msg);
    kc_op_done(op, code);
}

static void on_kick(uv_timer_t *t)
{
    struct kc_engine *eng = kc_container_of(t, struct kc_engine, kick);

    eng->kick_armed = false;
    while (eng->ndeferred) {
        struct kc_op *op = eng->deferred[0];

        memmove(eng->deferred, eng->deferred + 1,
                (eng->ndeferred - 1) * sizeof(*eng->deferred));
        eng->ndeferred--;
        op->deferred = false;
        op_complete(op, op->deferred_status);
    }
    schedule(eng);
}

static void start_op(struct kc_engine *eng, struct kc_op *op)
{
    int ret = op_call(op);

    if (ret < 0) {
        /* Nothing started: complete on the next turn, like any failure. */
        op->deferred = true;
        op->deferred_status = ret;
        kc_xgrow(&eng->deferred, &eng->capdeferred, eng->ndeferred + 1,
                 sizeof(*eng->deferred));
        eng->deferred[eng->ndeferred++] = op;
        arm_kick(eng);
    }
}

static void review(struct kc_engine *eng, struct kc_plan_item *it)
{
    struct kc_op *op;

    if (!it->type->review || it->action == KC_ACTION_NOOP ||
        it->action == KC_ACTION_READ)
        return;
    op = kc_xcalloc(1, sizeof(*op));
    op->eng = eng;
    op->item = it;
    op->phase = KC_PHASE_REVIEW;
    it->type->review(op);
    free(op);
}

static void refresh_start(struct kc_engine *eng, struct kc_plan_item *it)
{
    const struct kc_state_resource *rec =
        kc_state_get(eng->state, it->res->address);
    struct kc_err err = { 0 };
    bool data = (it->type->flags & KC_KIND_DATA) != 0;
    struct kc_op *op;

    if (eng->destroy || it->res->orphan) {
        kc_value_free(it->desired);
        it->desired = rec && rec->attrs ? kc_value_dup(rec->attrs) : NULL;
    } else if (eval_desired(eng, it, &err) < 0) {
        it->st = KC_ITEM_RUNNING;
        item_finish(eng, it, err.code, err.msg);
        return;
    }
    if (data && (eng->destroy || it->res->orphan)) {
        /* Nothing to delete for a data source: forget its record. */
        it->st = KC_ITEM_RUNNING;
        kc_plan_diff(it, NULL, kc_state_salt(eng->state), eng->destroy);
        item_finish(eng, it, 0, NULL);
        return;
    }
    if (data && kc_value_has_unknown(it->desired)) {
        it->st = KC_ITEM_RUNNING;
        kc_plan_diff(it, NULL, kc_state_salt(eng->state), false);
        item_finish(eng, it, 0, NULL);
        return;
    }
    op = op_new(eng, it, data ? KC_PHASE_READ : KC_PHASE_OBSERVE);
    it->st = KC_ITEM_RUNNING;
    eng->running++;
    emit(eng, KC_EVENT_STARTED, it, kc_op_phase_name(op->phase), 0, NULL);
    start_op(eng, op);
}

static void refresh_done(struct kc_engine *eng, struct kc_op *op, int status)
{
    struct kc_plan_item *it = op->item;
    const struct kc_state_resource *rec =
        kc_state_get(eng->state, it->res->address);

    it->elapsed = since(eng, op->started_ms);
    if (status < 0) {
        char *msg =
            kc_xasprintf("%s: %s", kc_op_phase_name(op->phase), op->err.msg);

        item_finish(eng, it, status, msg);
        free(msg);
        return;
    }
    kc_value_free(it->observed);
    it->observed = op->observed;
    op->observed = NULL;
    it->exists = op->observed_set || op->phase == KC_PHASE_READ;
    if (op->outputs) {
        kc_value_free(it->outputs);
        it->outputs = op->outputs;
        op->outputs = NULL;
    } else if (!it->exists) {
        kc_value_free(it->outputs);
        it->outputs = NULL;
    }
    if (op->phase == KC_PHASE_READ) {
        kc_plan_diff(it, rec ? rec->attrs : NULL, kc_state_salt(eng->state),
                     eng->destroy);
        item_finish(eng, it, 0, NULL);
        return;
    }
    it->st = KC_ITEM_OBSERVED;
}

/* Refresh: an observed item whose dependencies are planned has its values
 * bound again and is diffed, in dependency order. True if any progressed. */
static bool settle(struct kc_engine *eng)
{
    const char *salt = kc_state_salt(eng->state);
    bool progress = false;

    for (size_t k = 0; k < eng->plan->n; k++) {
        struct kc_plan_item *it =
            &eng->plan->items[kc_graph_order(eng->plan->graph, k)->index];
        const struct kc_state_resource *rec;
        struct kc_err err = { 0 };
        int ready = 1;

        if (it->st != KC_ITEM_OBSERVED)
            continue;
        for (size_t e = 0; e < it->res->nedges && ready > 0; e++) {
            const struct kc_plan_item *d = &eng->plan->items[it->res->edges[e]];

            if (d->excluded)
                continue;
            if (d->st == KC_ITEM_FAILED || d->st == KC_ITEM_SKIPPED)
                ready = -1;
            else if (d->st != KC_ITEM_DONE)
                ready = 0;
        }
        if (ready == 0)
            continue;
        progress = true;
        it->st = KC_ITEM_RUNNING;
        if (ready < 0) {
            it->st = KC_ITEM_SKIPPED;
            free(it->error);
            it->error = kc_xstrdup("a dependency failed");
            emit(eng, KC_EVENT_SKIPPED, it, "observe", it->elapsed, it->error);
            continue;
        }
        if (!eng->destroy && !it->res->orphan &&
            eval_desired(eng, it, &err) < 0) {
            item_finish(eng, it, err.code, err.msg);
            continue;
        }
        rec = kc_state_get(eng->state, it->res->address);
        kc_plan_diff(it, rec ? rec->attrs : NULL, salt, eng->destroy);
        if (!eng->readonly)
            review(eng, it);
        item_finish(eng, it, 0, NULL);
    }
    return progress;
}

/* The record of a finished item, put in the state. */
static int record_put(struct kc_engine *eng, struct kc_plan_item *it,
                      struct kc_err *err)
{
    struct kc_value *attrs = kc_value_new_map();
    const char **deps = kc_xcalloc(it->res->ndeps + 1, sizeof(*deps));
    struct kc_state_resource rec = { 0 };
    int ret;

    for (size_t i = 0; it->desired && i < kc_value_map_len(it->desired); i++)
        kc_value_map_set(attrs, kc_value_map_key(it->desired, i),
                         kc_value_dup(kc_value_map_val(it->desired, i)));
    merge_observed(it, attrs); /* as created or updated just now */
    for (size_t i = 0; i < it->res->ndeps; i++)
        deps[i] = it->res->deps[i];
    rec.kind = it->res->kind;
    rec.provider_id = it->id;
    rec.attrs = attrs;
    rec.outputs = it->outputs;
    rec.deps = deps;
    rec.ndeps = it->res->ndeps;
    ret = kc_state_put(eng->state, it->res->address, &rec, err);
    kc_value_free(attrs);
    free(deps);
    return ret;
}

static void on_item_written(struct kc_state_write_req *req, int status)
{
    struct kc_op *op = req->data;
    struct kc_engine *eng = op->eng;
    struct kc_plan_item *it = op->item;
    double el = since(eng, op->started_ms);
    int fail = op->fail_status;
    char *msg = op->fail_msg;

    op->fail_msg = NULL;
    op_free(op);
    it->elapsed = el;
    it->st = KC_ITEM_RUNNING;
    if (fail < 0) {
        item_finish(eng, it, fail, msg);
    } else if (status < 0) {
        char *m = kc_xasprintf("writing the state: %s", req->err.msg);

        item_finish(eng, it, status, m);
        free(m);
    } else {
        item_finish(eng, it, 0, NULL);
    }
    free(msg);
    schedule(eng);
}

/* Writes the state and then finishes OP's item: with FAIL < 0 as failed
 * (MSG), else as done. */
static void write_then_finish(struct kc_engine *eng, struct kc_op *op, int fail,
                              const char *msg)
{
    struct kc_plan_item *it = op->item;
    struct kc_err err = { 0 };
    int ret;

    op->fail_status = fail;
    op->fail_msg = msg ? kc_xstrdup(msg) : NULL;
    op->fwrite.data = op;
    ret = kc_state_write_async(eng->state, eng->loop, &op->fwrite,
                               on_item_written, &err);
    if (ret < 0) {
        char *m = fail < 0 ? kc_xstrdup(msg)
                           : kc_xasprintf("writing the state: %s", err.msg);

        op_free(op);
        item_finish(eng, it, fail < 0 ? fail : ret, m);
        free(m);
    }
}

static void apply_step(struct kc_engine *eng, struct kc_op *op);

static void on_half_written(struct kc_state_write_req *req, int status)
{
    struct kc_op *op = req->data;
    struct kc_engine *eng = op->eng;

    if (status < 0) {
        char *m = kc_xasprintf("writing the state: %s", req->err.msg);
        struct kc_plan_item *it = op->item;

        eng->running--;
        op_free(op);
        item_finish(eng, it, status, m);
        free(m);
        schedule(eng);
        return;
    }
    apply_step(eng, op);
}

/* Records what OP finished and writes the state; the item finishes when
 * the state is on disk. */
static void apply_record(struct kc_engine *eng, struct kc_op *op)
{
    struct kc_plan_item *it = op->item;
    struct kc_err err = { 0 };

    if (it->action == KC_ACTION_DELETE) {
        kc_state_remove(eng->state, it->res->address);
        kc_state_intent_clear(eng->state, it->res->address);
    } else if (record_put(eng, it, &err) < 0) {
        char *msg = kc_xasprintf("recording in the state: %s", err.msg);

        op_free(op);
        item_finish(eng, it, err.code, msg);
        free(msg);
        return;
    }
    it->released = true;
    write_then_finish(eng, op, 0, NULL);
}

static void apply_done(struct kc_engine *eng, struct kc_op *op, int status)
{
    struct kc_plan_item *it = op->item;
    bool cbd = (it->type->flags & KC_KIND_CREATE_BEFORE_DESTROY) != 0;

    if (status < 0) {
        char *msg =
            kc_xasprintf("%s: %s", kc_op_phase_name(op->phase), op->err.msg);

        /* Create-before-destroy: the new object exists even though the old
         * one could not be deleted: keep the new one. */
        if (op->new_id)
            kc_op_set_id(op, op->new_id);
        /* A create that failed after the object got an id is recorded, so
         * the next run finds it instead of making another. */
        if (it->id && op->phase == KC_PHASE_CREATE) {
            struct kc_err err = { 0 };

            (void)record_put(eng, it, &err); /* best effort, next run heals */
        }
        write_then_finish(eng, op, status, msg);
        free(msg);
        return;
    }
    if (op->observed) {
        kc_value_free(it->observed);
        it->observed = op->observed;
        op->observed = NULL;
    }
    if (op->outputs) {
        kc_value_free(it->outputs);
        it->outputs = op->outputs;
        op->outputs = NULL;
    }
    if (it->action == KC_ACTION_REPLACE && op->step == 0) {
        struct kc_err err = { 0 };

        op->step = 1;
        if (cbd) {
            /* The new object exists: record it, then delete the old one by
             * its id. */
            op->new_id = it->id ? kc_xstrdup(it->id) : NULL;
            (void)record_put(eng, it, &err); /* best effort */
            kc_op_set_id(op, op->old_id);
        } else {
            /* The old object is gone, and so is its record. */
            kc_state_remove(eng->state, it->res->address);
        }
        op->fwrite.data = op;
        if (kc_state_write_async(eng->state, eng->loop, &op->fwrite,
                                 on_half_written, &err) < 0)
            apply_step(eng, op); /* the record lands with the next write */
        return;
    }
    if (it->action == KC_ACTION_REPLACE && cbd)
        kc_op_set_id(op, op->new_id);
    if (op->phase == KC_PHASE_DELETE && it->action == KC_ACTION_DELETE) {
        kc_value_free(it->outputs);
        it->outputs = NULL;
    }
    apply_record(eng, op);
}

static void list_done(struct kc_engine *eng, struct kc_op *op, int status);

static void op_complete(struct kc_op *op, int status)
{
    struct kc_engine *eng = op->eng;

    if (op->phase == KC_PHASE_LIST) {
        list_done(eng, op, status);
    } else if (eng->phase == 1) {
        eng->running--;
        refresh_done(eng, op, status);
        op_free(op);
    } else {
        /* The second half of a replace keeps the slot. */
        if (!(op->item->action == KC_ACTION_REPLACE && op->step == 0 &&
              status == 0))
            eng->running--;
        apply_done(eng, op, status);
    }
    schedule(eng);
}

/* Starts the next callback of an apply op (replace has two). */
static void apply_step(struct kc_engine *eng, struct kc_op *op)
{
    struct kc_plan_item *it = op->item;
    bool cbd = (it->type->flags & KC_KIND_CREATE_BEFORE_DESTROY) != 0;

    switch (it->action) {
    case KC_ACTION_CREATE:
        /* Absent from the world: an id left in the state is stale. */
        op->phase = KC_PHASE_CREATE;
        kc_op_set_id(op, NULL);
        break;
    case KC_ACTION_UPDATE:
        op->phase = KC_PHASE_UPDATE;
        break;
    case KC_ACTION_READ:
        op->phase = KC_PHASE_READ;
        break;
    case KC_ACTION_DELETE:
        op->phase = KC_PHASE_DELETE;
        break;
    case KC_ACTION_REPLACE:
        if (op->step == 0)
            op->phase = cbd ? KC_PHASE_CREATE : KC_PHASE_DELETE;
        else
            op->phase = cbd ? KC_PHASE_DELETE : KC_PHASE_CREATE;
        if (op->step == 0 && cbd) {
            free(op->old_id);
            op->old_id = it->id ? kc_xstrdup(it->id) : NULL;
        }
        if (op->phase == KC_PHASE_CREATE) {
            /* The create starts from nothing. */
            kc_op_set_id(op, NULL);
            kc_value_free(it->observed);
            it->observed = NULL;
        }
        break;
    case KC_ACTION_NOOP:
        KC_BUG("apply_step on a noop");
    }
    if (op->step == 0)
        emit(eng, KC_EVENT_STARTED, it, kc_action_name(it->action), 0, NULL);
    start_op(eng, op);
}

static void apply_start(struct kc_engine *eng, struct kc_plan_item *it)
{
    const struct kc_state_resource *rec =
        kc_state_get(eng->state, it->res->address);
    struct kc_err err = { 0 };
    struct kc_op *op;

    it->st = KC_ITEM_RUNNING;
    if (it->action != KC_ACTION_DELETE) {
        /* Late binding: the dependencies have finished, so their outputs
         * are known now. */
        if (eval_desired(eng, it, &err) < 0) {
            item_finish(eng, it, err.code, err.msg);
            return;
        }
        for (size_t i = 0; i < kc_value_map_len(it->desired); i++) {
            const struct kc_value *v = kc_value_map_val(it->desired, i);

            if (kc_value_has_unknown(v)) {
                char *s = kc_value_render(v);
                char *msg = kc_xasprintf("attribute '%s' is still unknown "
                                         "after its dependencies finished: %s",
                                         kc_value_map_key(it->desired, i), s);

                item_finish(eng, it, KC_EINVAL, msg);
                free(s);
                free(msg);
                return;
            }
        }
        if (it->action == KC_ACTION_UPDATE || it->action == KC_ACTION_REPLACE)
            kc_plan_diff(it, rec ? rec->attrs : NULL, kc_state_salt(eng->state),
                         false);
    }
    op = op_new(eng, it, KC_PHASE_OBSERVE);
    if (it->action == KC_ACTION_NOOP) {
        /* Bound values made the change vanish: record, call nothing. */
        apply_record(eng, op);
        return;
    }
    if (it->action == KC_ACTION_DELETE &&
        (!it->exists || (it->type->flags & KC_KIND_RETAIN))) {
        /* Already gone, or cannot be deleted: only forgotten. */
        if (it->exists)
            kc_log(eng->log, KC_LOG_WARN, "engine",
                   "'%s' cannot be deleted: left in place and removed from "
                   "the state",
                   it->res->address);
        it->forgotten = true;
        emit(eng, KC_EVENT_STARTED, it, "forget", 0, NULL);
        apply_record(eng, op);
        return;
    }
    eng->running++;
    apply_step(eng, op);
}

static void item_finish(struct kc_engine *eng, struct kc_plan_item *it,
                        int status, const char *msg)
{
    const char *what = eng->phase == 1 ? "observe"
                       : it->forgotten ? "forget"
                                       : kc_action_name(it->action);

    if (status < 0) {
        it->st = KC_ITEM_FAILED;
        free(it->error);
        it->error = redacted(eng, msg ? msg : kc_strerror(status));
        emit(eng, KC_EVENT_FAILED, it, what, it->elapsed, it->error);
    } else {
        it->st = KC_ITEM_DONE;
        emit(eng, KC_EVENT_FINISHED, it, what, it->elapsed, NULL);
    }
}

static void on_final_written(struct kc_state_write_req *req, int status)
{
    struct kc_engine *eng = kc_container_of(req, struct kc_engine, final_write);

    if (status < 0 && eng->status == 0)
        eng->status = kc_err_set(&eng->err, status, "writing the state: %s",
                                 req->err.msg);
    eng->finishing = false;
    eng->phase = 0;
    eng->cb(eng, eng->status);
}

static bool same(const struct kc_value *stored, const struct kc_value *v,
                 const char *salt)
{
    struct kc_value *sv = kc_plan_stored_form(v, salt);
    bool eq = (!stored && !sv) || (stored && sv && kc_value_equal(stored, sv));

    kc_value_free(sv);
    return eq;
}

/* After apply: noop items that exist are recorded as they are now (an
 * adopted object, new outputs), without calling any provider. A write-ahead
 * intent left for such an item by a crashed run is resolved: the object it
 * guarded exists and matches the manifest (e.g. an instance that a killed
 * apply launched, adopted by its ownership tags). */
static bool record_noops(struct kc_engine *eng)
{
    const char *salt = kc_state_salt(eng->state);
    bool changed = false;

    for (size_t i = 0; i < eng->plan->n; i++) {
        struct kc_plan_item *it = &eng->plan->items[i];
        const struct kc_state_resource *rec;
        struct kc_err err = { 0 };

        if (it->excluded || it->action != KC_ACTION_NOOP || !it->exists ||
            it->res->orphan || (it->type->flags & KC_KIND_DATA))
            continue;
        if (kc_state_intent_clear(eng->state, it->res->address))
            changed = true;
        rec = kc_state_get(eng->state, it->res->address);
        if (rec &&
            ((!rec->provider_id && !it->id) ||
             (rec->provider_id && it->id &&
              strcmp(rec->provider_id, it->id) == 0)) &&
            same(rec->attrs, it->desired, salt) &&
            same(rec->outputs, it->outputs, salt))
            continue;
        if (record_put(eng, it, &err) == 0)
            changed = true;
    }
    return changed;
}

static void finish_phase(struct kc_engine *eng)
{
    bool failed = false;

    for (size_t i = 0; i < eng->plan->n; i++) {
        struct kc_plan_item *it = &eng->plan->items[i];

        if (it->st == KC_ITEM_FAILED)
            failed = true;
    }
    if (eng->canceled)
        eng->status = kc_err_set(&eng->err, KC_ECANCELED, "interrupted");
    else if (failed)
        eng->status =
            kc_err_set(&eng->err, KC_EREMOTE, "some resources failed");
    else
        eng->status = 0;
    if (eng->phase == 2 && !eng->canceled && record_noops(eng)) {
        struct kc_err err = { 0 };

        eng->finishing = true;
        if (kc_state_write_async(eng->state, eng->loop, &eng->final_write,
                                 on_final_written, &err) == 0)
            return;
        eng->finishing = false;
        if (eng->status == 0)
            eng->status = kc_err_set(&eng->err, err.code, "%s", err.msg);
    }
    eng->phase = 0;
    eng->cb(eng, eng->status);
}

static void schedule(struct kc_engine *eng)
{
    bool progress = true, waiting = false;

    if (!eng->phase || eng->finishing)
        return;
    while (progress) {
        progress = eng->phase == 1 && settle(eng);
        waiting = false;
        for (size_t k = 0; k < eng->plan->n; k++) {
            /* Topological order; deletes wait for their dependents in
             * readiness(). */
            struct kc_plan_item *it =
                &eng->plan->items[kc_graph_order(eng->plan->graph, k)->index];
            int r;

            if (it->st == KC_ITEM_RUNNING || it->st == KC_ITEM_OBSERVED)
                waiting = true;
            if (it->st != KC_ITEM_PENDING || !has_work(eng, it))
                continue;
            if (eng->canceled) {
                it->st = KC_ITEM_SKIPPED;
                free(it->error);
                it->error = kc_xstrdup("interrupted before it started");
                emit(eng, KC_EVENT_SKIPPED, it, kc_action_name(it->action), 0,
                     it->error);
                progress = true;
                continue;
            }
            r = readiness(eng, it);
            if (r < 0) {
                it->st = KC_ITEM_SKIPPED;
                free(it->error);
                it->error = kc_xstrdup("a dependency failed");
                emit(eng, KC_EVENT_SKIPPED, it, kc_action_name(it->action), 0,
                     it->error);
                progress = true;
                continue;
            }
            waiting = true;
            if (r == 0 ||
                eng->running - eng->nwaiting >= (size_t)eng->parallelism)
                continue;
            if (it->ptype->concurrency > 0 &&
                running_of(eng, it->ptype, NULL) >=
                    (size_t)it->ptype->concurrency)
                continue;
            if (it->type->concurrency > 0 && running_of(eng, NULL, it->type) >=
                                                 (size_t)it->type->concurrency)
                continue;
            if (eng->phase == 1)
                refresh_start(eng, it);
            else
                apply_start(eng, it);
            if (eng->running - eng->nwaiting > eng->max_running)
                eng->max_running = eng->running - eng->nwaiting;
            progress = true;
        }
    }
    if (!waiting && !eng->ndeferred && eng->running == 0 && !eng->nlisting)
        finish_phase(eng);
}

void kc_op_found(struct kc_op *op, const char *name, const char *id)
{
    struct kc_engine *eng = op->eng;
    char *addr;

    if (op->phase != KC_PHASE_LIST)
        KC_BUG("kc_op_found outside list");
    addr = kc_xasprintf("%s.%s", op->item->type->kind, name);
    if (!kc_graph_find(eng->plan->graph, addr) &&
        !kc_state_get(eng->state, addr))
        kc_plan_add_unmanaged(eng->plan, addr, op->item->type->kind, id, false);
    free(addr);
}

void kc_op_found_entry(struct kc_op *op, const char *kind, const char *id)
{
    /* Apply-time observations (after a create) are not the plan's. */
    if (op->phase != KC_PHASE_OBSERVE || !op->eng->plan)
        return;
    kc_plan_add_unmanaged(op->eng->plan, op->item->res->address, kind, id,
                          true);
}

/* A list op has an item of its own, not in the plan: its address is the
 * kind. */
static void list_free(struct kc_op *op)
{
    struct kc_plan_item *it = op->item;

    op_free(op);
    free(it->res->address);
    free(it->res);
    free(it->error);
    free(it);
}

static void list_done(struct kc_engine *eng, struct kc_op *op, int status)
{
    eng->nlisting--;
    if (status < 0) {
        /* Not fatal: the plan is complete without it; say so. */
        kc_log(eng->log, KC_LOG_WARN, "engine",
               "listing the objects of '%s' failed: %s", op->item->type->kind,
               op->err.msg);
    }
    list_free(op);
    schedule(eng);
}

static void start_lists(struct kc_engine *eng)
{
    for (size_t p = 0; p < eng->nprovs; p++) {
        const struct kc_provider_type *pt = eng->provs[p]->type;

        for (size_t k = 0; pt->kinds && pt->kinds[k]; k++) {
            const struct kc_resource_type *t = pt->kinds[k];
            struct kc_plan_item *it;
            struct kc_op *op;

            if (!t->list)
                continue;
            it = kc_xcalloc(1, sizeof(*it));
            it->res = kc_xcalloc(1, sizeof(*it->res));
            it->res->address = kc_xstrdup(t->kind);
            it->res->kind = it->res->address;
            it->res->name = it->res->address + strlen(t->kind);
            it->type = t;
            it->ptype = pt;
            it->prov = eng->provs[p];
            op = op_new(eng, it, KC_PHASE_LIST);
            eng->nlisting++;
            start_op(eng, op);
        }
    }
}

static int engine_start(struct kc_engine *eng, struct kc_plan *plan, int phase,
                        kc_engine_cb cb, struct kc_err *err)
{
    int ret;

    if (eng->phase)
        return kc_err_set(err, KC_EAGAIN, "the engine is busy");
    if (!eng->kick_open) {
        ret = uv_timer_init(eng->loop, &eng->kick);
        if (ret < 0)
            return kc_err_from_uv(err, ret, "uv_timer_init");
        eng->kick_open = true;
    }
    eng->plan = plan;
    eng->destroy = plan->destroy;
    eng->phase = phase;
    eng->cb = cb;
    eng->status = 0;
    kc_err_clear(&eng->err);
    for (size_t i = 0; i < plan->n; i++) {
        plan->items[i].st = KC_ITEM_PENDING;
        plan->items[i].released = false;
        plan->items[i].forgotten = false;
        free(plan->items[i].error);
        plan->items[i].error = NULL;
    }
    if (phase == 1 && !plan->destroy)
        start_lists(eng);
    /* Start from the loop, never inside this call. */
    arm_kick(eng);
    return 0;
}

int kc_engine_refresh(struct kc_engine *eng, struct kc_plan *plan,
                      kc_engine_cb cb, struct kc_err *err)
{
    return engine_start(eng, plan, 1, cb, err);
}

int kc_engine_apply(struct kc_engine *eng, struct kc_plan *plan,
                    kc_engine_cb cb, struct kc_err *err)
{
    int ret;

    if (eng->readonly)
        return kc_err_set(err, KC_EPERM, "this engine is read-only");
    ret = kc_plan_check_consent(plan, err);
    if (ret < 0)
        return ret;
    return engine_start(eng, plan, 2, cb, err);
}

void kc_engine_cancel(struct kc_engine *eng)
{
    eng->canceled = true;
    /* Reads waiting out a retry backoff stop now, rather than after the
     * whole retry policy; writes that may have arrived keep theirs. */
    kc_http_interrupt(eng->http);
}

static void on_kick_closed(uv_handle_t *h)
{
    (void)h;
}

void kc_engine_release(struct kc_engine *eng)
{
    for (size_t i = 0; i < eng->nprovs; i++) {
        struct kc_provider *p = eng->provs[i];

        if (p->type->cleanup)
            p->type->cleanup(p);
        free(p);
    }
    free(eng->provs);
    eng->provs = NULL;
    eng->nprovs = 0;
    free(eng->deferred);
    eng->deferred = NULL;
    if (eng->kick_open) {
        uv_close((uv_handle_t *)&eng->kick, on_kick_closed);
        eng->kick_open = false;
    }
}
