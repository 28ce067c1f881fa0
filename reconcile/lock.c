/* reconcile/lock.c: the state lock: flock plus a record of the holder. */
#include "reconcile/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "reconcile/file.h"
#include "reconcile/json.h"

#define POLL_NS 50000000L /* 50 ms between tries while waiting */

struct kc_lock {
    int fd;
    char *path;
};

/* What the record says, printable whatever the file holds. */
struct holder {
    bool empty;    /* no record at all */
    bool readable; /* a record that parses */
    long pid;
    char host[128];
    char started_at[64];
    char command[128];
};

static void copy_printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src && src[i] && i + 1 < size; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = '\0';
}

static int read_holder(int fd, const char *lockpath, struct holder *h,
                       struct kc_err *err)
{
    char buf[KC_LOCK_MAX_BYTES + 1];
    struct json_object *root = NULL, *v;
    ssize_t n;

    memset(h, 0, sizeof(*h));
    do
        n = pread(fd, buf, sizeof(buf) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return kc_err_from_errno(err, errno, "cannot read '%s'", lockpath);
    buf[n] = '\0';
    if (strspn(buf, " \t\r\n") == (size_t)n) {
        h->empty = true;
        return 0;
    }
    if (kc_json_parse(buf, (size_t)n, "lock record", &root, NULL) < 0 ||
        !json_object_is_type(root, json_type_object))
        goto out;
    if (!json_object_object_get_ex(root, "pid", &v) ||
        !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) <= 0 || json_object_get_int64(v) > INT32_MAX)
        goto out;
    h->pid = (long)json_object_get_int64(v);
    if (json_object_object_get_ex(root, "host", &v))
        copy_printable(h->host, sizeof(h->host), json_object_get_string(v));
    if (json_object_object_get_ex(root, "started_at", &v))
        copy_printable(h->started_at, sizeof(h->started_at),
                       json_object_get_string(v));
    if (json_object_object_get_ex(root, "command", &v))
        copy_printable(h->command, sizeof(h->command),
                       json_object_get_string(v));
    h->readable = true;
out:
    json_object_put(root);
    return 0;
}

/* "pid 123 on host h since T (kmsctl apply)"; caller frees. */
static char *describe(const struct holder *h)
{
    if (h->empty)
        return kc_xstrdup("another process (no holder record yet)");
    if (!h->readable)
        return kc_xstrdup("a process whose record cannot be read");
    return kc_xasprintf("pid %ld on host %s since %s (%s)", h->pid,
                        h->host[0] ? h->host : "?",
                        h->started_at[0] ? h->started_at : "?",
                        h->command[0] ? h->command : "?");
}

static void hostname(char *out, size_t size)
{
    if (gethostname(out, size) < 0)
        out[0] = '\0';
    out[size - 1] = '\0';
}

/* A stale record: its holder ended without releasing. Say what we know. */
static int refuse_stale(const char *state_path, const struct holder *h,
                        struct kc_err *err)
{
    char host[256];
    const char *note = "";

    hostname(host, sizeof(host));
    if (h->readable && strcmp(h->host, host) == 0) {
        if (kill((pid_t)h->pid, 0) < 0 && errno == ESRCH)
            note = " (dead)";
    } else if (h->readable) {
        note = " (another host: check it)";
    }
    if (!h->readable)
        return kc_err_set(err, KC_ELOCKED,
                          "state '%s' has a stale lock with an unreadable "
                          "record: run 'kmsctl state unlock' after checking no "
                          "apply is running",
                          state_path);
    return kc_err_set(err, KC_ELOCKED,
                      "state '%s' has a stale lock left by pid %ld%s on host "
                      "%s since %s (%s): run 'kmsctl state unlock' after "
                      "checking no apply is running",
                      state_path, h->pid, note, h->host[0] ? h->host : "?",
                      h->started_at[0] ? h->started_at : "?",
                      h->command[0] ? h->command : "?");
}

static int write_record(int fd, const char *lockpath, const char *command,
                        struct kc_err *err)
{
    struct json_object *o = json_object_new_object();
    char host[256], when[32];
    time_t t = time(NULL);
    struct tm tm;
    const char *text;
    size_t len, off = 0;
    int ret = 0;

