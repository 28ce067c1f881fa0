/* reconcile/plan.c: field diffs, actions, the plan's JSON and its rendering. */
#include "reconcile/plan.h"

struct kc_plan *kc_plan_new(struct kc_graph *g)
{
    struct kc_plan *plan = kc_xcalloc(1, sizeof(*plan));

    plan->graph = g;
    plan->n = kc_graph_count(g);
    plan->items = kc_xcalloc(plan->n + 1, sizeof(*plan->items));
    for (size_t i = 0; i < plan->n; i++)
        plan->items[i].res = kc_graph_at(g, i);
    return plan;
}

static void change_release(struct kc_plan_change *c)
{
    free(c->field);
    kc_value_free(c->before);
    kc_value_free(c->after);
    kc_value_free(c->prior);
}

static void item_clear_changes(struct kc_plan_item *it)
{
    for (size_t i = 0; i < it->nchanges; i++)
        change_release(&it->changes[i]);
    it->nchanges = 0;
}

void kc_plan_free(struct kc_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n; i++) {
        struct kc_plan_item *it = &plan->items[i];

        if (it->op)
            KC_BUG("plan freed while '%s' has an op", it->res->address);
        item_clear_changes(it);
        free(it->changes);
        for (size_t w = 0; w < it->nwarnings; w++)
            free(it->warnings[w]);
        free(it->warnings);
        free(it->reason);
        free(it->forced_by);
        free(it->consent);
        free(it->error);
        free(it->id);
        kc_value_free(it->desired);
        kc_value_free(it->observed);
        kc_value_free(it->outputs);
    }
    free(plan->items);
    for (size_t i = 0; i < plan->nunmanaged; i++) {
        free(plan->unmanaged[i].address);
        free(plan->unmanaged[i].id);
    }
    free(plan->unmanaged);
    for (size_t i = 0; i < plan->ntargets; i++)
        free(plan->targets[i]);
    free(plan->targets);
    kc_graph_free(plan->graph);
    free(plan->lineage);
    free(plan->deployment);
    free(plan->manifest);
    free(plan->manifest_digest);
    free(plan);
}

struct kc_plan_item *kc_plan_find(const struct kc_plan *plan, const char *addr)
{
    for (size_t i = 0; i < plan->n; i++)
        if (strcmp(plan->items[i].res->address, addr) == 0)
            return &plan->items[i];
    return NULL;
}

struct kc_value *kc_plan_stored_form(const struct kc_value *v, const char *salt)
{
    struct json_object *j;
    struct kc_value *out = NULL;

    if (!v)
        return NULL;
    if (!kc_value_is_sensitive(v) || kc_value_has_unknown(v))
        return kc_value_dup(v);
    j = kc_value_to_json(v, salt);
    if (kc_value_from_json(j, &out, NULL) < 0)
        KC_BUG("a value's own JSON does not parse back");
    json_object_put(j);
    return out;
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? kc_xstrdup(s) : NULL;
}

static struct kc_plan_change *add_change(struct kc_plan_item *it,
                                         const char *field)
{
    struct kc_plan_change *c;

    kc_xgrow(&it->changes, &it->capchanges, it->nchanges + 1,
             sizeof(*it->changes));
    c = &it->changes[it->nchanges++];
    memset(c, 0, sizeof(*c));
    c->field = kc_xstrdup(field);
    return c;
}

static bool eq(const struct kc_value *a, const struct kc_value *b)
{
    if (!a || !b)
        return a == b;
    return kc_value_equal(a, b);
}

