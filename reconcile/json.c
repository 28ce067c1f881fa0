/* reconcile/json.c: depth-limited parsing and path-naming getters. */
#include "reconcile/json.h"

#include <ctype.h>

int kc_json_parse(const char *text, size_t len, const char *what,
                  struct json_object **out, struct kc_err *err)
{
    struct json_tokener *tok;
    struct json_object *obj;
    enum json_tokener_error jerr;
    size_t used;

    *out = NULL;
    if (len > INT32_MAX)
        return kc_err_set(err, KC_ERANGE, "%s: json too large", what);
    tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
    if (!tok)
        KC_BUG("json_tokener_new_ex failed");
    obj = json_tokener_parse_ex(tok, text, (int)len);
    jerr = json_tokener_get_error(tok);
    used = json_tokener_get_parse_end(tok);
    if (!obj && jerr == json_tokener_continue) {
        /* A complete document ends with EOF: flush with an empty read. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        used = len;
    }
    json_tokener_free(tok);
    if (!obj && jerr == json_tokener_success)
        return kc_err_set(err, KC_EPARSE, "%s: empty or null json", what);
    if (!obj || jerr != json_tokener_success)
        return kc_err_set(err, KC_EPARSE, "%s: invalid json at byte %zu: %s",
                          what, used, json_tokener_error_desc(jerr));
    while (used < len && isspace((unsigned char)text[used]))
        used++;
    if (used < len && text[used] != '\0') {
        json_object_put(obj);
        return kc_err_set(err, KC_EPARSE,
                          "%s: trailing data after json at byte %zu", what,
                          used);
    }
    *out = obj;
    return 0;
}

int kc_json_get(struct json_object *obj, const char *path,
                struct json_object **out, struct kc_err *err)
{
    const char *p = path;
    struct json_object *cur = obj;

    while (*p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *end;
            long idx = strtol(p + 1, &end, 10);

            if (*end != ']' || idx < 0)
                KC_BUG("bad json path '%s'", path);
            if (!json_object_is_type(cur, json_type_array))
                return kc_err_set(err, KC_EINVAL, "'%.*s': expected an array",
                                  (int)(p - path), path);
            if ((size_t)idx >= json_object_array_length(cur))
                return kc_err_set(err, KC_ENOENT, "'%.*s': missing",
                                  (int)(end + 1 - path), path);
            cur = json_object_array_get_idx(cur, (size_t)idx);
            p = end + 1;
            continue;
        }
        {
            size_t n = strcspn(p, ".[");
            char key[128];

            if (n >= sizeof(key))
                KC_BUG("json path member too long in '%s'", path);
            memcpy(key, p, n);
            key[n] = '\0';
            if (!json_object_is_type(cur, json_type_object))
                return kc_err_set(err, KC_EINVAL, "'%.*s': expected an object",
                                  (int)(p - path), path);
            if (!json_object_object_get_ex(cur, key, &cur) || !cur)
                return kc_err_set(err, KC_ENOENT, "'%.*s': missing",
                                  (int)(p + n - path), path);
            p += n;
        }
    }
    *out = cur;
    return 0;
}

int kc_json_get_str(struct json_object *obj, const char *path, const char **out,
                    struct kc_err *err)
{
    struct json_object *v;
    int ret = kc_json_get(obj, path, &v, err);

    if (ret < 0)
        return ret;
    if (!json_object_is_type(v, json_type_string))
        return kc_err_set(err, KC_EINVAL, "'%s': expected a string", path);
    *out = json_object_get_string(v);
    return 0;
}

int kc_json_get_int(struct json_object *obj, const char *path, int64_t *out,
                    struct kc_err *err)
{
    struct json_object *v;
    int ret = kc_json_get(obj, path, &v, err);

    if (ret < 0)
        return ret;
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        *out = json_object_get_int64(v);
        if (errno)
            return kc_err_set(err, KC_ERANGE, "'%s': integer out of range",
                              path);
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        /* Google APIs encode int64 as strings. */
        const char *s = json_object_get_string(v);
        char *end;

        errno = 0;
        *out = strtoll(s, &end, 10);
        if (!*s || *end || errno)
            return kc_err_set(err, KC_EINVAL, "'%s': expected an integer",
                              path);
        return 0;
    }
    return kc_err_set(err, KC_EINVAL, "'%s': expected an integer", path);
}

int kc_json_get_bool(struct json_object *obj, const char *path, bool *out,
                     struct kc_err *err)
{
    struct json_object *v;
    int ret = kc_json_get(obj, path, &v, err);

    if (ret < 0)
        return ret;
    if (!json_object_is_type(v, json_type_boolean))
        return kc_err_set(err, KC_EINVAL, "'%s': expected a boolean", path);
    *out = json_object_get_boolean(v);
    return 0;
}

const char *kc_json_opt_str(struct json_object *obj, const char *path)
{
    const char *s = NULL;

    if (kc_json_get_str(obj, path, &s, NULL) < 0)
        return NULL;
    return s;
}

size_t kc_json_array_len(struct json_object *o)
{
    return json_object_is_type(o, json_type_array) ? json_object_array_length(o)
                                                   : 0;
}

struct json_object *kc_json_array_idx(struct json_object *o, size_t i)
{
    return i < kc_json_array_len(o) ? json_object_array_get_idx(o, i) : NULL;
}

const char *kc_json_array_str(struct json_object *o, size_t i)
{
    struct json_object *v = kc_json_array_idx(o, i);

    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                    : NULL;
}

char *kc_json_dump(struct json_object *obj, bool pretty)
{
    int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                        : JSON_C_TO_STRING_PLAIN);
    const char *s = json_object_to_json_string_ext(obj, flags);

    if (!s)
        KC_BUG("json serialisation failed");
    return kc_xstrdup(s);
}
