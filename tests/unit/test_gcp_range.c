/* tests/unit/test_gcp_range.c: the Range header of a resumable upload's 308
 * answer ("bytes=0-N") is parsed strictly: a sign, trailing text, a number
 * past 64 bits or N = UINT64_MAX (N + 1 would wrap to 0 and restart the
 * upload silently) are errors, not a committed size. */
#include "resources/gcp/storage.h"

#include <criterion/criterion.h>

Test(gcp_range, committed_size_is_n_plus_one)
{
    uint64_t n = 99;
    struct kc_err err = { 0 };

    cr_assert_eq(gcp_range_committed("bytes=0-0", &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(gcp_range_committed("bytes=0-262143", &n, &err), 0);
    cr_assert_eq(n, 262144);
    cr_assert_eq(gcp_range_committed("bytes=0-18446744073709551614", &n, &err),
                 0);
    cr_assert_eq(n, UINT64_MAX);
}

Test(gcp_range, malformed_or_out_of_range_is_an_error)
{
    const char *bad[] = { "bytes=0-18446744073709551615", /* N + 1 wraps */
                          "bytes=0-18446744073709551616", /* past 64 bits */
                          "bytes=0--5",
                          "bytes=0-+5",
                          "bytes=0- 5",
                          "bytes=0-",
                          "bytes=0-12x",
                          "bytes=0-12 ",
                          "bytes=1-12",
                          "bytes=00-12",
                          "items=0-12",
                          "",
                          "bytes=0-abc" };
    struct kc_err err;
    uint64_t n;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kc_err_clear(&err);
        n = 7;
        cr_assert_eq(gcp_range_committed(bad[i], &n, &err), KC_EPARSE,
                     "'%s' accepted (%llu)", bad[i], (unsigned long long)n);
        cr_assert_eq(n, 0);
        cr_assert_not_null(strstr(err.msg, "Range"), "%s", err.msg);
    }
}
