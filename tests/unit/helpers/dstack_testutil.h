/* tests/unit/helpers/dstack_testutil.h: the temp folder and command runner
 * the dstack artifact tests share (the folder is removed with
 * state_test_rmtree() from state_testutil.h). */
#ifndef KC_TESTS_DSTACK_TESTUTIL_H
#define KC_TESTS_DSTACK_TESTUTIL_H

#include "reconcile/kc.h"
#include "tests/unit/helpers/state_testutil.h"

#include <stddef.h>

/* Makes a new empty folder /tmp/kc-TAG-XXXXXX in DIR (SIZE bytes, e.g. 64).
 * Aborts the test on failure. */
void dstack_test_mkdtemp(char *dir, size_t size, const char *tag);
/* Runs CMD with sh; returns its exit status (-1 if it did not exit). *OUT
 * (when OUT is not NULL) gets its whole stdout, a new string. Aborts the
 * test if CMD cannot be started. */
int dstack_test_run(const char *cmd, char **out);

#endif