/* One field of an existing object: records the change if there is any. */
static void diff_field(struct kc_plan_item *it, const struct kc_field *f,
                       const struct kc_value *prior, const char *salt,
                       bool *replace, bool *update)
{
    const struct kc_value *d = kc_value_map_get(it->desired, f->name);
    const struct kc_value *o =
        it->observed ? kc_value_map_get(it->observed, f->name) : NULL;
    const struct kc_value *l = prior ? kc_value_map_get(prior, f->name) : NULL;
    struct kc_value *ds, *actual;
    bool unknown, differs, ext = false, man;
    struct kc_plan_change *c;

    if (!d || (f->flags & KC_FIELD_COMPUTED))
        return;
    ds = kc_plan_stored_form(d, salt);
    actual = kc_plan_stored_form(o ? o : l, salt);
    unknown = kc_value_has_unknown(d);
    if (o && l && !eq(o, l) && !(f->flags & KC_FIELD_IGNORE_DRIFT))
        ext = true;
    man = unknown || !eq(ds, l);
    if (f->flags & KC_FIELD_IGNORE_DRIFT) {
        /* The world may differ from the last applied value: only a change
         * in the manifest counts. */
        differs = l ? man : (unknown || !eq(ds, actual));
    } else {
        differs = unknown || !eq(ds, actual);
    }
    if (!differs && !ext && !man) {
        kc_value_free(ds);
        kc_value_free(actual);
        return;
    }
    if (!differs && !ext && l == NULL) {
        /* Adopted object, same value: only the state learns it. */
        kc_value_free(ds);
        kc_value_free(actual);
        return;
    }
    c = add_change(it, f->name);
    c->before = actual;
    c->after = ds;
    c->prior = kc_value_dup(l);
    c->sensitive = (f->flags & KC_FIELD_SENSITIVE) || kc_value_is_sensitive(d);
    c->force_new = (f->flags & KC_FIELD_FORCE_NEW) != 0;
    c->unknown = unknown;
    c->differs = differs;
    c->cause = ext                  ? KC_CAUSE_EXTERNAL
               : man && l           ? KC_CAUSE_MANIFEST
               : differs && !l && o ? KC_CAUSE_EXTERNAL
               : man                ? KC_CAUSE_MANIFEST
                                    : KC_CAUSE_NONE;
    if (!differs)
        return;
    if (c->force_new || !it->type || !it->type->update) {
        if (!*replace)
            set_str(&it->forced_by, f->name);
        *replace = true;
    } else {
        *update = true;
    }
}

void kc_plan_diff(struct kc_plan_item *it, const struct kc_value *prior,
                  const char *salt, bool destroy)
{
    bool replace = false, update = false;

    item_clear_changes(it);
    set_str(&it->forced_by, NULL);
    set_str(&it->reason, NULL);
    it->cause = KC_CAUSE_NONE;
    it->action = KC_ACTION_NOOP;
    if (it->type && (it->type->flags & KC_KIND_DATA)) {
        if ((destroy || it->res->orphan) && it->in_state) {
            /* Nothing to delete: the record is only forgotten. */
            it->action = KC_ACTION_DELETE;
            it->exists = false;
            it->cause = KC_CAUSE_MANIFEST;
            set_str(&it->reason, "data source: only forgotten");
        } else if (!destroy && !it->res->orphan && it->desired &&
                   kc_value_has_unknown(it->desired)) {
            it->action = KC_ACTION_READ;
        }
        return;
    }
    if (destroy || it->res->orphan) {
        if (it->exists || it->in_state) {
            it->action = KC_ACTION_DELETE;
            it->cause = KC_CAUSE_MANIFEST;
            if (it->res->orphan)
                set_str(&it->reason, "not in the manifest");
            if (!it->exists) {
                it->cause = KC_CAUSE_EXTERNAL;
                set_str(&it->reason, "already gone: only forgotten");
            } else if (it->type && (it->type->flags & KC_KIND_RETAIN)) {
                set_str(&it->reason, "cannot be deleted: left in place and "
                                     "forgotten");
            }
        }
        return;
    }
    if (!it->exists) {
        it->action = KC_ACTION_CREATE;
        for (size_t i = 0; it->desired && i < kc_value_map_len(it->desired);
             i++) {
            const char *f = kc_value_map_key(it->desired, i);
            const struct kc_value *d = kc_value_map_val(it->desired, i);
            const struct kc_field *fd =
                it->type ? kc_resource_type_field(it->type, f) : NULL;
            struct kc_plan_change *c = add_change(it, f);

            c->after = kc_plan_stored_form(d, salt);
            c->prior = prior ? kc_value_dup(kc_value_map_get(prior, f)) : NULL;
            c->sensitive = kc_value_is_sensitive(d) ||
                           (fd && (fd->flags & KC_FIELD_SENSITIVE));
            c->force_new = fd && (fd->flags & KC_FIELD_FORCE_NEW);
            c->unknown = kc_value_has_unknown(d);
            c->differs = true;
            c->cause = KC_CAUSE_NONE;
        }
        if (it->in_state) {
            it->cause = KC_CAUSE_EXTERNAL;
            set_str(&it->reason, "deleted outside kmsctl");
        } else {
            it->cause = KC_CAUSE_MANIFEST;
        }
        return;
    }
    for (size_t i = 0; it->type && it->type->fields[i].name; i++)
        diff_field(it, &it->type->fields[i], prior, salt, &replace, &update);
    if (replace)
        it->action = KC_ACTION_REPLACE;
    else if (update)
        it->action = KC_ACTION_UPDATE;
}

