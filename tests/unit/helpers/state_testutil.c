/* tests/unit/helpers/state_testutil.c: temp folders and children for tests. */
#include "tests/unit/helpers/state_testutil.h"

#include <ftw.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/file.h"

char *state_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = kc_xasprintf("%s/kc-state-test.XXXXXX",
                             base && base[0] ? base : "/tmp");

    if (!mkdtemp(dir))
        cr_assert_fail("mkdtemp '%s': %s", dir, strerror(errno));
    return dir;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    /* Best effort: a leftover temp folder is not a test failure. */
    (void)remove(path);
    return 0;
}

void state_test_rmtree(const char *dir)
{
    if (dir)
        (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void state_test_msleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int state_test_wait(pid_t pid)
{
    int status = 0;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            cr_assert_fail("waitpid: %s", strerror(errno));
    return status;
}

char *state_test_slurp(const char *path)
{
    char *text = NULL;

    if (kc_file_read(path, 64u << 20, &text, NULL, NULL) < 0)
        return NULL;
    return text;
}
