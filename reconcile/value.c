/* reconcile/value.c: attribute values with sensitivity and unknowns. */
#include "reconcile/value.h"

#include "reconcile/buf.h"
#include "reconcile/secret.h"

static struct kc_value *value_new(enum kc_value_type type)
{
    struct kc_value *v = kc_xcalloc(1, sizeof(*v));

    v->type = type;
    return v;
}

struct kc_value *kc_value_new_null(void)
{
    return value_new(KC_VALUE_NULL);
}

struct kc_value *kc_value_new_bool(bool b)
{
    struct kc_value *v = value_new(KC_VALUE_BOOL);

    v->u.b = b;
    return v;
}

struct kc_value *kc_value_new_int(int64_t i)
{
    struct kc_value *v = value_new(KC_VALUE_INT);

    v->u.i = i;
    return v;
}

struct kc_value *kc_value_new_strn(const char *s, size_t len)
{
    struct kc_value *v = value_new(KC_VALUE_STRING);

    v->u.str.s = kc_xstrndup(s, len);
    v->u.str.len = len;
    return v;
}

struct kc_value *kc_value_new_str(const char *s)
{
    return kc_value_new_strn(s, strlen(s));
}

struct kc_value *kc_value_new_secret(const char *s, size_t len)
{
    struct kc_value *v = kc_value_new_strn(s, len);

    v->flags |= KC_VALUE_SENSITIVE;
    return v;
}

struct kc_value *kc_value_new_list(void)
{
    return value_new(KC_VALUE_LIST);
}

struct kc_value *kc_value_new_map(void)
{
    return value_new(KC_VALUE_MAP);
}

struct kc_value *kc_value_new_unknown(const char *ref)
{
    struct kc_value *v = value_new(KC_VALUE_UNKNOWN);

    v->u.ref = kc_xstrdup(ref ? ref : "");
    return v;
}

void kc_value_set_sensitive(struct kc_value *v)
{
    if (v)
        v->flags |= KC_VALUE_SENSITIVE;
}

struct kc_value *kc_value_dup(const struct kc_value *v)
{
    struct kc_value *c;

    if (!v)
        return NULL;
    switch (v->type) {
    case KC_VALUE_STRING:
        c = kc_value_new_strn(v->u.str.s, v->u.str.len);
        break;
    case KC_VALUE_LIST:
        c = kc_value_new_list();
        for (size_t i = 0; i < v->u.list.n; i++)
            kc_value_list_push(c, kc_value_dup(v->u.list.items[i]));
        break;
    case KC_VALUE_MAP:
        c = kc_value_new_map();
        for (size_t i = 0; i < v->u.map.n; i++)
            kc_value_map_set(c, v->u.map.keys[i],
                             kc_value_dup(v->u.map.vals[i]));
        break;
    case KC_VALUE_UNKNOWN:
        c = kc_value_new_unknown(v->u.ref);
        break;
    default:
        c = value_new(v->type);
        c->u = v->u;
        break;
    }
    c->flags = v->flags;
    return c;
}

void kc_value_free(struct kc_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case KC_VALUE_STRING:
        if (v->flags & KC_VALUE_SENSITIVE)
            kc_memzero(v->u.str.s, v->u.str.len);
        free(v->u.str.s);
        break;
    case KC_VALUE_LIST:
        for (size_t i = 0; i < v->u.list.n; i++)
            kc_value_free(v->u.list.items[i]);
        free(v->u.list.items);
        break;
    case KC_VALUE_MAP:
        for (size_t i = 0; i < v->u.map.n; i++) {
            free(v->u.map.keys[i]);
            kc_value_free(v->u.map.vals[i]);
        }
        free(v->u.map.keys);
        free(v->u.map.vals);
        break;
    case KC_VALUE_UNKNOWN:
        free(v->u.ref);
        break;
    default:
        break;
    }
    free(v);
}

void kc_value_list_push(struct kc_value *list, struct kc_value *item)
{
    if (list->type != KC_VALUE_LIST)
        KC_BUG("push onto a non-list value");
    kc_xgrow(&list->u.list.items, &list->u.list.cap, list->u.list.n + 1,
             sizeof(*list->u.list.items));
    list->u.list.items[list->u.list.n++] = item;
}

