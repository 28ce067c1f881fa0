/* tests/unit/test_lock_stale.c: taking a stale lock without an operator
 * (`state unlock --if-stale`, `--unlock-stale`): only from a holder that is
 * provably gone on this host; never from a live one, another host's, or an
 * unreadable record. */
#include "reconcile/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/file.h"
#include "tests/unit/helpers/state_testutil.h"

static char *tmp;
static char *spath;
static char *lpath;

static void setup(void)
{
    tmp = state_test_tmpdir();
    spath = kc_xasprintf("%s/.kmsctl/demo.state.json", tmp);
    lpath = kc_xasprintf("%s.lock", spath);
}

static void teardown(void)
{
    state_test_rmtree(tmp);
    free(tmp);
    free(spath);
    free(lpath);
}

TestSuite(lock_stale, .init = setup, .fini = teardown, .timeout = 60);

static void this_host(char *out, size_t size)
{
    cr_assert_eq(gethostname(out, size), 0);
    out[size - 1] = '\0';
}

/* Writes a holder record by hand, as a crashed holder would leave it. */
static void write_record(long pid, const char *host, const char *started)
{
    struct kc_err err = { 0 };
    char *mk = kc_xasprintf("%s/.kmsctl", tmp);
    char *text = kc_xasprintf("{\"pid\":%ld,\"host\":\"%s\",\"started_at\":"
                              "\"%s\",\"command\":\"kmsctl apply\"}",
                              pid, host, started);
    int fd;

    cr_assert_eq(kc_file_mkdirs(mk, 0700, &err), 0, "%s", err.msg);
    fd = open(lpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(text);
    free(mk);
}

static void now_utc(char *out, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;

    cr_assert_not_null(gmtime_r(&t, &tm));
    cr_assert_neq(strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm), 0);
}

/* A child that takes the lock, says so, then waits to be killed. */
static pid_t start_holder(void)
{
    int r[2];
    pid_t pid;
    char c;

    cr_assert_eq(pipe(r), 0);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct kc_lock *lock = NULL;

        close(r[0]);
        if (kc_lock_acquire(spath, 0, "kmsctl apply", &lock, NULL) < 0)
            _exit(2);
        if (write(r[1], "r", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    close(r[1]);
    cr_assert_eq(read(r[0], &c, 1), 1, "holder did not get the lock");
    close(r[0]);
    return pid;
}

static bool record_empty(void)
{
    char *s = state_test_slurp(lpath);
    bool empty = s && s[0] == '\0';

    free(s);
    return empty;
}

Test(lock_stale, a_killed_holder_is_taken_and_named)
{
    struct kc_lock *lock = NULL, *again = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, *want;
    pid_t pid = start_holder();

    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(WIFSIGNALED(state_test_wait(pid)));
    /* Without the explicit act: still refused. */
    cr_assert_eq(kc_lock_acquire(spath, 0, "kmsctl apply", &lock, &err),
                 KC_ELOCKED);
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err), 0,
        "%s", err.msg);
    want = kc_xasprintf("pid %ld on host ", (long)pid);
    cr_assert_not_null(taken);
    cr_assert_not_null(strstr(taken, want), "%s", taken);
    cr_assert_not_null(strstr(taken, "(kmsctl apply), dead"), "%s", taken);
    free(taken);
    taken = NULL;
    /* We hold it now: another taker with the flag sees a live holder. */
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &again, &err),
        KC_ELOCKED);
    cr_assert_null(taken);
    cr_assert_null(again);
    cr_assert_not_null(strstr(err.msg, "is locked by"), "%s", err.msg);
    kc_lock_release(lock);
    cr_assert(record_empty());
    free(want);
}

