/* reconcile/json.h: depth-limited JSON parsing and typed getters whose
 * errors name the JSON path ("items[0].selfLink: expected a string"). */
#ifndef KC_RECONCILE_JSON_H
#define KC_RECONCILE_JSON_H

#include "reconcile/kc.h"

#include <json-c/json.h>

#define KC_JSON_MAX_DEPTH 64

/* Parses LEN bytes of TEXT. WHAT names the source in errors. On success *OUT
 * holds one reference (caller puts). Trailing garbage is an error. */
int kc_json_parse(const char *text, size_t len, const char *what,
                  struct json_object **out, struct kc_err *err);

/* Getters: PATH is a dotted path with [N] indexes, relative to OBJ
 * ("items[0].selfLink"). Results are borrowed from OBJ. A missing member is
 * KC_ENOENT, a wrong type KC_EINVAL; both name the path. */
int kc_json_get(struct json_object *obj, const char *path,
                struct json_object **out, struct kc_err *err);
int kc_json_get_str(struct json_object *obj, const char *path, const char **out,
                    struct kc_err *err);
int kc_json_get_int(struct json_object *obj, const char *path, int64_t *out,
                    struct kc_err *err);
int kc_json_get_bool(struct json_object *obj, const char *path, bool *out,
                     struct kc_err *err);
/* As kc_json_get_str, but NULL (and 0) when the member is absent. */
const char *kc_json_opt_str(struct json_object *obj, const char *path);
/* Arrays of outside answers. json-c's own accessors assert (abort) when O is
 * not an array, and an answer may hold anything: these give 0 or NULL for a
 * value of another type, an index out of range or (kc_json_array_str) an
 * element that is not a string. Results are borrowed from O. */
size_t kc_json_array_len(struct json_object *o);
struct json_object *kc_json_array_idx(struct json_object *o, size_t i);
const char *kc_json_array_str(struct json_object *o, size_t i);
/* Serialises OBJ (pretty when PRETTY), caller frees. */
char *kc_json_dump(struct json_object *obj, bool pretty);

#endif
