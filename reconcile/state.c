/* reconcile/state.c: the state file: load, validate, records, atomic write. */
#include "reconcile/state.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/rand.h>
#include <uv.h>

#include "reconcile/file.h"
#include "reconcile/hex.h"
#include "reconcile/json.h"

#define SALT_BYTES 16

/* The arrays below are kept sorted by their first member, the name, so that
 * lookups are binary searches and listings come out sorted. */
struct state_rec {
    char *addr;
    struct kc_state_resource view; /* points into the members below */
    char *kind, *provider_id, *inputs_digest, *updated_at;
    struct kc_value *attrs, *outputs;
    char **deps;
    size_t ndeps;
};

struct state_intent {
    char *addr;
    struct kc_state_intent view;
    char *op, *created_at;
    struct kc_value *data;
};

struct state_gen {
    char *key;
    struct kc_value *val;
};

struct sorted {
    void **items; /* each points to a struct whose first member is a char * */
    size_t n, cap;
};

struct kc_state {
    char *path;
    char *lineage, *salt, *deployment;
    int64_t serial;
    bool exists;
    struct sorted recs, intents, gens;
    /* The async writer: one write in flight at a time. The worker thread
     * reads only path, wtext and wlen and writes only wstatus and werr. */
    uv_work_t work;
    uv_loop_t *loop;
    bool busy;
    char *wtext;
    size_t wlen;
    int64_t wserial;
    int wstatus;
    struct kc_err werr;
    struct kc_state_write_req *inflight;
    struct kc_state_write_req *waiting, **waiting_tail;
};

static const char *item_name(const void *item)
{
    return *(char *const *)item;
}

/* Index of NAME in S, or -(insertion point) - 1. */
static ptrdiff_t sorted_find(const struct sorted *s, const char *name)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(item_name(s->items[mid]), name);

        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ptrdiff_t)lo - 1;
}

static void *sorted_get(const struct sorted *s, const char *name)
{
    ptrdiff_t i = sorted_find(s, name);

    return i >= 0 ? s->items[i] : NULL;
}

/* Puts ITEM in S; returns the item it replaced (caller frees) or NULL. */
static void *sorted_put(struct sorted *s, void *item)
{
    ptrdiff_t i = sorted_find(s, item_name(item));
    size_t at;

    if (i >= 0) {
        void *old = s->items[i];

        s->items[i] = item;
        return old;
    }
    at = (size_t)(-i - 1);
    kc_xgrow(&s->items, &s->cap, s->n + 1, sizeof(*s->items));
    memmove(s->items + at + 1, s->items + at, (s->n - at) * sizeof(*s->items));
    s->items[at] = item;
    s->n++;
    return NULL;
}

/* Takes NAME's item out of S; returns it (caller frees) or NULL. */
static void *sorted_take(struct sorted *s, const char *name)
{
    ptrdiff_t i = sorted_find(s, name);
    void *item;

    if (i < 0)
        return NULL;
    item = s->items[i];
    memmove(s->items + i, s->items + i + 1,
            (s->n - (size_t)i - 1) * sizeof(*s->items));
    s->n--;
    return item;
}

static void rec_free(struct state_rec *r)
{
    if (!r)
        return;
    free(r->addr);
    free(r->kind);
    free(r->provider_id);
    free(r->inputs_digest);
    free(r->updated_at);
    kc_value_free(r->attrs);
    kc_value_free(r->outputs);
    for (size_t i = 0; i < r->ndeps; i++)
        free(r->deps[i]);
    free(r->deps);
    free(r);
}

static void intent_free(struct state_intent *in)
{
    if (!in)
        return;
    free(in->addr);
    free(in->op);
    free(in->created_at);
    kc_value_free(in->data);
    free(in);
}

/* Points R's view at its members and puts R in ST (replacing and freeing a
 * record of the same address). */
static void rec_insert(struct kc_state *st, struct state_rec *r)
{
    r->view = (struct kc_state_resource){
        .kind = r->kind,
        .provider_id = r->provider_id,
        .attrs = r->attrs,
        .inputs_digest = r->inputs_digest,
        .outputs = r->outputs,
        .deps = (const char *const *)r->deps,
        .ndeps = r->ndeps,
        .updated_at = r->updated_at,
    };
    rec_free(sorted_put(&st->recs, r));
}

/* The same for an intent. */
static void intent_insert(struct kc_state *st, struct state_intent *in)
{
    in->view = (struct kc_state_intent){
        .op = in->op,
        .created_at = in->created_at,
        .data = in->data,
    };
    intent_free(sorted_put(&st->intents, in));
}

static void gen_free(struct state_gen *g)
{
    if (!g)
        return;
    free(g->key);
    kc_value_free(g->val);
    free(g);
}

static void now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        KC_BUG("cannot format the time");
}

