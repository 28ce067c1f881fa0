/* tests/unit/helpers/state_testutil.h: temp folders and child processes for
 * the state and lock tests. */
#ifndef KC_TESTS_STATE_TESTUTIL_H
#define KC_TESTS_STATE_TESTUTIL_H

#include "reconcile/kc.h"

#include <sys/types.h>

/* A new empty folder under $TMPDIR (or /tmp); caller frees, and removes it
 * with state_test_rmtree(). Aborts the test on failure. */
char *state_test_tmpdir(void);
/* Removes DIR and everything in it; NULL-safe. */
void state_test_rmtree(const char *dir);
/* Sleeps MS milliseconds (tests only: never on a loop). */
void state_test_msleep(long ms);
/* Waits for child PID; returns its wait status. */
int state_test_wait(pid_t pid);
/* Reads a whole small file into a new string (NULL if unreadable). */
char *state_test_slurp(const char *path);

#endif