Test(lock_stale, if_stale_clears_a_killed_holder_only)
{
    struct kc_err err = { 0 };
    char *cleared = NULL;
    pid_t pid = start_holder();

    /* Alive and holding the flock: refused, record kept. */
    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), KC_ELOCKED);
    cr_assert_null(cleared);
    cr_assert_not_null(strstr(err.msg, "live process"), "%s", err.msg);
    cr_assert_not(record_empty());
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(WIFSIGNALED(state_test_wait(pid)));
    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_not_null(cleared);
    cr_assert_not_null(strstr(cleared, "dead"), "%s", cleared);
    cr_assert(record_empty());
    free(cleared);
    /* Nothing left: not an error. */
    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_null(cleared);
}

Test(lock_stale, no_lock_file_is_not_an_error)
{
    struct kc_err err = { 0 };
    char *cleared = (char *)"x";

    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_null(cleared);
}

Test(lock_stale, another_hosts_record_is_never_taken)
{
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, *cleared = NULL, when[32];

    now_utc(when, sizeof(when));
    /* pid 1 on this host would be alive; on another host it says nothing. */
    write_record(999999, "kmsctl-other-host.invalid", when);
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err),
        KC_ELOCKED);
    cr_assert_null(lock);
    cr_assert_null(taken);
    cr_assert_not_null(strstr(err.msg, "on host kmsctl-other-host.invalid"),
                       "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "another host"), "%s", err.msg);
    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), KC_ELOCKED);
    cr_assert_null(cleared);
    cr_assert_not(record_empty());
    /* The operator's unconditional unlock still works. */
    cr_assert_eq(kc_lock_break(spath, &cleared, &err), 0, "%s", err.msg);
    cr_assert_not_null(cleared);
    free(cleared);
}

Test(lock_stale, a_running_process_of_this_host_is_never_taken)
{
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, *want, host[256], when[32];

    /* A record naming a process that runs (this one) and was written after
     * it started: not provably dead, although nobody holds the flock. */
    this_host(host, sizeof(host));
    now_utc(when, sizeof(when));
    write_record((long)getpid(), host, when);
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err),
        KC_ELOCKED);
    want = kc_xasprintf("process %ld is still running", (long)getpid());
    cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
    cr_assert_not(record_empty());
    free(want);
}

Test(lock_stale, a_reused_pid_is_told_apart_by_its_start_time)
{
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, host[256];

    /* This process runs, but started long after the record was written:
     * the pid was reused, the holder is gone. */
    this_host(host, sizeof(host));
    write_record((long)getpid(), host, "2001-01-01T00:00:00Z");
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err), 0,
        "%s", err.msg);
    cr_assert_not_null(taken);
    cr_assert_not_null(strstr(taken, "was reused"), "%s", taken);
    free(taken);
    kc_lock_release(lock);
}

Test(lock_stale, a_zombie_holder_is_dead)
{
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, host[256], when[32];
    siginfo_t si;
    pid_t pid;

    this_host(host, sizeof(host));
    now_utc(when, sizeof(when));
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(0);
    /* Wait for it to end without reaping it. */
    memset(&si, 0, sizeof(si));
    cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    write_record((long)pid, host, when);
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err), 0,
        "%s", err.msg);
    cr_assert_not_null(strstr(taken, "not reaped"), "%s", taken);
    free(taken);
    kc_lock_release(lock);
    state_test_wait(pid);
}

Test(lock_stale, an_unreadable_record_is_never_taken)
{
    struct kc_lock *lock = NULL;
    struct kc_err err = { 0 };
    char *taken = NULL, *cleared = NULL;
    int fd;

    write_record(1, "x", "y");
    fd = open(lpath, O_WRONLY | O_TRUNC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "garbage", 7), 7);
    close(fd);
    cr_assert_eq(
        kc_lock_acquire_stale(spath, 0, "kmsctl apply", &taken, &lock, &err),
        KC_ELOCKED);
    cr_assert_not_null(strstr(err.msg, "unreadable"), "%s", err.msg);
    cr_assert_eq(kc_lock_break_stale(spath, &cleared, &err), KC_ELOCKED);
    cr_assert_null(cleared);
}