void kc_plan_add_unmanaged(struct kc_plan *plan, const char *addr,
                           const char *id)
{
    struct kc_plan_unmanaged *u;

    for (size_t i = 0; i < plan->nunmanaged; i++)
        if (strcmp(plan->unmanaged[i].address, addr) == 0)
            return;
    kc_xgrow(&plan->unmanaged, &plan->capunmanaged, plan->nunmanaged + 1,
             sizeof(*plan->unmanaged));
    u = &plan->unmanaged[plan->nunmanaged++];
    u->address = kc_xstrdup(addr);
    u->id = id ? kc_xstrdup(id) : NULL;
}

void kc_plan_count(const struct kc_plan *plan, struct kc_plan_counts *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];

        if (it->excluded)
            continue;
        switch (it->action) {
        case KC_ACTION_CREATE:
            c->create++;
            break;
        case KC_ACTION_UPDATE:
            c->update++;
            break;
        case KC_ACTION_REPLACE:
            c->replace++;
            break;
        case KC_ACTION_DELETE:
            c->delete ++;
            break;
        case KC_ACTION_READ:
            c->read++;
            break;
        case KC_ACTION_NOOP:
            c->noop++;
            break;
        }
    }
}

bool kc_plan_has_changes(const struct kc_plan *plan)
{
    struct kc_plan_counts c;

    kc_plan_count(plan, &c);
    return c.create + c.update + c.replace + c.delete > 0;
}

int kc_plan_check_consent(const struct kc_plan *plan, struct kc_err *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];

        if (!it->excluded && it->consent && !it->consented &&
            it->action != KC_ACTION_NOOP)
            return kc_err_set(err, KC_EPERM,
                              "'%s' %s refused: %s (consent with "
                              "--allow-identity-loss %s)",
                              it->res->address, kc_action_name(it->action),
                              it->consent, it->res->address);
    }
    return 0;
}

void kc_plan_drift(const struct kc_plan *plan, bool *external, bool *manifest)
{
    *external = plan->nunmanaged > 0;
    *manifest = false;
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];

        if (it->excluded)
            continue;
        if (it->cause == KC_CAUSE_EXTERNAL)
            *external = true;
        else if (it->cause == KC_CAUSE_MANIFEST && it->action != KC_ACTION_NOOP)
            *manifest = true;
        for (size_t c = 0; c < it->nchanges; c++) {
            if (it->changes[c].cause == KC_CAUSE_EXTERNAL)
                *external = true;
            else if (it->changes[c].cause == KC_CAUSE_MANIFEST)
                *manifest = true;
        }
    }
}

static const char *cause_name(enum kc_cause c)
{
    return c == KC_CAUSE_EXTERNAL   ? "external"
           : c == KC_CAUSE_MANIFEST ? "manifest"
                                    : "none";
}

/* A value for JSON output: sensitive as "(sensitive)", unknown as
 * "(known after apply)", absent as null. */
static struct json_object *value_json(const struct kc_value *v, bool sensitive)
{
    if (!v)
        return NULL;
    if (sensitive && !kc_value_has_unknown(v))
        return json_object_new_string("(sensitive)");
    return kc_value_to_json(v, NULL);
}