    hostname(host, sizeof(host));
    if (!gmtime_r(&t, &tm) ||
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        KC_BUG("cannot format the time");
    /* json_object_object_add steals each value. */
    json_object_object_add(o, "pid", json_object_new_int64(getpid()));
    json_object_object_add(o, "host", json_object_new_string(host));
    json_object_object_add(o, "started_at", json_object_new_string(when));
    json_object_object_add(o, "command",
                           json_object_new_string(command ? command : "?"));
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    if (!text)
        KC_BUG("json serialisation failed");
    len = strlen(text);
    if (ftruncate(fd, 0) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot truncate '%s'", lockpath);
        goto out;
    }
    while (off < len) {
        ssize_t n = pwrite(fd, text + off, len - off, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = kc_err_from_errno(err, errno, "cannot write '%s'", lockpath);
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0)
        ret = kc_err_from_errno(err, errno, "cannot fsync '%s'", lockpath);
out:
    json_object_put(o);
    return ret;
}

static int open_lock(const char *state_path, char **lockpath, bool create,
                     int *fd, struct kc_err *err)
{
    char *dir = kc_file_dirname(state_path);
    int ret = 0;

    *lockpath = kc_xasprintf("%s.lock", state_path);
    *fd = -1;
    if (create)
        ret = kc_file_mkdirs(dir, 0700, err);
    free(dir);
    if (ret < 0)
        return ret;
    *fd = open(*lockpath,
               O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (*fd < 0) {
        if (!create && errno == ENOENT)
            return 0;
        return kc_err_from_errno(err, errno, "cannot open lock '%s'",
                                 *lockpath);
    }
    return 0;
}

static double now_mono(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        KC_BUG("clock_gettime: %s", strerror(errno));
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int refuse_held(const char *state_path, int fd, const char *lockpath,
                       double waited, struct kc_err *err)
{
    struct holder h;
    char *who;
    int ret;

    ret = read_holder(fd, lockpath, &h, err);
    if (ret < 0)
        return ret;
    who = describe(&h);
    if (waited > 0)
        kc_err_set(err, KC_ELOCKED,
                   "state '%s' is locked by %s; gave up after %.0fs",
                   state_path, who, waited);
    else
        kc_err_set(err, KC_ELOCKED, "state '%s' is locked by %s", state_path,
                   who);
    free(who);
    return KC_ELOCKED;
}

/* Drops the flock on FD when LOCKED, and closes FD when it is open. */
static void close_lock(int fd, bool locked)
{
    if (locked)
        (void)flock(fd, LOCK_UN); /* close releases it anyway */
    if (fd >= 0)
        close(fd);
}

int kc_lock_acquire(const char *state_path, double timeout_seconds,
                    const char *command, struct kc_lock **out,
                    struct kc_err *err)
{
    char *lockpath = NULL;
    double start = now_mono();
    bool locked = false;
    struct holder h;
    int fd = -1, ret;

    *out = NULL;
    if (!(timeout_seconds >= 0))
        return kc_err_set(err, KC_EINVAL, "lock timeout must be >= 0");
    ret = open_lock(state_path, &lockpath, true, &fd, err);
    if (ret < 0)
        goto out;
    for (;;) {
        double left;
        struct timespec ts;

        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            ret = kc_err_from_errno(err, errno, "cannot lock '%s'", lockpath);
            goto out;
        }
        left = timeout_seconds - (now_mono() - start);
        if (left <= 0) {
            ret = refuse_held(state_path, fd, lockpath, timeout_seconds, err);
            goto out;
        }
        ts.tv_sec = 0;
        ts.tv_nsec = left < POLL_NS / 1e9 ? (long)(left * 1e9) + 1 : POLL_NS;
        /* An EINTR only makes this try sooner. */
        (void)nanosleep(&ts, NULL);
    }
    locked = true;
    ret = read_holder(fd, lockpath, &h, err);
    if (ret < 0)
        goto out;
    if (!h.empty) {
        ret = refuse_stale(state_path, &h, err);
        goto out;
    }
    ret = write_record(fd, lockpath, command, err);
    if (ret < 0)
        goto out;
    *out = kc_xcalloc(1, sizeof(**out));
    (*out)->fd = fd;
    (*out)->path = lockpath;
    return 0;
out:
    close_lock(fd, locked);
    free(lockpath);
    return ret;
}

void kc_lock_release(struct kc_lock *lock)
{
    if (!lock)
        return;
    /* Empty the record first: a record found without the flock held means
     * its holder did not get here. Failures leave a stale record, which is
     * the safe side: the next run asks for `state unlock`. */
    if (ftruncate(lock->fd, 0) == 0)
        (void)fsync(lock->fd);
    close_lock(lock->fd, true);
    free(lock->path);
    free(lock);
}

int kc_lock_break(const char *state_path, char **cleared, struct kc_err *err)
{
    char *lockpath = NULL;
    struct holder h;
    bool locked = false;
    int fd = -1, ret;

    if (cleared)
        *cleared = NULL;
    ret = open_lock(state_path, &lockpath, false, &fd, err);
    if (ret < 0 || fd < 0)
        goto out;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            ret = refuse_held(state_path, fd, lockpath, 0, err);
            kc_err_prefix(err, "not unlocking, a live process holds the lock");
        } else {
            ret = kc_err_from_errno(err, errno, "cannot lock '%s'", lockpath);
        }
        goto out;
    }
    locked = true;
    ret = read_holder(fd, lockpath, &h, err);
    if (ret < 0 || h.empty)
        goto out;
    if (ftruncate(fd, 0) < 0 || fsync(fd) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot clear '%s'", lockpath);
        goto out;
    }
    if (cleared)
        *cleared = describe(&h);
out:
    close_lock(fd, locked);
    free(lockpath);
    return ret;
}
