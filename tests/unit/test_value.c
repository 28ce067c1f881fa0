/* tests/unit/test_value.c: attribute values, sensitivity and unknowns. */
#include "reconcile/value.h"

#include <criterion/criterion.h>

Test(value, sensitivity_survives_dup_and_concat)
{
    struct kc_value *pre = kc_value_new_str("Bearer ");
    struct kc_value *tok = kc_value_new_secret("s3cr3t-token", 12);
    struct kc_value *cat = kc_value_concat(pre, tok);
    struct kc_value *dup = kc_value_dup(cat);

    cr_assert(kc_value_is_sensitive(cat));
    cr_assert(kc_value_is_sensitive(dup));
    cr_assert_null(kc_value_str(dup));
    cr_assert_str_eq(kc_value_reveal(dup, NULL), "Bearer s3cr3t-token");
    cr_assert(!kc_value_is_sensitive(pre));
    kc_value_free(pre);
    kc_value_free(tok);
    kc_value_free(cat);
    kc_value_free(dup);
}

Test(value, sensitive_child_makes_container_sensitive)
{
    struct kc_value *map = kc_value_new_map();
    struct kc_value *list = kc_value_new_list();

    kc_value_list_push(list, kc_value_new_secret("abcd", 4));
    kc_value_map_set(map, "plain", kc_value_new_str("x"));
    kc_value_map_set(map, "keys", list);
    cr_assert(kc_value_is_sensitive(map));
    cr_assert(!kc_value_is_sensitive(kc_value_map_get(map, "plain")));
    kc_value_free(map);
}

Test(value, json_never_holds_secret_bytes)
{
    struct kc_value *map = kc_value_new_map();
    struct json_object *j;
    const char *text;

    kc_value_map_set(map, "key", kc_value_new_secret("hunter2-hunter2", 15));
    kc_value_map_set(map, "name", kc_value_new_str("kms"));
    j = kc_value_to_json(map, "salt-1");
    text = json_object_to_json_string(j);
    cr_assert_null(strstr(text, "hunter2"));
    cr_assert_not_null(strstr(text, "(sensitive:sha256:"));
    cr_assert_not_null(strstr(text, "\"kms\""));
    json_object_put(j);
    kc_value_free(map);
}

Test(value, salted_digest_changes_with_secret_and_salt)
{
    struct kc_value *a = kc_value_new_secret("one-secret", 10);
    struct kc_value *b = kc_value_new_secret("two-secret", 10);
    struct json_object *ja = kc_value_to_json(a, "s");
    struct json_object *jb = kc_value_to_json(b, "s");
    struct json_object *ja2 = kc_value_to_json(a, "t");
    struct json_object *ja3 = kc_value_to_json(a, "s");

    cr_assert_str_neq(json_object_get_string(ja), json_object_get_string(jb));
    cr_assert_str_neq(json_object_get_string(ja), json_object_get_string(ja2));
    cr_assert_str_eq(json_object_get_string(ja), json_object_get_string(ja3));
    json_object_put(ja);
    json_object_put(jb);
    json_object_put(ja2);
    json_object_put(ja3);
    kc_value_free(a);
    kc_value_free(b);
}

Test(value, unknown_propagates_through_concat_and_render)
{
    struct kc_value *pre = kc_value_new_str("addr=");
    struct kc_value *unk = kc_value_new_unknown("chain.kms.address");
    struct kc_value *cat = kc_value_concat(pre, unk);
    char *r = kc_value_render(cat);

    cr_assert_eq(cat->type, KC_VALUE_UNKNOWN);
    cr_assert_str_eq(cat->u.ref, "chain.kms.address");
    cr_assert_str_eq(r, "(known after apply)");
    cr_assert(!kc_value_equal(unk, unk));
    free(r);
    kc_value_free(pre);
    kc_value_free(unk);
    kc_value_free(cat);
}

Test(value, secret_stays_sensitive_when_concatenated_with_unknown)
{
    struct kc_value *unk = kc_value_new_unknown("kms_vms.kms.external_ip");
    struct kc_value *tok = kc_value_new_secret("s3cr3t-token", 12);
    struct kc_value *ab = kc_value_concat(unk, tok);
    struct kc_value *ba = kc_value_concat(tok, unk);

    cr_assert_eq(ab->type, KC_VALUE_UNKNOWN);
    cr_assert_eq(ba->type, KC_VALUE_UNKNOWN);
    cr_assert(kc_value_is_sensitive(ab), "unknown ++ secret lost sensitivity");
    cr_assert(kc_value_is_sensitive(ba), "secret ++ unknown lost sensitivity");
    cr_assert(!kc_value_is_sensitive(unk));
    kc_value_free(unk);
    kc_value_free(tok);
    kc_value_free(ab);
    kc_value_free(ba);
}

Test(value, equal_compares_deeply_and_map_order_free)
{
    struct kc_value *a = kc_value_new_map(), *b = kc_value_new_map();

    kc_value_map_set(a, "x", kc_value_new_int(1));
    kc_value_map_set(a, "y", kc_value_new_str("z"));
    kc_value_map_set(b, "y", kc_value_new_str("z"));
    kc_value_map_set(b, "x", kc_value_new_int(1));
    cr_assert(kc_value_equal(a, b));
    kc_value_map_set(b, "x", kc_value_new_int(2));
    cr_assert(!kc_value_equal(a, b));
    kc_value_map_del(b, "x");
    cr_assert_eq(kc_value_map_len(b), 1);
    kc_value_free(a);
    kc_value_free(b);
}

Test(value, json_round_trip_keeps_types_and_refuses_doubles)
{
    struct json_object *j =
        json_tokener_parse("{\"a\":[1,true,null,\"s\"],\"b\":{\"c\":-5}}");
    struct json_object *d = json_tokener_parse("{\"f\":1.5}");
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };
    struct json_object *back;

    cr_assert_eq(kc_value_from_json(j, &v, &err), 0);
    back = kc_value_to_json(v, NULL);
    cr_assert(json_object_equal(j, back));
    kc_value_free(v);
    cr_assert_eq(kc_value_from_json(d, &v, &err), KC_EINVAL);
    cr_assert_null(v);
    json_object_put(back);
    json_object_put(j);
    json_object_put(d);
}