static void add_str(struct json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

struct json_object *kc_plan_to_json(const struct kc_plan *plan)
{
    struct json_object *root = json_object_new_object();
    struct json_object *arr = json_object_new_array();
    struct json_object *sum = json_object_new_object();
    struct kc_plan_counts c;

    json_object_object_add(root, "format_version",
                           json_object_new_int(KC_PLAN_FORMAT));
    add_str(root, "deployment", plan->deployment);
    add_str(root, "lineage", plan->lineage);
    json_object_object_add(root, "serial", json_object_new_int64(plan->serial));
    add_str(root, "manifest", plan->manifest);
    add_str(root, "manifest_digest", plan->manifest_digest);
    json_object_object_add(root, "destroy",
                           json_object_new_boolean(plan->destroy));
    {
        struct json_object *tg = json_object_new_array();

        for (size_t i = 0; i < plan->ntargets; i++)
            json_object_array_add(tg, json_object_new_string(plan->targets[i]));
        json_object_object_add(root, "targets", tg);
    }
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];
        struct json_object *r, *ch, *w;

        if (it->excluded)
            continue;
        r = json_object_new_object();
        add_str(r, "address", it->res->address);
        add_str(r, "kind", it->res->kind);
        add_str(r, "action", kc_action_name(it->action));
        add_str(r, "reason", it->reason);
        add_str(r, "forced_by", it->forced_by);
        add_str(r, "cause",
                it->cause == KC_CAUSE_NONE ? NULL : cause_name(it->cause));
        ch = json_object_new_array();
        for (size_t k = 0; k < it->nchanges; k++) {
            const struct kc_plan_change *pc = &it->changes[k];
            struct json_object *o;

            if (!pc->differs)
                continue;
            o = json_object_new_object();
            add_str(o, "field", pc->field);
            json_object_object_add(o, "before",
                                   value_json(pc->before, pc->sensitive));
            json_object_object_add(o, "after",
                                   value_json(pc->after, pc->sensitive));
            json_object_object_add(o, "sensitive",
                                   json_object_new_boolean(pc->sensitive));
            json_object_object_add(o, "unknown",
                                   json_object_new_boolean(pc->unknown));
            json_object_object_add(o, "force_new",
                                   json_object_new_boolean(pc->force_new));
            add_str(o, "cause", cause_name(pc->cause));
            json_object_array_add(ch, o);
        }
        json_object_object_add(r, "changes", ch);
        w = json_object_new_array();
        for (size_t k = 0; k < it->nwarnings; k++)
            json_object_array_add(w, json_object_new_string(it->warnings[k]));
        json_object_object_add(r, "warnings", w);
        if (it->consent) {
            struct json_object *cs = json_object_new_object();

            add_str(cs, "reason", it->consent);
            json_object_object_add(cs, "given",
                                   json_object_new_boolean(it->consented));
            json_object_object_add(r, "consent", cs);
        } else {
            json_object_object_add(r, "consent", NULL);
        }
        json_object_array_add(arr, r);
    }
    json_object_object_add(root, "resources", arr);
    arr = json_object_new_array();
    for (size_t i = 0; i < plan->nunmanaged; i++) {
        struct json_object *u = json_object_new_object();

        add_str(u, "address", plan->unmanaged[i].address);
        add_str(u, "id", plan->unmanaged[i].id);
        json_object_array_add(arr, u);
    }
    json_object_object_add(root, "unmanaged", arr);
    kc_plan_count(plan, &c);
    json_object_object_add(sum, "create", json_object_new_int64(c.create));
    json_object_object_add(sum, "update", json_object_new_int64(c.update));
    json_object_object_add(sum, "replace", json_object_new_int64(c.replace));
    json_object_object_add(sum, "delete", json_object_new_int64(c.delete));
    json_object_object_add(sum, "read", json_object_new_int64(c.read));
    json_object_object_add(sum, "noop", json_object_new_int64(c.noop));
    json_object_object_add(root, "summary", sum);
    return root;
}

static void drift_add(struct json_object *arr, const char *addr,
                      const char *field, struct json_object *expected,
                      struct json_object *actual, enum kc_cause cause)
{
    struct json_object *o = json_object_new_object();

    add_str(o, "address", addr);
    add_str(o, "field", field);
    json_object_object_add(o, "expected", expected);
    json_object_object_add(o, "actual", actual);
    add_str(o, "cause", cause_name(cause));
    json_object_array_add(arr, o);
}

