/* reconcile/value.h: the values of resource attributes.
 *
 * A value is null, bool, int, string, list, map or UNKNOWN (known only after
 * a dependency is applied; it carries the reference that will supply it).
 * Any value may be SENSITIVE: it came from ${env:…} or ${file:…} or a
 * provider secret. Sensitivity survives kc_value_dup() and concatenation
 * (kc_value_concat), and is never lost when a value is put in a list or map
 * (kc_value_is_sensitive looks inside). A sensitive string is not reachable
 * through kc_value_str(): only kc_value_reveal() gives its bytes, and its
 * memory is wiped when freed. Serialisation for state and plans
 * (kc_value_to_json) writes sensitive values as salted digests only.
 *
 * Ownership: constructors return a new value (caller frees with
 * kc_value_free, NULL-safe). kc_value_list_push and kc_value_map_set take
 * the value they are given. Getters lend.
 */
#ifndef KC_RECONCILE_VALUE_H
#define KC_RECONCILE_VALUE_H

#include "reconcile/kc.h"

#include <json-c/json.h>

enum kc_value_type {
    KC_VALUE_NULL = 0,
    KC_VALUE_BOOL,
    KC_VALUE_INT,
    KC_VALUE_STRING,
    KC_VALUE_LIST,
    KC_VALUE_MAP,
    KC_VALUE_UNKNOWN,
};

enum kc_value_flags {
    KC_VALUE_SENSITIVE = 1 << 0,
};

struct kc_value {
    enum kc_value_type type; /* read-only */
    unsigned flags;          /* read-only: enum kc_value_flags */
    /* private: use the accessors */
    union {
        bool b;
        int64_t i;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            struct kc_value **items;
            size_t n, cap;
        } list;
        struct {
            char **keys;
            struct kc_value **vals;
            size_t n, cap;
        } map;
        char *ref; /* UNKNOWN: what supplies it, e.g. "chain.kms.address" */
    } u;
};

struct kc_value *kc_value_new_null(void);
struct kc_value *kc_value_new_bool(bool b);
struct kc_value *kc_value_new_int(int64_t i);
struct kc_value *kc_value_new_str(const char *s);
struct kc_value *kc_value_new_strn(const char *s, size_t len);
/* A sensitive string (wiped on free). */
struct kc_value *kc_value_new_secret(const char *s, size_t len);
struct kc_value *kc_value_new_list(void);
struct kc_value *kc_value_new_map(void);
/* REF names what will supply the value ("chain.kms.address"). */
struct kc_value *kc_value_new_unknown(const char *ref);

/* Deep copy, flags kept. NULL-safe. */
struct kc_value *kc_value_dup(const struct kc_value *v);
void kc_value_free(struct kc_value *v);
/* Marks V (not its children) sensitive. */
void kc_value_set_sensitive(struct kc_value *v);

/* Takes ITEM. */
void kc_value_list_push(struct kc_value *list, struct kc_value *item);
size_t kc_value_list_len(const struct kc_value *list);
const struct kc_value *kc_value_list_get(const struct kc_value *list, size_t i);
/* Takes VAL; replaces an existing key. Keys keep insertion order. */
void kc_value_map_set(struct kc_value *map, const char *key,
                      struct kc_value *val);
const struct kc_value *kc_value_map_get(const struct kc_value *map,
                                        const char *key);
size_t kc_value_map_len(const struct kc_value *map);
const char *kc_value_map_key(const struct kc_value *map, size_t i);
const struct kc_value *kc_value_map_val(const struct kc_value *map, size_t i);
/* Removes KEY if present. */
void kc_value_map_del(struct kc_value *map, const char *key);

/* The string of a non-sensitive STRING value, else NULL. */
const char *kc_value_str(const struct kc_value *v);
/* The bytes of any STRING value, sensitive or not. Use only where the bytes
 * are sent or written to their destination. */
const char *kc_value_reveal(const struct kc_value *v, size_t *len);
bool kc_value_bool(const struct kc_value *v, bool dflt);
int64_t kc_value_int(const struct kc_value *v, int64_t dflt);

/* True if V or anything inside it is sensitive / unknown. */
bool kc_value_is_sensitive(const struct kc_value *v);
bool kc_value_has_unknown(const struct kc_value *v);
/* Deep equality of contents (flags ignored; UNKNOWN equals nothing). */
bool kc_value_equal(const struct kc_value *a, const struct kc_value *b);

/* A string that is A followed by B; sensitive if either is; UNKNOWN if
 * either is (keeping the first unknown's ref). Both must be strings or
 * unknown. */
struct kc_value *kc_value_concat(const struct kc_value *a,
                                 const struct kc_value *b);

/* JSON for state, plans and output. Sensitive values become
 * "(sensitive:sha256:<salted digest>)" strings when SALT is non-NULL, or
 * "(sensitive)" when it is NULL; unknown values "(known after apply)". */
struct json_object *kc_value_to_json(const struct kc_value *v,
                                     const char *salt);
/* From JSON (ints, strings, bools, null, arrays, objects; doubles are
 * refused). Nothing is sensitive. */
int kc_value_from_json(struct json_object *obj, struct kc_value **out,
                       struct kc_err *err);
/* One-line rendering for plans: strings quoted, sensitive as (sensitive),
 * unknown as (known after apply). Caller frees. */
char *kc_value_render(const struct kc_value *v);

#endif