static int random_hex(char *out, size_t nbytes, struct kc_err *err)
{
    unsigned char raw[32];

    if (nbytes > sizeof(raw))
        KC_BUG("random_hex: %zu bytes", nbytes);
    if (RAND_bytes(raw, (int)nbytes) != 1)
        return kc_err_from_ssl(err, "cannot get random bytes");
    kc_hex_encode(raw, nbytes, out);
    return 0;
}

static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;

        if (dash ? s[i] != '-'
                 : !isxdigit((unsigned char)s[i]) ||
                       isupper((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);

    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

/* Names (addresses, keys, ops) are printable, bounded and non-empty. */
static int check_name(const char *what, const char *s, struct kc_err *err)
{
    size_t n;

    if (!s || !s[0])
        return kc_err_set(err, KC_EINVAL, "%s is empty", what);
    n = strlen(s);
    if (n > KC_STATE_MAX_NAME)
        return kc_err_set(err, KC_EINVAL, "%s is longer than %d bytes", what,
                          KC_STATE_MAX_NAME);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return kc_err_set(err, KC_EINVAL,
                              "%s '%.64s' holds a control character", what, s);
    return 0;
}

static int check_storable(const char *what, const struct kc_value *v,
                          bool allow_sensitive, struct kc_err *err)
{
    if (!v)
        return 0;
    if (kc_value_has_unknown(v))
        return kc_err_set(err, KC_EINVAL,
                          "%s holds a value known only after apply", what);
    if (!allow_sensitive && kc_value_is_sensitive(v))
        return kc_err_set(err, KC_EINVAL,
                          "%s is sensitive and the state never holds a secret",
                          what);
    return 0;
}

/* A copy of V in which every sensitive value is its salted digest. */
static int digested(const struct kc_state *st, const struct kc_value *v,
                    struct kc_value **out, struct kc_err *err)
{
    struct json_object *j;
    int ret;

    *out = NULL;
    if (!v)
        return 0;
    if (!kc_value_is_sensitive(v)) {
        *out = kc_value_dup(v);
        return 0;
    }
    j = kc_value_to_json(v, st->salt);
    ret = kc_value_from_json(j, out, err);
    json_object_put(j);
    return ret;
}

static struct kc_state *state_new(const char *path)
{
    struct kc_state *st = kc_xcalloc(1, sizeof(*st));

    st->path = kc_xstrdup(path);
    st->waiting_tail = &st->waiting;
    return st;
}

void kc_state_free(struct kc_state *st)
{
    if (!st)
        return;
    if (st->busy)
        KC_BUG("state '%s' freed while a write is in flight", st->path);
    for (size_t i = 0; i < st->recs.n; i++)
        rec_free(st->recs.items[i]);
    for (size_t i = 0; i < st->intents.n; i++)
        intent_free(st->intents.items[i]);
    for (size_t i = 0; i < st->gens.n; i++)
        gen_free(st->gens.items[i]);
    free(st->recs.items);
    free(st->intents.items);
    free(st->gens.items);
    free(st->path);
    free(st->lineage);
    free(st->salt);
    free(st->deployment);
    free(st);
}

/* ---- loading ---------------------------------------------------------- */

/* Validation messages name the JSON path: resources["a.b"].attrs. */
static int bad(struct kc_err *err, const char *path, const char *what)
{
    return kc_err_set(err, KC_ESTATE, "%s: %s", path, what);
}

static int check_members(struct json_object *obj, const char *path,
                         const char *const *allowed,
                         const char *const *required, struct kc_err *err)
{
    json_object_object_foreach (obj, key, val) {
        bool ok = false;

        (void)val;
        for (size_t i = 0; allowed[i]; i++)
            ok = ok || strcmp(key, allowed[i]) == 0;
        if (!ok)
            return kc_err_set(err, KC_ESTATE, "%s: unknown member '%.64s'",
                              path, key);
    }
    for (size_t i = 0; required[i]; i++)
        if (!json_object_object_get_ex(obj, required[i], NULL))
            return kc_err_set(err, KC_ESTATE, "%s: missing member '%s'", path,
                              required[i]);
    return 0;
}

static struct json_object *member(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;

    json_object_object_get_ex(obj, key, &v);
    return v;
}

/* A string member (or NULL when NULLABLE and null) into *OUT (a copy). */
static int get_string(struct json_object *obj, const char *path,
                      const char *key, bool nullable, char **out,
                      struct kc_err *err)
{
    struct json_object *v = member(obj, key);
    char *p;

    *out = NULL;
    if (!v && nullable)
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        p = kc_xasprintf("%s.%s", path, key);
        kc_err_set(err, KC_ESTATE, "%s: expected a string%s", p,
                   nullable ? " or null" : "");
        free(p);
        return KC_ESTATE;
    }
    if (json_object_get_string_len(v) == 0 ||
        memchr(json_object_get_string(v), '\0',
               (size_t)json_object_get_string_len(v))) {
        p = kc_xasprintf("%s.%s", path, key);
        kc_err_set(err, KC_ESTATE, "%s: expected a non-empty string", p);
        free(p);
        return KC_ESTATE;
    }
    *out = kc_xstrdup(json_object_get_string(v));
    return 0;
}

static int get_map_value(struct json_object *obj, const char *path,
                         const char *key, struct kc_value **out,
                         struct kc_err *err)
{
    struct json_object *v = member(obj, key);
    char *p = kc_xasprintf("%s.%s", path, key);
    int ret;

    *out = NULL;
    if (!json_object_is_type(v, json_type_object)) {
        ret = bad(err, p, "expected an object");
        goto out;
    }
    ret = kc_value_from_json(v, out, err);
    if (ret < 0) {
        kc_err_prefix(err, "%s", p);
        err->code = ret = KC_ESTATE;
    }
out:
    free(p);
    return ret;
}

static int load_resource(struct kc_state *st, const char *addr,
                         struct json_object *obj, struct kc_err *err)
{
    static const char *const allowed[] = {
        "kind",    "provider_id",  "attrs",      "inputs_digest",
        "outputs", "dependencies", "updated_at", NULL,
    };
    static const char *const required[] = {
        "kind", "attrs", "outputs", "dependencies", "updated_at", NULL,
    };
    struct state_rec *r = kc_xcalloc(1, sizeof(*r));
    char *path = kc_xasprintf("resources[\"%s\"]", addr);
    struct json_object *deps;
    int ret;

    r->addr = kc_xstrdup(addr);
    ret = check_name("address", addr, err);
    if (ret == 0 && !json_object_is_type(obj, json_type_object))
        ret = bad(err, path, "expected an object");
    if (ret == 0)
        ret = check_members(obj, path, allowed, required, err);
    if (ret == 0)
        ret = get_string(obj, path, "kind", false, &r->kind, err);
    if (ret == 0)
        ret = get_string(obj, path, "provider_id", true, &r->provider_id, err);
    if (ret == 0)
        ret = get_string(obj, path, "inputs_digest", true, &r->inputs_digest,
                         err);
    if (ret == 0)
        ret = get_string(obj, path, "updated_at", false, &r->updated_at, err);
    if (ret == 0)
        ret = get_map_value(obj, path, "attrs", &r->attrs, err);
    if (ret == 0)
        ret = get_map_value(obj, path, "outputs", &r->outputs, err);
    if (ret < 0)
        goto out;
    deps = member(obj, "dependencies");
    if (!json_object_is_type(deps, json_type_array)) {
        ret = kc_err_set(err, KC_ESTATE, "%s.dependencies: expected an array",
                         path);
        goto out;
    }
    r->ndeps = json_object_array_length(deps);
    r->deps = kc_xcalloc(r->ndeps + 1, sizeof(*r->deps));
    for (size_t i = 0; i < r->ndeps; i++) {
        struct json_object *d = json_object_array_get_idx(deps, i);

        if (!json_object_is_type(d, json_type_string) ||
            check_name("dependency", json_object_get_string(d), NULL) < 0) {
            ret = kc_err_set(err, KC_ESTATE,
                             "%s.dependencies[%zu]: expected an address", path,
                             i);
            goto out;
        }
        r->deps[i] = kc_xstrdup(json_object_get_string(d));
    }
    rec_insert(st, r);
    r = NULL;
out:
    rec_free(r);
    free(path);
    return ret;
}

static int load_intent(struct kc_state *st, const char *addr,
                       struct json_object *obj, struct kc_err *err)
{
    static const char *const members[] = { "op", "created_at", "data", NULL };
    struct state_intent *in = kc_xcalloc(1, sizeof(*in));
    char *path = kc_xasprintf("intents[\"%s\"]", addr);
    int ret;

    in->addr = kc_xstrdup(addr);
    ret = check_name("address", addr, err);
    if (ret == 0 && !json_object_is_type(obj, json_type_object))
        ret = bad(err, path, "expected an object");
    if (ret == 0)
        ret = check_members(obj, path, members, members, err);
    if (ret == 0)
        ret = get_string(obj, path, "op", false, &in->op, err);
    if (ret == 0)
        ret = get_string(obj, path, "created_at", false, &in->created_at, err);
    if (ret == 0)
        ret = get_map_value(obj, path, "data", &in->data, err);
    if (ret < 0)
        goto out;
    intent_insert(st, in);
    in = NULL;
out:
    intent_free(in);
    free(path);
    return ret;
}

static int load_generated(struct kc_state *st, const char *key,
                          struct json_object *obj, struct kc_err *err)
{
    struct state_gen *g = kc_xcalloc(1, sizeof(*g));
    int ret;

    g->key = kc_xstrdup(key);
    ret = check_name("generated key", key, err);
    if (ret == 0) {
        ret = kc_value_from_json(obj, &g->val, err);
        if (ret < 0) {
            kc_err_prefix(err, "generated[\"%s\"]", key);
            err->code = ret = KC_ESTATE;
        }
    }
    if (ret == 0) {
        gen_free(sorted_put(&st->gens, g));
        g = NULL;
    }
    gen_free(g);
    return ret;
}

static int state_from_json(struct kc_state *st, struct json_object *root,
                           struct kc_err *err)
{
    static const char *const members[] = {
        "format_version", "lineage", "serial",    "deployment", "salt",
        "resources",      "intents", "generated", NULL,
    };
    struct json_object *v;
    int ret;

    if (!json_object_is_type(root, json_type_object))
        return bad(err, "$", "expected an object");
    /* The format first: a newer kmsctl may have added members. */
    v = member(root, "format_version");
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)
        return bad(err, "format_version", "expected an integer from 1");
    if (json_object_get_int64(v) > KC_STATE_FORMAT)
        return kc_err_set(err, KC_ENOTSUP,
                          "state '%s' has format %" PRId64
                          ", this kmsctl reads up to %d: upgrade kmsctl",
                          st->path, json_object_get_int64(v), KC_STATE_FORMAT);
    ret = check_members(root, "$", members, members, err);
    if (ret < 0)
        return ret;
    ret = get_string(root, "$", "lineage", false, &st->lineage, err);
    if (ret < 0)
        return ret;
    if (!is_uuid(st->lineage))
        return bad(err, "lineage", "expected a lower-case UUID");
    ret = get_string(root, "$", "salt", false, &st->salt, err);
    if (ret < 0)
        return ret;
    if (!is_hex(st->salt, 32, 128))
        return bad(err, "salt", "expected 32 to 128 lower-case hex digits");
    v = member(root, "serial");
    /* Bounded so that +1 never overflows and every reader of JSON gets the
     * exact number. */
    if (!json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0 ||
        json_object_get_int64(v) > ((int64_t)1 << 53))
        return bad(err, "serial", "expected an integer from 0 to 2^53");
    st->serial = json_object_get_int64(v);
    ret = get_string(root, "$", "deployment", true, &st->deployment, err);
    if (ret < 0)
        return ret;
    if (st->deployment && check_name("deployment", st->deployment, NULL) < 0)
        return bad(err, "deployment", "expected a name");
    v = member(root, "resources");
    if (!json_object_is_type(v, json_type_object))
        return bad(err, "resources", "expected an object");
    json_object_object_foreach (v, addr, rec) {
        ret = load_resource(st, addr, rec, err);
        if (ret < 0)
            return ret;
    }
    v = member(root, "intents");
    if (!json_object_is_type(v, json_type_object))
        return bad(err, "intents", "expected an object");
    json_object_object_foreach (v, iaddr, in) {
        ret = load_intent(st, iaddr, in, err);
        if (ret < 0)
            return ret;
    }
    v = member(root, "generated");
    if (!json_object_is_type(v, json_type_object))
        return bad(err, "generated", "expected an object");
    json_object_object_foreach (v, key, val) {
        ret = load_generated(st, key, val, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int state_init_new(struct kc_state *st, struct kc_err *err)
{
    char uuid[37], salt[2 * SALT_BYTES + 1];
    int ret;

    ret = kc_hex_uuid4(uuid, err);
    if (ret == 0)
        ret = random_hex(salt, SALT_BYTES, err);
    if (ret < 0)
        return ret;
    st->lineage = kc_xstrdup(uuid);
    st->salt = kc_xstrdup(salt);
    return 0;
}

/* What to tell a user whose state file is broken. */
static void refuse_broken(struct kc_err *err, const char *path)
{
    char *bak = kc_xasprintf("%s.backup", path);
    bool have_bak = access(bak, F_OK) == 0;
    char why[sizeof(err->msg)];

    memcpy(why, err->msg, sizeof(why));
    if (have_bak)
        kc_err_set(err, KC_ESTATE,
                   "state '%s' is not valid: %s; it was left as it is: fix "
                   "it, or restore the previous version from '%s'",
                   path, why, bak);
    else
        kc_err_set(err, KC_ESTATE,
                   "state '%s' is not valid: %s; it was left as it is: fix "
                   "it (there is no backup '%s')",
                   path, why, bak);
    free(bak);
}

int kc_state_default_path(const char *manifest_path, const char *name,
                          char **out, struct kc_err *err)
{
    char *dir;

    *out = NULL;
    if (!name || !name[0] || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > 200 || strchr(name, '/'))
        return kc_err_set(err, KC_EINVAL,
                          "deployment name '%.64s' cannot name a state file: "
                          "use --state PATH",
                          name ? name : "");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return kc_err_set(err, KC_EINVAL,
                              "deployment name holds a control character: "
                              "use --state PATH");
    dir = kc_file_dirname(manifest_path);
    *out = kc_xasprintf("%s/.kmsctl/%s.state.json", dir, name);
    free(dir);
    return 0;
}

int kc_state_load(const char *path, struct kc_state **out, struct kc_err *err)
{
    struct kc_state *st = NULL;
    struct json_object *root = NULL;
    char *text = NULL;
    size_t len = 0;
    struct kc_err local = { 0 };
    int ret;

    if (!err)
        err = &local;
    *out = NULL;
    if (!path || !path[0])
        return kc_err_set(err, KC_EINVAL, "no state path");
    st = state_new(path);
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        ret = state_init_new(st, err);
        goto out;
    }
    ret = kc_file_read(path, KC_STATE_MAX_BYTES, &text, &len, err);
    if (ret == KC_ERANGE) {
        refuse_broken(err, path);
        ret = KC_ESTATE;
    }
    if (ret < 0)
        goto out;
    ret = kc_json_parse(text, len, "json", &root, err);
    if (ret == 0)
        ret = state_from_json(st, root, err);
    if (ret < 0) {
        /* A newer format is not broken: it needs a newer kmsctl. */
        if (ret != KC_ENOTSUP)
            refuse_broken(err, path);
        ret = err->code = KC_ESTATE;
        goto out;
    }
    st->exists = true;
out:
    json_object_put(root);
    free(text);
    if (ret < 0)
        kc_state_free(st);
    else
        *out = st;
    return ret;
}

int kc_state_check_lineage(const struct kc_state *st, const char *expected,
                           struct kc_err *err)
{
    if (!expected || strcmp(expected, st->lineage) == 0)
        return 0;
    return kc_err_set(err, KC_ESTATE,
                      "state '%s' has lineage %s, expected %s: it is the state "
                      "of another deployment",
                      st->path, st->lineage, expected);
}

int kc_state_check_deployment(struct kc_state *st, const char *name,
                              struct kc_err *err)
{
    int ret = check_name("deployment name", name, err);

    if (ret < 0)
        return ret;
    if (!st->deployment) {
        st->deployment = kc_xstrdup(name);
        return 0;
    }
    if (strcmp(st->deployment, name) == 0)
        return 0;
    return kc_err_set(err, KC_ESTATE,
                      "state '%s' belongs to deployment '%s', not '%s': check "
                      "-f and --state",
                      st->path, st->deployment, name);
}

const char *kc_state_path(const struct kc_state *st)
{
    return st->path;
}

const char *kc_state_lineage(const struct kc_state *st)
{
    return st->lineage;
}

const char *kc_state_salt(const struct kc_state *st)
{
    return st->salt;
}

const char *kc_state_deployment(const struct kc_state *st)
{
    return st->deployment;
}

int64_t kc_state_serial(const struct kc_state *st)
{
    return st->serial;
}

bool kc_state_exists(const struct kc_state *st)
{
    return st->exists;
}

/* ---- records ---------------------------------------------------------- */

int kc_state_put(struct kc_state *st, const char *addr,
                 const struct kc_state_resource *rec, struct kc_err *err)
{
    struct state_rec *r = NULL;
    char now[32];
    int ret;

    ret = check_name("address", addr, err);
    if (ret == 0)
        ret = check_name("kind", rec->kind, err);
    if (ret < 0)
        goto fail;
    if ((rec->attrs && rec->attrs->type != KC_VALUE_MAP) ||
        (rec->outputs && rec->outputs->type != KC_VALUE_MAP)) {
        ret = kc_err_set(err, KC_EINVAL, "attrs and outputs must be maps");
        goto fail;
    }
    ret = check_storable("attrs", rec->attrs, true, err);
    if (ret == 0)
        ret = check_storable("outputs", rec->outputs, true, err);
    if (ret < 0)
        goto fail;
    r = kc_xcalloc(1, sizeof(*r));
    r->addr = kc_xstrdup(addr);
    r->kind = kc_xstrdup(rec->kind);
    r->provider_id = rec->provider_id && rec->provider_id[0]
                         ? kc_xstrdup(rec->provider_id)
                         : NULL;
    r->inputs_digest = rec->inputs_digest && rec->inputs_digest[0]
                           ? kc_xstrdup(rec->inputs_digest)
                           : NULL;
    if (rec->updated_at && rec->updated_at[0]) {
        r->updated_at = kc_xstrdup(rec->updated_at);
    } else {
        now_rfc3339(now);
        r->updated_at = kc_xstrdup(now);
    }
    ret = digested(st, rec->attrs, &r->attrs, err);
    if (ret == 0)
        ret = digested(st, rec->outputs, &r->outputs, err);
    if (ret < 0)
        goto fail;
    if (!r->attrs)
        r->attrs = kc_value_new_map();
    if (!r->outputs)
        r->outputs = kc_value_new_map();
    r->deps = kc_xcalloc(rec->ndeps + 1, sizeof(*r->deps));
    for (size_t i = 0; i < rec->ndeps; i++) {
        ret = check_name("dependency", rec->deps[i], err);
        if (ret < 0)
            goto fail;
        r->deps[i] = kc_xstrdup(rec->deps[i]);
        r->ndeps++;
    }
    rec_insert(st, r);
    return 0;
fail:
    rec_free(r);
    return kc_err_prefix(err, "cannot record '%s' in the state",
                         addr ? addr : "");
}

const struct kc_state_resource *kc_state_get(const struct kc_state *st,
                                             const char *addr)
{
    struct state_rec *r = sorted_get(&st->recs, addr);

    return r ? &r->view : NULL;
}

bool kc_state_remove(struct kc_state *st, const char *addr)
{
    struct state_rec *r = sorted_take(&st->recs, addr);

    rec_free(r);
    return r != NULL;
}

size_t kc_state_count(const struct kc_state *st)
{
    return st->recs.n;
}

const char *kc_state_address(const struct kc_state *st, size_t i)
{
    return i < st->recs.n ? item_name(st->recs.items[i]) : NULL;
}

/* ---- intents and generated values -------------------------------------- */

int kc_state_intent_put(struct kc_state *st, const char *addr, const char *op,
                        const struct kc_value *data, struct kc_err *err)
{
    struct state_intent *in;
    char now[32];
    int ret;

    ret = check_name("address", addr, err);
    if (ret == 0)
        ret = check_name("intent op", op, err);
    if (ret == 0 && data && data->type != KC_VALUE_MAP)
        ret = kc_err_set(err, KC_EINVAL, "intent data must be a map");
    if (ret == 0)
        ret = check_storable("intent data", data, false, err);
    if (ret < 0)
        return kc_err_prefix(err, "cannot record an intent for '%s'",
                             addr ? addr : "");
    now_rfc3339(now);
    in = kc_xcalloc(1, sizeof(*in));
    in->addr = kc_xstrdup(addr);
    in->op = kc_xstrdup(op);
    in->created_at = kc_xstrdup(now);
    in->data = data ? kc_value_dup(data) : kc_value_new_map();
    intent_insert(st, in);
    return 0;
}

const struct kc_state_intent *kc_state_intent_get(const struct kc_state *st,
                                                  const char *addr)
{
    struct state_intent *in = sorted_get(&st->intents, addr);

    return in ? &in->view : NULL;
}

bool kc_state_intent_clear(struct kc_state *st, const char *addr)
{
    struct state_intent *in = sorted_take(&st->intents, addr);

    intent_free(in);
    return in != NULL;
}

size_t kc_state_intent_count(const struct kc_state *st)
{
    return st->intents.n;
}

const char *kc_state_intent_address(const struct kc_state *st, size_t i)
{
    return i < st->intents.n ? item_name(st->intents.items[i]) : NULL;
}

const struct kc_value *kc_state_generated_get(const struct kc_state *st,
                                              const char *key)
{
    struct state_gen *g = sorted_get(&st->gens, key);

    return g ? g->val : NULL;
}

int kc_state_generated_put(struct kc_state *st, const char *key,
                           const struct kc_value *val, struct kc_err *err)
{
    struct state_gen *g;
    int ret;

    ret = check_name("generated key", key, err);
    if (ret == 0 && !val)
        ret = kc_err_set(err, KC_EINVAL, "no value");
    if (ret == 0)
        ret = check_storable("the value", val, false, err);
    if (ret < 0)
        return kc_err_prefix(err, "cannot keep generated value '%s'",
                             key ? key : "");
    g = kc_xcalloc(1, sizeof(*g));
    g->key = kc_xstrdup(key);
    g->val = kc_value_dup(val);
    gen_free(sorted_put(&st->gens, g));
    return 0;
}

/* ---- serialisation ------------------------------------------------------ */

static struct json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

static struct json_object *map_json(const struct kc_value *v)
{
    /* Stored values are never sensitive (put digests them); no salt is
     * needed, and none given means a bug would show as "(sensitive)". */
    struct json_object *o = v ? kc_value_to_json(v, NULL) : NULL;

    return o ? o : json_object_new_object();
}

static struct json_object *rec_json(const struct state_rec *r)
{
    struct json_object *o = json_object_new_object();
    struct json_object *deps = json_object_new_array();

    for (size_t i = 0; i < r->ndeps; i++)
        json_object_array_add(deps, json_object_new_string(r->deps[i]));
    /* json_object_object_add steals each value. */
    json_object_object_add(o, "kind", json_object_new_string(r->kind));
    json_object_object_add(o, "provider_id", str_or_null(r->provider_id));
    json_object_object_add(o, "attrs", map_json(r->attrs));
    json_object_object_add(o, "inputs_digest", str_or_null(r->inputs_digest));
    json_object_object_add(o, "outputs", map_json(r->outputs));
    json_object_object_add(o, "dependencies", deps);
    json_object_object_add(o, "updated_at",
                           json_object_new_string(r->updated_at));
    return o;
}

struct json_object *kc_state_resource_json(const struct kc_state *st,
                                           const char *addr)
{
    struct state_rec *r = sorted_get(&st->recs, addr);

    return r ? rec_json(r) : NULL;
}

struct json_object *kc_state_to_json(const struct kc_state *st, int64_t serial)
{
    struct json_object *root = json_object_new_object();
    struct json_object *recs = json_object_new_object();
    struct json_object *ints = json_object_new_object();
    struct json_object *gens = json_object_new_object();

    for (size_t i = 0; i < st->recs.n; i++) {
        const struct state_rec *r = st->recs.items[i];

        json_object_object_add(recs, r->addr, rec_json(r));
    }
    for (size_t i = 0; i < st->intents.n; i++) {
        const struct state_intent *in = st->intents.items[i];
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "op", json_object_new_string(in->op));
        json_object_object_add(o, "created_at",
                               json_object_new_string(in->created_at));
        json_object_object_add(o, "data", map_json(in->data));
        json_object_object_add(ints, in->addr, o);
    }
    for (size_t i = 0; i < st->gens.n; i++) {
        const struct state_gen *g = st->gens.items[i];

        json_object_object_add(gens, g->key, kc_value_to_json(g->val, NULL));
    }
    json_object_object_add(root, "format_version",
                           json_object_new_int(KC_STATE_FORMAT));
    json_object_object_add(root, "lineage",
                           json_object_new_string(st->lineage));
    json_object_object_add(root, "serial", json_object_new_int64(serial));
    json_object_object_add(root, "deployment", str_or_null(st->deployment));
    json_object_object_add(root, "salt", json_object_new_string(st->salt));
    json_object_object_add(root, "resources", recs);
    json_object_object_add(root, "intents", ints);
    json_object_object_add(root, "generated", gens);
    return root;
}

static char *state_text(const struct kc_state *st, int64_t serial, size_t *len)
{
    struct json_object *root = kc_state_to_json(st, serial);
    char *dump = kc_json_dump(root, true);
    char *text = kc_xasprintf("%s\n", dump);

    free(dump);
    json_object_put(root);
    *len = strlen(text);
    return text;
}

/* ---- files -------------------------------------------------------------- */

/* Makes "<path>.backup" the version now at PATH, complete or not at all: a
 * hard link to the current file (which is only ever replaced by rename,
 * never changed in place) under a temp name, renamed over the backup. Where
 * links are not supported, a copy written atomically. */
static int keep_backup(const char *path, struct kc_err *err)
{
    char *bak = kc_xasprintf("%s.backup", path);
    char *tmp = kc_xasprintf("%s.backup.tmp.%ld", path, (long)getpid());
    char *text = NULL;
    size_t len = 0;
    int ret = 0;

    if (unlink(tmp) < 0 && errno != ENOENT) {
        ret = kc_err_from_errno(err, errno, "cannot remove '%s'", tmp);
        goto out;
    }
    if (link(path, tmp) == 0) {
        /* The old inode may predate mode 0600 (a file made by hand). */
        if (chmod(tmp, 0600) < 0 || rename(tmp, bak) < 0)
            ret = kc_err_from_errno(err, errno, "cannot make backup '%s'", bak);
        /* rename() does nothing when both names are links to one inode (a
         * writer killed after its backup, before its rename): TMP is left. */
        (void)unlink(tmp);
        goto out;
    }
    if (errno == ENOENT)
        goto out; /* nothing to keep yet */
    if (errno != EPERM && errno != EXDEV && errno != EOPNOTSUPP &&
        errno != EMLINK) {
        ret = kc_err_from_errno(err, errno, "cannot link '%s' to '%s'", path,
                                tmp);
        goto out;
    }
    ret = kc_file_read(path, KC_STATE_MAX_BYTES, &text, &len, err);
    if (ret == 0)
        ret = kc_file_write_atomic(bak, text, len, 0600, err);
out:
    free(text);
    free(tmp);
    free(bak);
    return ret;
}

/* Removes the temp files of writes that were killed before their rename
 * ("<state>.tmp.XXXXXX", "<state>.backup.tmp.PID"). Only a writer holding
 * the lock calls this, so none of them belongs to a live write. Best effort:
 * a leftover costs disk space, never correctness. */
static void remove_leftovers(const char *dir, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + blen;

        if (strncmp(e->d_name, base, blen) != 0 ||
            (strncmp(rest, ".tmp.", 5) != 0 &&
             strncmp(rest, ".backup.tmp.", 12) != 0))
            continue;
        /* A leftover that cannot be removed is left for the next write. */
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static int write_file(const char *path, const char *text, size_t len,
                      struct kc_err *err)
{
    char *dir = kc_file_dirname(path);
    int ret;

    ret = kc_file_mkdirs(dir, 0700, err);
    if (ret == 0) {
        remove_leftovers(dir, path);
        ret = keep_backup(path, err);
    }
    if (ret == 0)
        ret = kc_file_write_atomic(path, text, len, 0600, err);
    if (ret < 0)
        kc_err_prefix(err, "cannot write state '%s'", path);
    free(dir);
    return ret;
}

int kc_state_write(struct kc_state *st, struct kc_err *err)
{
    size_t len;
    char *text;
    int ret;

    if (st->busy)
        return kc_err_set(err, KC_EAGAIN,
                          "state '%s' is being written asynchronously",
                          st->path);
    text = state_text(st, st->serial + 1, &len);
    ret = write_file(st->path, text, len, err);
    free(text);
    if (ret == 0) {
        st->serial++;
        st->exists = true;
    }
    return ret;
}

/* ---- asynchronous writes ------------------------------------------------ */

static void on_write_work(uv_work_t *work)
{
    struct kc_state *st = kc_container_of(work, struct kc_state, work);

    kc_err_clear(&st->werr);
    st->wstatus = write_file(st->path, st->wtext, st->wlen, &st->werr);
}

static void on_write_done(uv_work_t *work, int status);

static int start_write(struct kc_state *st, uv_loop_t *loop, struct kc_err *err)
{
    int64_t serial = st->serial + 1;
    int r;

    st->wtext = state_text(st, serial, &st->wlen);
    st->wserial = serial;
    st->loop = loop;
    r = uv_queue_work(loop, &st->work, on_write_work, on_write_done);
    if (r < 0) {
        free(st->wtext);
        st->wtext = NULL;
        kc_err_from_uv(err, r, "cannot queue the state write");
        return kc_err_prefix(err, "state '%s'", st->path);
    }
    st->serial = serial;
    st->busy = true;
    return 0;
}

static void finish_batch(struct kc_state_write_req *batch, int64_t serial,
                         int status, const struct kc_err *err)
{
    while (batch) {
        struct kc_state_write_req *next = batch->next;

        batch->next = NULL;
        batch->serial = serial;
        if (status < 0)
            batch->err = *err;
        batch->cb(batch, status);
        batch = next;
    }
}

static void on_write_done(uv_work_t *work, int status)
{
    struct kc_state *st = kc_container_of(work, struct kc_state, work);
    struct kc_state_write_req *done = st->inflight, *failed = NULL;
    struct kc_err err = st->werr, start_err = { 0 };
    int64_t serial = st->wserial;
    int ret = st->wstatus;

    free(st->wtext);
    st->wtext = NULL;
    st->inflight = NULL;
    st->busy = false;
    if (status < 0)
        ret = kc_err_from_uv(&err, status, "state write");
    if (ret == 0)
        st->exists = true;
    /* Requests made meanwhile share one write of the latest contents. */
    if (st->waiting) {
        struct kc_state_write_req *next = st->waiting;

        st->waiting = NULL;
        st->waiting_tail = &st->waiting;
        if (start_write(st, st->loop, &start_err) == 0)
            st->inflight = next;
        else
            failed = next;
    }
    /* Nothing below touches ST: a callback may free it once it is idle. */
    finish_batch(done, serial, ret, &err);
    finish_batch(failed, 0, start_err.code, &start_err);
}

int kc_state_write_async(struct kc_state *st, uv_loop_t *loop,
                         struct kc_state_write_req *req, kc_state_write_cb cb,
                         struct kc_err *err)
{
    int ret;

    if (!loop || !req || !cb)
        return kc_err_set(err, KC_EINVAL, "state write: no loop or callback");
    req->st = st;
    req->cb = cb;
    req->next = NULL;
    req->serial = 0;
    kc_err_clear(&req->err);
    if (st->busy) {
        if (loop != st->loop)
            return kc_err_set(err, KC_EINVAL,
                              "state '%s' is being written from another loop",
                              st->path);
        *st->waiting_tail = req;
        st->waiting_tail = &req->next;
        return 0;
    }
    ret = start_write(st, loop, err);
    if (ret < 0)
        return ret;
    st->inflight = req;
    return 0;
}

bool kc_state_is_writing(const struct kc_state *st)
{
    return st->busy;
}
