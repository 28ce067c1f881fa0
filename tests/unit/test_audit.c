/* tests/unit/test_audit.c: regressions found by the audit (outside answers
 * of the wrong shape, secrets in messages). */
#include "reconcile/json.h"

#include <criterion/criterion.h>

static struct json_object *parse(const char *text)
{
    struct json_object *o = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_parse(text, strlen(text), "test", &o, &err), 0, "%s",
                 err.msg);
    return o;
}

Test(audit, array_helpers_give_zero_and_null_for_values_that_are_not_arrays)
{
    /* json-c's json_object_array_length() asserts on these (abort). */
    static const char *const not_arrays[] = { "\"a\"", "{\"a\":[1]}", "12",
                                              "true" };

    for (size_t i = 0; i < sizeof(not_arrays) / sizeof(not_arrays[0]); i++) {
        struct json_object *o = parse(not_arrays[i]);

        cr_assert_eq(kc_json_array_len(o), 0, "%s", not_arrays[i]);
        cr_assert_null(kc_json_array_idx(o, 0), "%s", not_arrays[i]);
        cr_assert_null(kc_json_array_str(o, 0), "%s", not_arrays[i]);
        json_object_put(o);
    }
    cr_assert_eq(kc_json_array_len(NULL), 0);
    cr_assert_null(kc_json_array_str(NULL, 3));
}

Test(audit, array_str_gives_strings_only_and_stays_in_range)
{
    struct json_object *o = parse("[\"x\", null, 7, {\"a\":1}, \"y\"]");

    cr_assert_eq(kc_json_array_len(o), 5);
    cr_assert_str_eq(kc_json_array_str(o, 0), "x");
    cr_assert_null(kc_json_array_str(o, 1));
    cr_assert_null(kc_json_array_str(o, 2));
    cr_assert_null(kc_json_array_str(o, 3));
    cr_assert_str_eq(kc_json_array_str(o, 4), "y");
    cr_assert_null(kc_json_array_str(o, 5));
    cr_assert_null(kc_json_array_idx(o, 5));
    cr_assert_not_null(kc_json_array_idx(o, 3));
    json_object_put(o);
}
