/* tests/unit/test_kc_grow.c: kc_xgrow grows by doubling from 8, keeps the
 * contents, and aborts (KC_BUG) instead of wrapping when the element count
 * times the element size would overflow size_t. (The doubling is capped at
 * SIZE_MAX / size too; reaching it needs an allocation that fails anyway.) */
#include "reconcile/kc.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>

Test(kc_xgrow, doubles_from_eight_and_keeps_contents)
{
    uint32_t *v = NULL;
    size_t cap = 0;

    kc_xgrow(&v, &cap, 1, sizeof(*v));
    cr_assert_eq(cap, 8);
    for (uint32_t i = 0; i < 8; i++)
        v[i] = i * 7;
    kc_xgrow(&v, &cap, 8, sizeof(*v)); /* enough already */
    cr_assert_eq(cap, 8);
    kc_xgrow(&v, &cap, 9, sizeof(*v));
    cr_assert_eq(cap, 16);
    kc_xgrow(&v, &cap, 100, sizeof(*v));
    cr_assert_eq(cap, 128);
    for (uint32_t i = 0; i < 8; i++)
        cr_assert_eq(v[i], i * 7);
    v[127] = 1; /* the whole capacity is usable (ASan checks) */
    free(v);
}

Test(kc_xgrow, large_element_size_caps_at_the_maximum)
{
    char(*v)[1 << 20] = NULL;
    size_t cap = 0;

    /* 3 elements of 1 MiB: 8 of them fit size_t, so 8 are allocated. */
    kc_xgrow(&v, &cap, 3, sizeof(*v));
    cr_assert_eq(cap, 8);
    v[7][(1 << 20) - 1] = 1;
    free(v);
}

/* count * size past SIZE_MAX used to wrap to a tiny allocation. */
Test(kc_xgrow, count_times_size_overflow_aborts, .signal = SIGABRT)
{
    uint64_t *v = NULL;
    size_t cap = 0;

    kc_xgrow(&v, &cap, SIZE_MAX / sizeof(*v) + 1, sizeof(*v));
    free(v);
}