size_t kc_value_list_len(const struct kc_value *list)
{
    return list && list->type == KC_VALUE_LIST ? list->u.list.n : 0;
}

const struct kc_value *kc_value_list_get(const struct kc_value *list, size_t i)
{
    if (!list || list->type != KC_VALUE_LIST || i >= list->u.list.n)
        return NULL;
    return list->u.list.items[i];
}

static ssize_t map_find(const struct kc_value *map, const char *key)
{
    for (size_t i = 0; i < map->u.map.n; i++)
        if (strcmp(map->u.map.keys[i], key) == 0)
            return (ssize_t)i;
    return -1;
}

void kc_value_map_set(struct kc_value *map, const char *key,
                      struct kc_value *val)
{
    ssize_t i;
    size_t cap;

    if (map->type != KC_VALUE_MAP)
        KC_BUG("set on a non-map value");
    i = map_find(map, key);
    if (i >= 0) {
        kc_value_free(map->u.map.vals[i]);
        map->u.map.vals[i] = val;
        return;
    }
    cap = map->u.map.cap;
    kc_xgrow(&map->u.map.keys, &cap, map->u.map.n + 1,
             sizeof(*map->u.map.keys));
    kc_xgrow(&map->u.map.vals, &map->u.map.cap, map->u.map.n + 1,
             sizeof(*map->u.map.vals));
    map->u.map.keys[map->u.map.n] = kc_xstrdup(key);
    map->u.map.vals[map->u.map.n] = val;
    map->u.map.n++;
}

const struct kc_value *kc_value_map_get(const struct kc_value *map,
                                        const char *key)
{
    ssize_t i;

    if (!map || map->type != KC_VALUE_MAP)
        return NULL;
    i = map_find(map, key);
    return i < 0 ? NULL : map->u.map.vals[i];
}

size_t kc_value_map_len(const struct kc_value *map)
{
    return map && map->type == KC_VALUE_MAP ? map->u.map.n : 0;
}

const char *kc_value_map_key(const struct kc_value *map, size_t i)
{
    return i < kc_value_map_len(map) ? map->u.map.keys[i] : NULL;
}

const struct kc_value *kc_value_map_val(const struct kc_value *map, size_t i)
{
    return i < kc_value_map_len(map) ? map->u.map.vals[i] : NULL;
}

void kc_value_map_del(struct kc_value *map, const char *key)
{
    ssize_t i;

    if (!map || map->type != KC_VALUE_MAP)
        return;
    i = map_find(map, key);
    if (i < 0)
        return;
    free(map->u.map.keys[i]);
    kc_value_free(map->u.map.vals[i]);
    memmove(&map->u.map.keys[i], &map->u.map.keys[i + 1],
            (map->u.map.n - (size_t)i - 1) * sizeof(char *));
    memmove(&map->u.map.vals[i], &map->u.map.vals[i + 1],
            (map->u.map.n - (size_t)i - 1) * sizeof(struct kc_value *));
    map->u.map.n--;
}

const char *kc_value_str(const struct kc_value *v)
{
    if (!v || v->type != KC_VALUE_STRING || (v->flags & KC_VALUE_SENSITIVE))
        return NULL;
    return v->u.str.s;
}