struct json_object *kc_plan_drift_json(const struct kc_plan *plan)
{
    struct json_object *root = json_object_new_object();
    struct json_object *arr = json_object_new_array();
    bool ext, man;

    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];

        if (it->excluded)
            continue;
        if (it->action == KC_ACTION_CREATE || it->action == KC_ACTION_DELETE) {
            drift_add(arr, it->res->address, NULL,
                      json_object_new_string(it->action == KC_ACTION_CREATE
                                                 ? "present"
                                                 : "absent"),
                      json_object_new_string(it->exists ? "present" : "absent"),
                      it->cause);
            continue;
        }
        for (size_t c = 0; c < it->nchanges; c++) {
            const struct kc_plan_change *pc = &it->changes[c];

            if (pc->cause == KC_CAUSE_NONE)
                continue;
            /* External: the world against what was applied; manifest: the
             * manifest against what was applied. */
            if (pc->cause == KC_CAUSE_EXTERNAL)
                drift_add(arr, it->res->address, pc->field,
                          value_json(pc->prior ? pc->prior : pc->after,
                                     pc->sensitive),
                          value_json(pc->before, pc->sensitive), pc->cause);
            else
                drift_add(arr, it->res->address, pc->field,
                          value_json(pc->after, pc->sensitive),
                          value_json(pc->prior, pc->sensitive), pc->cause);
        }
    }
    for (size_t i = 0; i < plan->nunmanaged; i++)
        drift_add(arr, plan->unmanaged[i].address, NULL,
                  json_object_new_string("absent"),
                  json_object_new_string("present"), KC_CAUSE_EXTERNAL);
    kc_plan_drift(plan, &ext, &man);
    json_object_object_add(root, "in_sync",
                           json_object_new_boolean(!ext && !man));
    json_object_object_add(root, "external", json_object_new_boolean(ext));
    json_object_object_add(root, "manifest", json_object_new_boolean(man));
    json_object_object_add(root, "differences", arr);
    return root;
}

#define C_RESET  "\033[0m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_RED    "\033[31m"
#define C_CYAN   "\033[36m"
#define C_BOLD   "\033[1m"

static const char *action_sign(enum kc_action a)
{
    switch (a) {
    case KC_ACTION_CREATE:
        return "+";
    case KC_ACTION_UPDATE:
        return "~";
    case KC_ACTION_REPLACE:
        return "-/+";
    case KC_ACTION_DELETE:
        return "-";
    case KC_ACTION_READ:
        return "<=";
    case KC_ACTION_NOOP:
        break;
    }
    return " ";
}

static const char *action_color(enum kc_action a)
{
    switch (a) {
    case KC_ACTION_CREATE:
        return C_GREEN;
    case KC_ACTION_UPDATE:
        return C_YELLOW;
    case KC_ACTION_REPLACE:
    case KC_ACTION_DELETE:
        return C_RED;
    case KC_ACTION_READ:
        return C_CYAN;
    case KC_ACTION_NOOP:
        break;
    }
    return "";
}

static void render_value(struct kc_buf *out, const struct kc_value *v,
                         bool sensitive)
{
    char *s;

    if (!v) {
        kc_buf_addstr(out, "(none)");
        return;
    }
    if (sensitive && !kc_value_has_unknown(v)) {
        kc_buf_addstr(out, "(sensitive)");
        return;
    }
    s = kc_value_render(v);
    kc_buf_addstr(out, s);
    free(s);
}

static bool is_map(const struct kc_value *v)
{
    return v && v->type == KC_VALUE_MAP;
}

/* A map that changed, one line per key that differs ("labels.env: "a" →
 * "b""), the field's notes on the last line. */
