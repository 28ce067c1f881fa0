/* tests/unit/test_lock.c: the state lock between processes: contention,
 * waiting, stale records left by killed holders, unlock. */
#include "reconcile/lock.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/unit/helpers/state_testutil.h"

static char *tmp;
static char *spath;

static void setup(void)
{
    tmp = state_test_tmpdir();
    spath = kc_xasprintf("%s/.kmsctl/demo.state.json", tmp);
}

static void teardown(void)
{
    state_test_rmtree(tmp);
    free(tmp);
    free(spath);
}

TestSuite(lock, .init = setup, .fini = teardown, .timeout = 60);

/* A child that takes the lock, says so on READY, waits for a byte on GO,
 * holds on for HOLD_MS, then releases (or is killed before). */
struct holder_child {
    pid_t pid;
    int ready, go;
};

static void start_holder(struct holder_child *h, long hold_ms)
{
    int r[2], g[2];

    cr_assert_eq(pipe(r), 0);
    cr_assert_eq(pipe(g), 0);
    h->pid = fork();
    cr_assert_neq(h->pid, -1);
    if (h->pid == 0) {
        struct kc_lock *lock = NULL;
        char c;

        close(r[0]);
        close(g[1]);
        if (kc_lock_acquire(spath, 0, "kmsctl apply", &lock, NULL) < 0)
            _exit(2);
        if (write(r[1], "r", 1) != 1 || read(g[0], &c, 1) != 1)
            _exit(3);
        state_test_msleep(hold_ms);
        kc_lock_release(lock);
        _exit(0);
    }
    close(r[1]);
    close(g[0]);
    h->ready = r[0];
    h->go = g[1];
    {
        char c;

        cr_assert_eq(read(h->ready, &c, 1), 1, "holder did not get the lock");
    }
}

static void finish_holder(struct holder_child *h)
{
    int status;

    close(h->go);
    close(h->ready);
    status = state_test_wait(h->pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "holder ended with status %d", status);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(lock, second_process_gets_elocked_naming_the_holder)
{
    struct holder_child h;
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *pidstr, host[256];
    double t0;

    start_holder(&h, 0);
    t0 = now();
    cr_assert_eq(kc_lock_acquire(spath, 0, "kmsctl plan", &lock, &err),
                 KC_ELOCKED);
    cr_assert_lt(now() - t0, 1.0, "timeout 0 fails at once");
    cr_assert_null(lock);
    pidstr = kc_xasprintf("is locked by pid %ld on host ", (long)h.pid);
    cr_assert_not_null(strstr(err.msg, pidstr), "%s", err.msg);
    cr_assert_eq(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    cr_assert_not_null(strstr(err.msg, host), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "(kmsctl apply)"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, spath));
    cr_assert_eq(write(h.go, "g", 1), 1);
    finish_holder(&h);
    free(pidstr);
}

Test(lock, waiting_process_gets_the_lock_once_released)
{
    struct holder_child h;
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    double t0;

    start_holder(&h, 300);
    cr_assert_eq(write(h.go, "g", 1), 1);
    t0 = now();
    cr_assert_eq(kc_lock_acquire(spath, 10, "kmsctl apply", &lock, &err), 0,
                 "%s", err.msg);
    cr_assert_geq(now() - t0, 0.2, "it waited for the holder");
    cr_assert_lt(now() - t0, 5.0);
    finish_holder(&h);
    kc_lock_release(lock);
}

Test(lock, wait_gives_up_after_the_timeout)
{
    struct holder_child h;
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    double t0;

    start_holder(&h, 0);
    t0 = now();
    cr_assert_eq(kc_lock_acquire(spath, 0.3, "kmsctl apply", &lock, &err),
                 KC_ELOCKED);
    cr_assert_geq(now() - t0, 0.29);
    cr_assert_not_null(strstr(err.msg, "gave up after"), "%s", err.msg);
    cr_assert_eq(write(h.go, "g", 1), 1);
    finish_holder(&h);
}

Test(lock, killed_holder_leaves_a_stale_lock_until_unlock)
{
    struct holder_child h;
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *want, *cleared = NULL;
    int status;

    start_holder(&h, 0);
    cr_assert_eq(kill(h.pid, SIGKILL), 0);
    status = state_test_wait(h.pid);
    cr_assert(WIFSIGNALED(status));
    close(h.go);
    close(h.ready);

    cr_assert_eq(kc_lock_acquire(spath, 0, "kmsctl apply", &lock, &err),
                 KC_ELOCKED);
    want =
        kc_xasprintf("stale lock left by pid %ld (dead) on host ", (long)h.pid);
    cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "kmsctl state unlock"), "%s", err.msg);
    /* Waiting does not help: nobody will release it. */
    cr_assert_eq(kc_lock_acquire(spath, 0.2, "kmsctl apply", &lock, &err),
                 KC_ELOCKED);
    cr_assert_not_null(strstr(err.msg, "stale"));

    cr_assert_eq(kc_lock_break(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_not_null(cleared);
    free(want);
    want = kc_xasprintf("pid %ld on host", (long)h.pid);
    cr_assert_not_null(strstr(cleared, want), "%s", cleared);
    free(cleared);
    cr_assert_eq(kc_lock_acquire(spath, 0, "kmsctl apply", &lock, &err), 0,
                 "%s", err.msg);
    kc_lock_release(lock);
    free(want);
}

Test(lock, unlock_refuses_while_a_live_process_holds_it)
{
    struct holder_child h;
    struct kc_err err = { 0 };
    char *cleared = NULL, *pidstr;

    start_holder(&h, 0);
    cr_assert_eq(kc_lock_break(spath, &cleared, &err), KC_ELOCKED);
    cr_assert_null(cleared);
    pidstr = kc_xasprintf("pid %ld", (long)h.pid);
    cr_assert_not_null(strstr(err.msg, pidstr), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "live process"), "%s", err.msg);
    cr_assert_eq(write(h.go, "g", 1), 1);
    finish_holder(&h);
    free(pidstr);
}