const char *kc_value_reveal(const struct kc_value *v, size_t *len)
{
    if (!v || v->type != KC_VALUE_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->u.str.len;
    return v->u.str.s;
}

bool kc_value_bool(const struct kc_value *v, bool dflt)
{
    return v && v->type == KC_VALUE_BOOL ? v->u.b : dflt;
}

int64_t kc_value_int(const struct kc_value *v, int64_t dflt)
{
    return v && v->type == KC_VALUE_INT ? v->u.i : dflt;
}

bool kc_value_is_sensitive(const struct kc_value *v)
{
    if (!v)
        return false;
    if (v->flags & KC_VALUE_SENSITIVE)
        return true;
    if (v->type == KC_VALUE_LIST) {
        for (size_t i = 0; i < v->u.list.n; i++)
            if (kc_value_is_sensitive(v->u.list.items[i]))
                return true;
    } else if (v->type == KC_VALUE_MAP) {
        for (size_t i = 0; i < v->u.map.n; i++)
            if (kc_value_is_sensitive(v->u.map.vals[i]))
                return true;
    }
    return false;
}

bool kc_value_has_unknown(const struct kc_value *v)
{
    if (!v)
        return false;
    if (v->type == KC_VALUE_UNKNOWN)
        return true;
    if (v->type == KC_VALUE_LIST) {
        for (size_t i = 0; i < v->u.list.n; i++)
            if (kc_value_has_unknown(v->u.list.items[i]))
                return true;
    } else if (v->type == KC_VALUE_MAP) {
        for (size_t i = 0; i < v->u.map.n; i++)
            if (kc_value_has_unknown(v->u.map.vals[i]))
                return true;
    }
    return false;
}

bool kc_value_equal(const struct kc_value *a, const struct kc_value *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->type == KC_VALUE_UNKNOWN)
        return false;
    switch (a->type) {
    case KC_VALUE_NULL:
        return true;
    case KC_VALUE_BOOL:
        return a->u.b == b->u.b;
    case KC_VALUE_INT:
        return a->u.i == b->u.i;
    case KC_VALUE_STRING:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case KC_VALUE_LIST:
        if (a->u.list.n != b->u.list.n)
            return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!kc_value_equal(a->u.list.items[i], b->u.list.items[i]))
                return false;
        return true;
    case KC_VALUE_MAP:
        if (a->u.map.n != b->u.map.n)
            return false;
        for (size_t i = 0; i < a->u.map.n; i++) {
            const struct kc_value *o = kc_value_map_get(b, a->u.map.keys[i]);

            if (!o || !kc_value_equal(a->u.map.vals[i], o))
                return false;
        }
        return true;
    default:
        return false;
    }
}

struct kc_value *kc_value_concat(const struct kc_value *a,
                                 const struct kc_value *b)
{
    struct kc_value *v;
    size_t la, lb;

    if (a->type == KC_VALUE_UNKNOWN || b->type == KC_VALUE_UNKNOWN) {
        /* The first unknown's ref; sensitive if either operand is, so a
         * secret concatenated to a late-bound value stays secret. */
        v = kc_value_dup(a->type == KC_VALUE_UNKNOWN ? a : b);
        v->flags |= (a->flags | b->flags) & KC_VALUE_SENSITIVE;
        return v;
    }
    if (a->type != KC_VALUE_STRING || b->type != KC_VALUE_STRING)
        KC_BUG("concat of non-string values");
    la = a->u.str.len;
    lb = b->u.str.len;
    v = value_new(KC_VALUE_STRING);
    v->u.str.s = kc_xmalloc(la + lb + 1);
    memcpy(v->u.str.s, a->u.str.s, la);
    memcpy(v->u.str.s + la, b->u.str.s, lb);
    v->u.str.s[la + lb] = '\0';
    v->u.str.len = la + lb;
    v->flags = (a->flags | b->flags) & KC_VALUE_SENSITIVE;
    return v;
}

struct json_object *kc_value_to_json(const struct kc_value *v, const char *salt)
{
    struct json_object *o;

    if (!v)
        return NULL;
    if ((v->flags & KC_VALUE_SENSITIVE) && v->type != KC_VALUE_UNKNOWN) {
        char dig[72];
        char *text;

        if (!salt)
            return json_object_new_string("(sensitive)");
        if (v->type == KC_VALUE_STRING) {
            kc_secret_digest(v->u.str.s, v->u.str.len, salt, dig);
        } else {
            struct json_object *plain;
            struct kc_value *copy = kc_value_dup(v);

            copy->flags &= ~(unsigned)KC_VALUE_SENSITIVE;
            plain = kc_value_to_json(copy, salt);
            kc_value_free(copy);
            text = kc_xstrdup(
                json_object_to_json_string_ext(plain, JSON_C_TO_STRING_PLAIN));
            json_object_put(plain);
            kc_secret_digest(text, strlen(text), salt, dig);
            kc_memzero(text, strlen(text));
            free(text);
        }
        text = kc_xasprintf("(sensitive:%s)", dig);
        o = json_object_new_string(text);
        free(text);
        return o;
    }
    switch (v->type) {
    case KC_VALUE_NULL:
        return NULL;
    case KC_VALUE_BOOL:
        return json_object_new_boolean(v->u.b);
    case KC_VALUE_INT:
        return json_object_new_int64(v->u.i);
    case KC_VALUE_STRING:
        return json_object_new_string_len(v->u.str.s, (int)v->u.str.len);
    case KC_VALUE_LIST:
        o = json_object_new_array();
        for (size_t i = 0; i < v->u.list.n; i++)
            json_object_array_add(
                o, kc_value_to_json(v->u.list.items[i], salt)); /* steals */
        return o;
    case KC_VALUE_MAP:
        o = json_object_new_object();
        for (size_t i = 0; i < v->u.map.n; i++)
            json_object_object_add(
                o, v->u.map.keys[i],
                kc_value_to_json(v->u.map.vals[i], salt)); /* steals */
        return o;
    case KC_VALUE_UNKNOWN:
        return json_object_new_string("(known after apply)");
    }
    return NULL;
}

