/* reconcile/lock.c: the state lock: flock plus a record of the holder. */
#include "reconcile/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <uv.h>

#include "reconcile/file.h"
#include "reconcile/json.h"

#define POLL_MS 50 /* between tries while waiting */

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
                      "checking no apply is running ('--if-stale' or "
                      "--unlock-stale only take it from a dead process on "
                      "this host)",
                      state_path, h->pid, note, h->host[0] ? h->host : "?",
                      h->started_at[0] ? h->started_at : "?",
                      h->command[0] ? h->command : "?");
}

/* Seconds since the epoch of "YYYY-MM-DDTHH:MM:SSZ" (the record's
 * started_at), or -1. */
static long long parse_utc(const char *s)
{
    struct tm tm = { 0 };
    int n = 0;
    time_t t;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n == 0 || s[n] != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (long long)t;
}

/* Reads at most SIZE - 1 bytes of PATH into BUF, NUL-terminated. */
static int read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    do
        n = read(fd, buf, size - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* The state letter of process PID and when it started (seconds since the
 * epoch, rounded down), from /proc/PID/stat and the boot time in /proc/stat.
 * 0, or -1 when either is unknown (no /proc, a process that just ended). */
static int proc_start(long pid, char *state, long long *started)
{
    char path[64], buf[2048], *p;
    unsigned long long ticks = 0;
    long long btime = -1;
    long hz = sysconf(_SC_CLK_TCK);

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    /* "pid (comm) S ppid ...": comm may hold spaces and ')', so the fields
     * start after the last ')'; the state is field 3, starttime field 22. */
    if (hz <= 0 || read_small(path, buf, sizeof(buf)) < 0 ||
        !(p = strrchr(buf, ')')) || p[1] != ' ' || !p[2])
        return -1;
    *state = p[2];
    p += 2;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    if (sscanf(p, "%llu", &ticks) != 1)
        return -1;
    if (read_small("/proc/stat", buf, sizeof(buf)) < 0 ||
        !(p = strstr(buf, "\nbtime ")) || sscanf(p + 7, "%lld", &btime) != 1)
        return -1;
    *started = btime + (long long)(ticks / (unsigned long long)hz);
    return 0;
}

/* For taking a stale record without an operator: 0 when its holder is
 * provably gone — a readable record of this host whose pid is not running,
 * is a zombie, or now belongs to a process started after the record was
 * written (pid reused). *WHY says which (caller frees). Otherwise
 * KC_ELOCKED naming the holder and why it is not taken. The caller holds
 * the flock, so no live kmsctl holds the lock through it. */
static int check_dead(const char *state_path, const struct holder *h,
                      char **why, struct kc_err *err)
{
    char host[256], pstate = '?';
    long long started = -1, locked_at;
    char *who;
    int ret;

    *why = NULL;
    if (!h->readable)
        return kc_err_set(err, KC_ELOCKED,
                          "state '%s' has a stale lock with an unreadable "
                          "record: not taking it; check it, then run "
                          "'kmsctl state unlock'",
                          state_path);
    hostname(host, sizeof(host));
    who = describe(h);
    if (!host[0] || strcmp(h->host, host) != 0) {
        ret = kc_err_set(err, KC_ELOCKED,
                         "state '%s' has a lock of %s, another host than "
                         "this one ('%s'): not taking it; check that host, "
                         "then run 'kmsctl state unlock'",
                         state_path, who, host);
        goto out;
    }
    if (kill((pid_t)h->pid, 0) < 0 && errno == ESRCH) {
        *why = kc_xstrdup("dead");
        ret = 0;
        goto out;
    }
    locked_at = parse_utc(h->started_at);
    if (proc_start(h->pid, &pstate, &started) == 0) {
        if (pstate == 'Z' || pstate == 'X') {
            *why = kc_xstrdup("dead, not reaped yet");
            ret = 0;
            goto out;
        }
        /* The holder started before it wrote its record; the boot time and
         * the record are whole seconds, hence the margin of 2. */
        if (locked_at >= 0 && started >= locked_at + 2) {
            *why = kc_xasprintf("dead; pid %ld was reused by a process "
                                "started %llds after the lock was taken",
                                h->pid, started - locked_at);
            ret = 0;
            goto out;
        }
    }
    ret = kc_err_set(err, KC_ELOCKED,
                     "state '%s' has a lock record of %s and process %ld is "
                     "still running: not taking it; check it, then run "
                     "'kmsctl state unlock'",
                     state_path, who, h->pid);
out:
    free(who);
    return ret;
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

struct flock_wait {
    int fd;
    double start, timeout;
    int result; /* 0 locked, 1 timed out, -errno, 2 still waiting */
};

static void on_flock_tick(uv_timer_t *t)
{
    struct flock_wait *w = t->data;

    if (flock(w->fd, LOCK_EX | LOCK_NB) == 0)
        w->result = 0;
    else if (errno != EWOULDBLOCK && errno != EINTR)
        w->result = -errno;
    else if (now_mono() - w->start >= w->timeout)
        w->result = 1;
    else
        return;
    (void)uv_timer_stop(t); /* always 0 */
}

/* Waits for the flock on FD until TIMEOUT seconds after START, trying every
 * POLL_MS on a uv timer. The lock is taken before kmsctl's own loop has any
 * work, so the wait runs on a loop of its own. Returns 0 when locked, 1 on
 * timeout. */
static int wait_flock(int fd, double start, double timeout,
                      const char *lockpath, struct kc_err *err)
{
    struct flock_wait w = { fd, start, timeout, 2 };
    uv_loop_t loop;
    uv_timer_t timer;
    int ret;

    if ((ret = uv_loop_init(&loop)) < 0)
        return kc_err_from_uv(err, ret, "waiting for the state lock");
    ret = uv_timer_init(&loop, &timer);
    if (ret == 0) {
        timer.data = &w;
        ret = uv_timer_start(&timer, on_flock_tick, POLL_MS, POLL_MS);
        if (ret == 0)
            (void)uv_run(&loop, UV_RUN_DEFAULT); /* until the timer stops */
        uv_close((uv_handle_t *)&timer, NULL);
        (void)uv_run(&loop, UV_RUN_DEFAULT); /* the close */
    }
    (void)uv_loop_close(&loop); /* nothing is left open */
    if (ret < 0)
        return kc_err_from_uv(err, ret, "waiting for the state lock");
    if (w.result < 0)
        return kc_err_from_errno(err, -w.result, "cannot lock '%s'", lockpath);
    return w.result;
}

/* Drops the flock on FD when LOCKED, and closes FD when it is open. */
static void close_lock(int fd, bool locked)
{
    if (locked)
        (void)flock(fd, LOCK_UN); /* close releases it anyway */
    if (fd >= 0)
        close(fd);
}

/* kc_lock_acquire, and kc_lock_acquire_stale when TAKEN is not NULL. */
static int lock_take(const char *state_path, double timeout_seconds,
                     const char *command, char **taken, struct kc_lock **out,
                     struct kc_err *err)
{
    char *lockpath = NULL;
    double start = now_mono();
    bool locked = false;
    struct holder h;
    int fd = -1, ret;

    *out = NULL;
    if (taken)
        *taken = NULL;
    if (!(timeout_seconds >= 0))
        return kc_err_set(err, KC_EINVAL, "lock timeout must be >= 0");
    ret = open_lock(state_path, &lockpath, true, &fd, err);
    if (ret < 0)
        goto out;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            ret = kc_err_from_errno(err, errno, "cannot lock '%s'", lockpath);
            goto out;
        }
        ret = timeout_seconds > 0
                  ? wait_flock(fd, start, timeout_seconds, lockpath, err)
                  : 1;
        if (ret < 0)
            goto out;
        if (ret == 1) {
            ret = refuse_held(state_path, fd, lockpath, timeout_seconds, err);
            goto out;
        }
        break;
    }
    locked = true;
    ret = read_holder(fd, lockpath, &h, err);
    if (ret < 0)
        goto out;
    if (!h.empty && !taken) {
        ret = refuse_stale(state_path, &h, err);
        goto out;
    }
    if (!h.empty) {
        char *why = NULL, *who;

        ret = check_dead(state_path, &h, &why, err);
        if (ret < 0)
            goto out;
        who = describe(&h);
        *taken = kc_xasprintf("%s, %s", who, why);
        free(who);
        free(why);
    }
    /* write_record truncates first: a stale record is replaced whole. */
    ret = write_record(fd, lockpath, command, err);
    if (ret < 0) {
        if (taken) {
            free(*taken);
            *taken = NULL;
        }
        goto out;
    }
    *out = kc_xcalloc(1, sizeof(**out));
    (*out)->fd = fd;
    (*out)->path = lockpath;
    return 0;
out:
    close_lock(fd, locked);
    free(lockpath);
    return ret;
}