static void render_map_change(struct kc_buf *out, const char *field,
                              const struct kc_value *before,
                              const struct kc_value *after)
{
    bool first = true;

    for (int pass = 0; pass < 2; pass++) {
        const struct kc_value *m = pass ? before : after;

        for (size_t i = 0; i < kc_value_map_len(m); i++) {
            const char *k = kc_value_map_key(m, i);
            const struct kc_value *b = kc_value_map_get(before, k);
            const struct kc_value *a = kc_value_map_get(after, k);

            /* Keys of AFTER on the first pass, keys only in BEFORE on the
             * second. */
            if ((pass && a) || (a && b && kc_value_equal(a, b)))
                continue;
            if (!first)
                kc_buf_addch(out, '\n');
            first = false;
            kc_buf_addf(out, "    %s.%s: ", field, k);
            render_value(out, b, kc_value_is_sensitive(b));
            kc_buf_addstr(out, " → ");
            render_value(out, a, kc_value_is_sensitive(a));
        }
    }
    if (first) /* equal maps (e.g. only an unknown inside): whole values */
        kc_buf_addf(out, "    %s: (changed)", field);
}

static const char *verb_of(const struct kc_plan_item *it)
{
    if (it->action == KC_ACTION_DELETE && it->type &&
        (it->type->flags & KC_KIND_REVOKE))
        return "revoke";
    if (it->action == KC_ACTION_DELETE && it->type &&
        (it->type->flags & KC_KIND_RETAIN))
        return "forget";
    return kc_action_name(it->action);
}

void kc_plan_render(const struct kc_plan *plan, bool color, struct kc_buf *out)
{
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];
        const char *col = color ? action_color(it->action) : "";

        if (it->excluded || it->action == KC_ACTION_NOOP)
            continue;
        kc_buf_addf(out, "%s%s %s%s %s%s", col, action_sign(it->action),
                    color ? C_BOLD : "", it->res->address, verb_of(it),
                    color ? C_RESET : "");
        if (it->forced_by)
            kc_buf_addf(out, " (forced by '%s')", it->forced_by);
        if (it->reason)
            kc_buf_addf(out, " (%s)", it->reason);
        kc_buf_addch(out, '\n');
        for (size_t c = 0; c < it->nchanges; c++) {
            const struct kc_plan_change *pc = &it->changes[c];

            if (!pc->differs)
                continue;
            if (it->action != KC_ACTION_CREATE && !pc->sensitive &&
                is_map(pc->before) && is_map(pc->after)) {
                render_map_change(out, pc->field, pc->before, pc->after);
            } else {
                kc_buf_addf(out, "    %s: ", pc->field);
                if (it->action != KC_ACTION_CREATE) {
                    render_value(out, pc->before, pc->sensitive);
                    kc_buf_addstr(out, " → ");
                }
                render_value(out, pc->after, pc->sensitive);
            }
            if (pc->force_new && it->action == KC_ACTION_REPLACE)
                kc_buf_addstr(out, " (forces replacement)");
            if (pc->cause == KC_CAUSE_EXTERNAL)
                kc_buf_addstr(out, " (changed outside kmsctl)");
            kc_buf_addch(out, '\n');
        }
        for (size_t w = 0; w < it->nwarnings; w++)
            kc_buf_addf(out, "    ! %s\n", it->warnings[w]);
        if (it->consent)
            kc_buf_addf(out, "    ! %s: %s\n",
                        it->consented ? "consent given"
                                      : "refused without "
                                        "--allow-identity-loss",
                        it->consent);
    }
    for (size_t i = 0; i < plan->nunmanaged; i++)
        kc_buf_addf(out,
                    "! %s%s%s%s: carries this deployment's label but is in "
                    "neither the manifest nor the state (not managed; delete "
                    "it by hand or add it to the manifest)\n",
                    plan->unmanaged[i].address,
                    plan->unmanaged[i].id ? " (" : "",
                    plan->unmanaged[i].id ? plan->unmanaged[i].id : "",
                    plan->unmanaged[i].id ? ")" : "");
    kc_plan_render_summary(plan, out);
}

void kc_plan_render_summary(const struct kc_plan *plan, struct kc_buf *out)
{
    struct kc_plan_counts c;

    kc_plan_count(plan, &c);
    if (!kc_plan_has_changes(plan)) {
        kc_buf_addstr(out, "No changes. The world matches the manifest.\n");
        return;
    }
    kc_buf_addf(out,
                "Plan: %zu to create, %zu to update, %zu to replace, %zu to "
                "delete.\n",
                c.create, c.update, c.replace, c.delete);
}