Test(lock, clean_release_leaves_an_empty_record_and_a_free_lock)
{
    struct kc_lock *a = NULL, *b = NULL;
    struct kc_err err = { 0 };
    char *lockpath = kc_xasprintf("%s.lock", spath), *text, *cleared = NULL;
    char *pidstr = kc_xasprintf("\"pid\":%ld", (long)getpid());
    struct stat sb;

    cr_assert_eq(kc_lock_acquire(spath, 0, "kmsctl state rm", &a, &err), 0,
                 "%s", err.msg);
    text = state_test_slurp(lockpath);
    cr_assert_not_null(strstr(text, pidstr), "%s", text);
    cr_assert_not_null(strstr(text, "\"command\":\"kmsctl state rm\""));
    cr_assert_not_null(strstr(text, "\"started_at\":\""));
    cr_assert_not_null(strstr(text, "\"host\":\""));
    free(text);
    cr_assert_eq(stat(lockpath, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    /* A second open file description contends even in one process. */
    cr_assert_eq(kc_lock_acquire(spath, 0, "again", &b, &err), KC_ELOCKED);
    kc_lock_release(a);
    text = state_test_slurp(lockpath);
    cr_assert_str_eq(text, "");
    free(text);
    cr_assert_eq(kc_lock_break(spath, &cleared, &err), 0);
    cr_assert_null(cleared, "nothing to clear");
    cr_assert_eq(kc_lock_acquire(spath, 0, "again", &b, &err), 0);
    kc_lock_release(b);
    kc_lock_release(NULL);
    free(lockpath);
    free(pidstr);
}

Test(lock, unreadable_record_counts_as_stale)
{
    char *lockpath = kc_xasprintf("%s.lock", spath);
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *cleared = NULL;
    FILE *f;

    cr_assert_eq(kc_lock_acquire(spath, 0, "x", &lock, &err), 0);
    kc_lock_release(lock);
    f = fopen(lockpath, "w");
    cr_assert_not_null(f);
    fputs("{\"pid\":12", f); /* torn by a crash while it was written */
    fclose(f);
    cr_assert_eq(kc_lock_acquire(spath, 0, "x", &lock, &err), KC_ELOCKED);
    cr_assert_not_null(strstr(err.msg, "unreadable record"), "%s", err.msg);
    cr_assert_eq(kc_lock_break(spath, &cleared, &err), 0);
    cr_assert_not_null(cleared);
    free(cleared);
    cr_assert_eq(kc_lock_acquire(spath, 0, "x", &lock, &err), 0);
    kc_lock_release(lock);
    free(lockpath);
}

Test(lock, unlock_without_a_lock_file_is_a_no_op)
{
    struct kc_err err = { 0 };
    char *cleared = KC_UNCONST("x");

    cr_assert_eq(kc_lock_break(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_null(cleared);
}