int kc_lock_acquire(const char *state_path, double timeout_seconds,
                    const char *command, struct kc_lock **out,
                    struct kc_err *err)
{
    return lock_take(state_path, timeout_seconds, command, NULL, out, err);
}

int kc_lock_acquire_stale(const char *state_path, double timeout_seconds,
                          const char *command, char **taken,
                          struct kc_lock **out, struct kc_err *err)
{
    char *ignored = NULL;
    int ret = lock_take(state_path, timeout_seconds, command,
                        taken ? taken : &ignored, out, err);

    free(ignored);
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

/* kc_lock_break, or kc_lock_break_stale when ONLY_DEAD. */
static int lock_break(const char *state_path, bool only_dead, char **cleared,
                      struct kc_err *err)
{
    char *lockpath = NULL, *why = NULL;
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
    if (only_dead && (ret = check_dead(state_path, &h, &why, err)) < 0)
        goto out;
    if (ftruncate(fd, 0) < 0 || fsync(fd) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot clear '%s'", lockpath);
        goto out;
    }
    if (cleared) {
        char *who = describe(&h);

        *cleared = why ? kc_xasprintf("%s, %s", who, why) : kc_xstrdup(who);
        free(who);
    }
out:
    close_lock(fd, locked);
    free(lockpath);
    free(why);
    return ret;
}

int kc_lock_break(const char *state_path, char **cleared, struct kc_err *err)
{
    return lock_break(state_path, false, cleared, err);
}

int kc_lock_break_stale(const char *state_path, char **cleared,
                        struct kc_err *err)
{
    return lock_break(state_path, true, cleared, err);
}
