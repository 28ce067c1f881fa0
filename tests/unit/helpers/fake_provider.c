/* tests/unit/helpers/fake_provider.c: the "fake" provider (see the header). */
#include "tests/unit/helpers/fake_provider.h"

#include "reconcile/expand.h"
#include "reconcile/file.h"
#include "reconcile/json.h"

struct fake_ctx {
    char *world;
    int64_t delay_ms;
    int64_t observe_delay_ms;
    bool wait; /* create/update/delete: kc_op_waiting during the delay */
};

struct fake_call {
    struct kc_op *op;
    uv_timer_t timer;
    int status;
};

struct json_object *fake_world_load(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    struct json_object *w = NULL;

    if (kc_file_read(path, 16u << 20, &text, &len, NULL) < 0)
        return NULL;
    if (kc_json_parse(text, len, path, &w, NULL) < 0)
        w = NULL;
    free(text);
    return w;
}

void fake_world_save(const char *path, struct json_object *w)
{
    const char *s = json_object_to_json_string_ext(w, JSON_C_TO_STRING_PLAIN);
    char *tmp = kc_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");

    /* Temp file and rename, no fsync: a killed process leaves the old or
     * the new world (the page cache survives it), and tests stay fast. */
    if (!f || fputs(s, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        KC_BUG("fake world: cannot write '%s'", path);
    free(tmp);
}

static struct json_object *member(struct json_object *o, const char *k)
{
    struct json_object *m;

    if (!json_object_object_get_ex(o, k, &m)) {
        m = json_object_new_object();
        json_object_object_add(o, k, m);
    }
    return m;
}

void fake_world_init(const char *path)
{
    struct json_object *w = json_object_new_object();

    member(w, "objects");
    member(w, "fail");
    member(w, "counters");
    json_object_object_add(w, "log", json_object_new_array());
    fake_world_save(path, w);
    json_object_put(w);
}

static struct json_object *load_or_die(const char *path)
{
    struct json_object *w = fake_world_load(path);

    if (!w)
        KC_BUG("fake world '%s' is unreadable", path);
    return w;
}

static int64_t counter(struct json_object *w, const char *name);
static void counter_add(struct json_object *w, const char *name, int64_t d);

void fake_world_reset_counters(const char *path)
{
    struct json_object *w = load_or_die(path);
    int64_t serial = counter(w, "serial");

    json_object_object_add(w, "counters", json_object_new_object());
    counter_add(w, "serial", serial);
    json_object_object_add(w, "log", json_object_new_array());
    fake_world_save(path, w);
    json_object_put(w);
}

void fake_world_fail(const char *path, const char *addr, const char *phase)
{
    struct json_object *w = load_or_die(path);

    json_object_object_add(member(w, "fail"), addr,
                           json_object_new_string(phase));
    fake_world_save(path, w);
    json_object_put(w);
}

void fake_world_set_attr(const char *path, const char *addr, const char *field,
                         const char *value)
{
    struct json_object *w = load_or_die(path);
    struct json_object *obj;

    if (json_object_object_get_ex(member(w, "objects"), addr, &obj))
        json_object_object_add(member(obj, "attrs"), field,
                               json_object_new_string(value));
    fake_world_save(path, w);
    json_object_put(w);
}

void fake_world_remove(const char *path, const char *addr)
{
    struct json_object *w = load_or_die(path);

    json_object_object_del(member(w, "objects"), addr);
    fake_world_save(path, w);
    json_object_put(w);
}

static int64_t counter(struct json_object *w, const char *name)
{
    struct json_object *c;

    if (!json_object_object_get_ex(member(w, "counters"), name, &c))
        return 0;
    return json_object_get_int64(c);
}

static void counter_add(struct json_object *w, const char *name, int64_t d)
{
    json_object_object_add(member(w, "counters"), name,
                           json_object_new_int64(counter(w, name) + d));
}

int64_t fake_world_counter(const char *path, const char *name)
{
    struct json_object *w = load_or_die(path);
    int64_t n = counter(w, name);

    json_object_put(w);
    return n;
}

bool fake_world_has(const char *path, const char *addr)
{
    struct json_object *w = load_or_die(path);
    bool has = json_object_object_get_ex(member(w, "objects"), addr, NULL);

    json_object_put(w);
    return has;
}

int fake_world_log_index(const char *path, const char *line)
{
    struct json_object *w = load_or_die(path);
    struct json_object *log;
    int idx = -1;

    if (json_object_object_get_ex(w, "log", &log)) {
        for (size_t i = 0; i < json_object_array_length(log); i++) {
            const char *s =
                json_object_get_string(json_object_array_get_idx(log, i));

            if (s && strcmp(s, line) == 0) {
                idx = (int)i;
                break;
            }
        }
    }
    json_object_put(w);
    return idx;
}

/* --- the provider --- */

static int fake_init(struct kc_provider *p, struct kc_err *err)
{
    struct fake_ctx *ctx;
    const char *world =
        p->config ? kc_value_str(kc_value_map_get(p->config, "world")) : NULL;

    if (!world)
        return kc_err_set(err, KC_EINVAL, "providers.fake.world is not set");
    ctx = kc_xcalloc(1, sizeof(*ctx));
    ctx->world = kc_xstrdup(world);
    ctx->delay_ms = kc_value_int(kc_value_map_get(p->config, "delay_ms"), 0);
    ctx->observe_delay_ms =
        kc_value_int(kc_value_map_get(p->config, "observe_delay_ms"), 0);
    ctx->wait = kc_value_bool(kc_value_map_get(p->config, "wait"), false);
    p->data = ctx;
    return 0;
}

static void fake_cleanup(struct kc_provider *p)
{
    struct fake_ctx *ctx = p->data;

    free(ctx->world);
    free(ctx);
}

static const char *phase_str(enum kc_op_phase ph)
{
    switch (ph) {
    case KC_PHASE_OBSERVE:
        return "observe";
    case KC_PHASE_READ:
        return "read";
    case KC_PHASE_CREATE:
        return "create";
    case KC_PHASE_UPDATE:
        return "update";
    case KC_PHASE_DELETE:
        return "delete";
    case KC_PHASE_LIST:
        return "list";
    case KC_PHASE_REVIEW:
        break;
    }
    return "review";
}

/* The observed attributes: everything stored except write-only secrets. */
static void report(struct kc_op *op, struct json_object *obj)
{
    struct json_object *attrs, *id;
    struct kc_value *v = NULL;
    const struct kc_value *ip;

    if (!json_object_object_get_ex(obj, "attrs", &attrs) ||
        kc_value_from_json(attrs, &v, NULL) < 0)
        KC_BUG("fake world: bad object");
    if (json_object_object_get_ex(obj, "id", &id))
        kc_op_set_id(op, json_object_get_string(id));
    kc_op_set_output(op, "id", kc_value_new_str(kc_op_id(op)));
    ip = kc_value_map_get(v, "ip");
    if (ip) {
        kc_op_set_output(op, "ip", kc_value_dup(ip));
        kc_op_set_output(op, "external_ip", kc_value_dup(ip));
    }
    if (kc_value_map_get(v, "value"))
        kc_op_set_output(op, "value",
                         kc_value_dup(kc_value_map_get(v, "value")));
    if (kc_value_map_get(v, "size"))
        kc_op_set_output(op, "size", kc_value_dup(kc_value_map_get(v, "size")));
    kc_op_set_observed(op, v);
}

/* Does the op's work on the world, now that its delay passed. */
static int fake_work(struct kc_op *op)
{
    struct fake_ctx *ctx = kc_op_provider_data(op);
    struct json_object *w = load_or_die(ctx->world);
    struct json_object *objs = member(w, "objects"), *obj = NULL, *fail;
    const char *addr = kc_op_address(op);
    enum kc_op_phase phase = kc_op_phase(op);
    const char *ph = phase_str(phase);
    bool mutating = phase == KC_PHASE_CREATE || phase == KC_PHASE_UPDATE ||
                    phase == KC_PHASE_DELETE;
    char *line = kc_xasprintf("%s %s", ph, addr);
    int ret = 0;

    counter_add(w, "running", -1);
    counter_add(w, ph, 1);
    if (mutating)
        counter_add(w, "mutating", 1);
    json_object_array_add(member(w, "log"), json_object_new_string(line));
    free(line);
    if (json_object_object_get_ex(member(w, "fail"), addr, &fail) &&
        strcmp(json_object_get_string(fail), ph) == 0) {
        ret = kc_err_set(kc_op_err(op), KC_EREMOTE,
                         "fake: injected failure of %s", ph);
        goto out;
    }
    json_object_object_get_ex(objs, addr, &obj);
    switch (phase) {
    case KC_PHASE_LIST: {
        /* Every object of the kind (the fake world labels all of them). */
        size_t klen = strlen(addr);

        json_object_object_foreach (objs, key, val) {
            if (strncmp(key, addr, klen) == 0 && key[klen] == '.' &&
                !strchr(key + klen + 1, '~'))
                kc_op_found(
                    op, key + klen + 1,
                    json_object_get_string(json_object_object_get(val, "id")));
        }
        break;
    }
    case KC_PHASE_OBSERVE:
        /* The engine must refuse every write at observe time (drift). */
        if (kc_op_intent_put(op, "x", NULL, NULL) != KC_EPERM ||
            kc_op_generated_put(op, "x", NULL, NULL) != KC_EPERM) {
            ret = kc_err_set(kc_op_err(op), KC_EPERM,
                             "fake: observe was allowed to write the state");
            goto out;
        }
        /* An entry is found through its parent (like an allowlist entry
         * through its contract): without the parent's id, nothing. */
        if (strcmp(kc_op_type(op)->kind, "fake.entry") == 0 &&
            (!kc_op_desired(op, "ref") ||
             kc_value_has_unknown(kc_op_desired(op, "ref"))))
            break;
        if (obj)
            report(op, obj);
        break;
    case KC_PHASE_READ: {
        const char *key = kc_value_str(kc_op_desired(op, "key"));
        char *res = kc_xasprintf("data-of-%s", key ? key : "");

        kc_op_set_output(op, "result", kc_value_new_str(res));
        free(res);
        break;
    }
    case KC_PHASE_CREATE:
    case KC_PHASE_UPDATE: {
        struct json_object *attrs = json_object_new_object();
        const struct kc_value *d = kc_op_desired_all(op);
        char *id;

        if (phase == KC_PHASE_CREATE && obj &&
            (kc_op_type(op)->flags & KC_KIND_CREATE_BEFORE_DESTROY)) {
            /* Create before destroy: the old object lives on beside the
             * new one until it is deleted by its id. */
            struct json_object *oid = json_object_object_get(obj, "id");
            char *key =
                kc_xasprintf("%s~%s", addr, json_object_get_string(oid));

            json_object_object_add(objs, key, json_object_get(obj));
            free(key);
            obj = NULL;
        }
        if (phase == KC_PHASE_CREATE && obj) {
            ret = kc_err_set(kc_op_err(op), KC_EEXIST,
                             "fake: '%s' already exists", addr);
            json_object_put(attrs);
            goto out;
        }
        if (phase == KC_PHASE_UPDATE && !obj) {
            ret = kc_err_set(kc_op_err(op), KC_ENOENT,
                             "fake: '%s' does not exist", addr);
            json_object_put(attrs);
            goto out;
        }
        for (size_t i = 0; i < kc_value_map_len(d); i++) {
            const struct kc_value *v = kc_value_map_val(d, i);

            /* Secrets are write-only: the world never gives them back. */
            if (kc_value_is_sensitive(v))
                continue;
            json_object_object_add(attrs, kc_value_map_key(d, i),
                                   kc_value_to_json(v, NULL));
        }
        counter_add(w, "serial", 1);
        if (phase == KC_PHASE_CREATE) {
            id = kc_xasprintf("id-%lld", (long long)counter(w, "serial"));
        } else {
            struct json_object *oid;

            json_object_object_get_ex(obj, "id", &oid);
            id = kc_xstrdup(json_object_get_string(oid));
        }
        {
            struct json_object *ip;
            char *ips;

            if (obj && json_object_object_get_ex(
                           json_object_object_get(obj, "attrs"), "ip", &ip))
                ips = kc_xstrdup(json_object_get_string(ip));
            else
                ips = kc_xasprintf("10.0.0.%lld",
                                   (long long)counter(w, "serial"));
            json_object_object_add(attrs, "ip", json_object_new_string(ips));
            free(ips);
        }
        obj = json_object_new_object();
        json_object_object_add(obj, "id", json_object_new_string(id));
        json_object_object_add(obj, "attrs", attrs);
        json_object_object_add(objs, addr, obj);
        free(id);
        report(op, obj);
        kc_op_intent_clear(op);
        break;
    }
    case KC_PHASE_DELETE:
        if (kc_op_id(op) && obj &&
            strcmp(json_object_get_string(json_object_object_get(obj, "id")),
                   kc_op_id(op)) != 0) {
            /* Not the current object: an old one kept by create before
             * destroy. */
            char *key = kc_xasprintf("%s~%s", addr, kc_op_id(op));

            if (!json_object_object_get_ex(objs, key, NULL))
                ret = kc_err_set(kc_op_err(op), KC_ENOENT,
                                 "fake: no object '%s'", key);
            json_object_object_del(objs, key);
            free(key);
            goto out;
        }
        if (!obj) {
            ret = kc_err_set(kc_op_err(op), KC_ENOENT,
                             "fake: '%s' does not exist", addr);
            goto out;
        }
        json_object_object_del(objs, addr);
        break;
    case KC_PHASE_REVIEW:
        break;
    }
out:
    fake_world_save(ctx->world, w);
    json_object_put(w);
    return ret;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct fake_call *call = kc_container_of(h, struct fake_call, timer);
    struct kc_op *op = call->op;
    int status = call->status;

    free(call);
    kc_op_done(op, status);
}

static void on_delay(uv_timer_t *t)
{
    struct fake_call *call = kc_container_of(t, struct fake_call, timer);

    call->status = fake_work(call->op);
    uv_close((uv_handle_t *)&call->timer, on_timer_closed);
}

static int fake_start(struct kc_op *op);

static void on_intent_written(struct kc_op *op, int status)
{
    if (status < 0) {
        kc_op_done(op, status);
        return;
    }
    if (fake_start(op) < 0)
        kc_op_done(op, kc_op_err(op)->code);
}

/* fake.deploy: a non-idempotent create, announced by a write-ahead intent
 * and a generated seed kept in the state, both on disk before the call. */
static int deploy_create(struct kc_op *op)
{
    char key[256];
    const struct kc_value *seed;
    struct kc_value *data;
    int ret;

    kc_snprintf(key, sizeof(key), "%s.seed", kc_op_address(op));
    seed = kc_op_generated(op, key);
    if (!seed) {
        struct kc_value *v = kc_value_new_int((int64_t)uv_hrtime() % 1000000);

        ret = kc_op_generated_put(op, key, v, kc_op_err(op));
        kc_value_free(v);
        if (ret < 0)
            return ret;
        seed = kc_op_generated(op, key);
    }
    data = kc_value_new_map();
    kc_value_map_set(data, "seed", kc_value_dup(seed));
    ret = kc_op_intent_put(op, "deploy", data, kc_op_err(op));
    kc_value_free(data);
    if (ret == 0)
        ret = kc_op_persist(op, on_intent_written);
    return ret;
}

static int fake_start(struct kc_op *op)
{
    struct fake_ctx *ctx = kc_op_provider_data(op);
    enum kc_op_phase ph = kc_op_phase(op);
    int64_t delay =
        ph == KC_PHASE_OBSERVE || ph == KC_PHASE_READ || ph == KC_PHASE_LIST
            ? ctx->observe_delay_ms
            : ctx->delay_ms;
    struct json_object *w = load_or_die(ctx->world);
    struct fake_call *call;
    int ret;

    counter_add(w, "running", 1);
    if (counter(w, "running") > counter(w, "max_running"))
        counter_add(w, "max_running", 1);
    fake_world_save(ctx->world, w);
    json_object_put(w);
    call = kc_xcalloc(1, sizeof(*call));
    call->op = op;
    if (ctx->wait && ph != KC_PHASE_OBSERVE && ph != KC_PHASE_READ &&
        ph != KC_PHASE_LIST)
        kc_op_waiting(op, true);
    ret = uv_timer_init(kc_op_loop(op), &call->timer);
    if (ret == 0)
        ret = uv_timer_start(&call->timer, on_delay, (uint64_t)delay, 0);
    if (ret < 0)
        KC_BUG("fake: uv timer: %s", uv_strerror(ret));
    return 0;
}

static void identity_review(struct kc_op *op)
{
    if (kc_op_action(op) == KC_ACTION_REPLACE ||
        kc_op_action(op) == KC_ACTION_DELETE)
        kc_op_require_consent(op, "destroys the identity of '%s'",
                              kc_op_address(op));
    if (kc_op_action(op) == KC_ACTION_UPDATE)
        kc_op_warn(op, "updated in place");
}

static const struct kc_field thing_fields[] = {
    { "value", KC_VALUE_STRING, 0 },
    { "size", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "secret", KC_VALUE_STRING, KC_FIELD_SENSITIVE },
    { "label", KC_VALUE_STRING, KC_FIELD_IGNORE_DRIFT },
    { "ref", KC_VALUE_NULL, 0 },
    { "ip", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL, 0, 0 },
};

static const struct kc_field value_fields[] = {
    { "value", KC_VALUE_STRING, 0 },
    { "ref", KC_VALUE_NULL, 0 },
    { NULL, 0, 0 },
};

static const struct kc_field data_fields[] = {
    { "key", KC_VALUE_STRING, 0 },
    { NULL, 0, 0 },
};

static const struct kc_resource_type fake_thing = {
    .kind = "fake.thing",
    .fields = thing_fields,
    .list = fake_start,
    .observe = fake_start,
    .create = fake_start,
    .update = fake_start,
    .delete = fake_start,
};

static const struct kc_resource_type fake_frozen = {
    .kind = "fake.frozen",
    .fields = thing_fields,
    .concurrency = 2,
    .observe = fake_start,
    .create = fake_start,
    .delete = fake_start,
};

static const struct kc_resource_type fake_identity = {
    .kind = "fake.identity",
    .fields = value_fields,
    .observe = fake_start,
    .create = fake_start,
    .update = fake_start,
    .delete = fake_start,
    .review = identity_review,
};

static const struct kc_resource_type fake_contract = {
    .kind = "fake.contract",
    .fields = value_fields,
    .flags = KC_KIND_RETAIN,
    .observe = fake_start,
    .create = fake_start,
    .update = fake_start,
};

static const struct kc_resource_type fake_data = {
    .kind = "fake.data",
    .fields = data_fields,
    .flags = KC_KIND_DATA,
    .read = fake_start,
};

static const struct kc_resource_type fake_cbd = {
    .kind = "fake.cbd",
    .fields = thing_fields,
    .flags = KC_KIND_CREATE_BEFORE_DESTROY,
    .observe = fake_start,
    .create = fake_start,
    .delete = fake_start,
};

static const struct kc_resource_type fake_entry = {
    .kind = "fake.entry",
    .fields = value_fields,
    .observe = fake_start,
    .create = fake_start,
    .update = fake_start,
    .delete = fake_start,
};

static const struct kc_resource_type fake_deploy = {
    .kind = "fake.deploy",
    .fields = value_fields,
    .observe = fake_start,
    .create = deploy_create,
    .delete = fake_start,
};

static const struct kc_resource_type *const fake_kinds[] = {
    &fake_thing, &fake_frozen, &fake_identity, &fake_contract, &fake_data,
    &fake_cbd,   &fake_deploy, &fake_entry,    NULL,
};

const struct kc_provider_type kc_provider_fake = {
    .name = "fake",
    .kinds = fake_kinds,
    .init = fake_init,
    .cleanup = fake_cleanup,
};

/* The `fake:` manifest section (test executables only): NAME: {kind: thing,
 * FIELD: VALUE..., ref_from: ADDRESS.OUTPUT, after: [ADDRESS...], alias:
 * PREFIX (references starting with PREFIX name this resource)}. */
int kc_expand_section_fake(struct kc_expand *ex, const struct kc_node *section,
                           struct kc_err *err)
{
    if (section->type != KC_NODE_MAP)
        return kc_err_set(err, KC_EINVAL, "%s:%d:%d: fake: expected a map",
                          section->pos.file, section->pos.line,
                          section->pos.col);
    for (size_t i = 0; i < section->n; i++) {
        const struct kc_node *name = section->pairs[i].key;
        const struct kc_node *body = section->pairs[i].val;
        const struct kc_node *kind = kc_node_get(body, "kind");
        struct kc_resource *res;
        char *k;
        int ret;

        if (body->type != KC_NODE_MAP)
            return kc_err_set(
                err, KC_EINVAL, "%s:%d:%d: fake.%s: expected a map",
                body->pos.file, body->pos.line, body->pos.col, name->str);
        k = kc_xasprintf("fake.%s", kind ? kind->str : "thing");
        ret = kc_expand_add(ex, k, name->str, body, &res, err);
        free(k);
        if (ret < 0)
            return ret;
        for (size_t f = 0; f < body->n; f++) {
            const char *key = body->pairs[f].key->str;
            const struct kc_node *val = body->pairs[f].val;

            if (strcmp(key, "kind") == 0)
                continue;
            if (strcmp(key, "alias") == 0) {
                char *addr = kc_xasprintf(
                    "fake.%s.%s", kind ? kind->str : "thing", name->str);

                kc_expand_alias(ex, val->str, addr);
                free(addr);
                continue;
            }
            if (strcmp(key, "after") == 0) {
                for (size_t d = 0; d < val->n; d++)
                    kc_expand_depends_on(res, val->items[d]->str);
            } else if (strcmp(key, "ref_path") == 0) {
                const char *addr;
                char *out = NULL;

                if (kc_expand_resolve(ex, val->str, &addr, &out) < 0)
                    return kc_err_set(err, KC_ENOENT,
                                      "%s:%d:%d: ref_path: nothing supplies "
                                      "'%s' (yet)",
                                      val->pos.file, val->pos.line,
                                      val->pos.col, val->str);
                kc_expand_set_ref(res, "ref", addr, out);
                free(out);
            } else if (strcmp(key, "ref_from") == 0) {
                const char *dot = strrchr(val->str, '.');
                char *addr;

                if (!dot)
                    return kc_err_set(err, KC_EINVAL,
                                      "%s:%d:%d: ref_from: expected "
                                      "ADDRESS.OUTPUT",
                                      val->pos.file, val->pos.line,
                                      val->pos.col);
                addr = kc_xstrndup(val->str, (size_t)(dot - val->str));
                kc_expand_set_ref(res, "ref", addr, dot + 1);
                free(addr);
            } else {
                ret = kc_expand_set_node(ex, res, key, val, err);
                if (ret < 0)
                    return ret;
            }
        }
    }
    return 0;
}