int kc_value_from_json(struct json_object *obj, struct kc_value **out,
                       struct kc_err *err)
{
    struct kc_value *v = NULL;
    int ret = 0;

    *out = NULL;
    switch (json_object_get_type(obj)) {
    case json_type_null:
        v = kc_value_new_null();
        break;
    case json_type_boolean:
        v = kc_value_new_bool(json_object_get_boolean(obj));
        break;
    case json_type_int:
        v = kc_value_new_int(json_object_get_int64(obj));
        break;
    case json_type_string:
        v = kc_value_new_strn(json_object_get_string(obj),
                              (size_t)json_object_get_string_len(obj));
        break;
    case json_type_array:
        v = kc_value_new_list();
        for (size_t i = 0; i < json_object_array_length(obj); i++) {
            struct kc_value *item;

            ret = kc_value_from_json(json_object_array_get_idx(obj, i), &item,
                                     err);
            if (ret < 0)
                goto fail;
            kc_value_list_push(v, item);
        }
        break;
    case json_type_object:
        v = kc_value_new_map();
        json_object_object_foreach (obj, key, val) {
            struct kc_value *item;

            ret = kc_value_from_json(val, &item, err);
            if (ret < 0)
                goto fail;
            kc_value_map_set(v, key, item);
        }
        break;
    case json_type_double:
        return kc_err_set(err, KC_EINVAL,
                          "floating-point values are not "
                          "supported");
    }
    *out = v;
    return 0;
fail:
    kc_value_free(v);
    return ret;
}

static void render_into(const struct kc_value *v, struct kc_buf *b)
{
    if (!v) {
        kc_buf_addstr(b, "null");
        return;
    }
    if (v->flags & KC_VALUE_SENSITIVE) {
        kc_buf_addstr(b, "(sensitive)");
        return;
    }
    switch (v->type) {
    case KC_VALUE_NULL:
        kc_buf_addstr(b, "null");
        break;
    case KC_VALUE_BOOL:
        kc_buf_addstr(b, v->u.b ? "true" : "false");
        break;
    case KC_VALUE_INT:
        kc_buf_addf(b, "%lld", (long long)v->u.i);
        break;
    case KC_VALUE_STRING: {
        struct json_object *s =
            json_object_new_string_len(v->u.str.s, (int)v->u.str.len);

        kc_buf_addstr(b, json_object_to_json_string_ext(
                             s, JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(s);
        break;
    }
    case KC_VALUE_LIST:
        kc_buf_addch(b, '[');
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i)
                kc_buf_addstr(b, ", ");
            render_into(v->u.list.items[i], b);
        }
        kc_buf_addch(b, ']');
        break;
    case KC_VALUE_MAP:
        kc_buf_addch(b, '{');
        for (size_t i = 0; i < v->u.map.n; i++) {
            if (i)
                kc_buf_addstr(b, ", ");
            kc_buf_addf(b, "%s: ", v->u.map.keys[i]);
            render_into(v->u.map.vals[i], b);
        }
        kc_buf_addch(b, '}');
        break;
    case KC_VALUE_UNKNOWN:
        kc_buf_addstr(b, "(known after apply)");
        break;
    }
}

char *kc_value_render(const struct kc_value *v)
{
    struct kc_buf b = { 0 };

    render_into(v, &b);
    return kc_buf_detach(&b, NULL);
}
