/* reconcile/file.c: bounded reads, atomic writes, paths. */
#include "reconcile/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int kc_file_read(const char *path, size_t max, char **out, size_t *len,
                 struct kc_err *err)
{
    int fd = -1, ret = 0;
    struct stat st;
    char *buf = NULL;
    size_t have = 0, cap = 0;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kc_err_from_errno(err, errno, "cannot read '%s'", path);
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ret = kc_err_set(err, KC_EINVAL, "cannot read '%s': is a directory",
                         path);
        goto out;
    }
    for (;;) {
        ssize_t n;

        if (have + 1 >= cap)
            kc_xgrow(&buf, &cap, have + 65536 + 1, 1);
        n = read(fd, buf + have, cap - have - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = kc_err_from_errno(err, errno, "cannot read '%s'", path);
            goto out;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        if (have > max) {
            ret = kc_err_set(err, KC_ERANGE,
                             "'%s' is larger than the limit of %zu bytes", path,
                             max);
            goto out;
        }
    }
    if (!buf)
        buf = kc_xmalloc(1);
    buf[have] = '\0';
    *out = buf;
    buf = NULL;
    if (len)
        *len = have;
out:
    free(buf);
    close(fd);
    return ret;
}

int kc_file_mkdirs(const char *dir, unsigned mode, struct kc_err *err)
{
    char *p = kc_xstrdup(dir);
    int ret = 0;

    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            ret = kc_err_from_errno(err, errno, "cannot create '%s'", p);
            goto out;
        }
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        ret = kc_err_from_errno(err, errno, "cannot create '%s'", p);
out:
    free(p);
    return ret;
}

char *kc_file_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return kc_xstrdup(".");
    if (slash == path)
        return kc_xstrdup("/");
    return kc_xstrndup(path, (size_t)(slash - path));
}

char *kc_file_resolve(const char *base_dir, const char *path)
{
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
        const char *home = getenv("HOME");

        return kc_xasprintf("%s%s", home ? home : "", path + 1);
    }
    if (path[0] == '/' || !base_dir)
        return kc_xstrdup(path);
    return kc_xasprintf("%s/%s", base_dir, path);
}

static int fsync_dir(const char *dir, struct kc_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return kc_err_from_errno(err, errno, "cannot open folder '%s'", dir);
    if (fsync(fd) < 0)
        ret = kc_err_from_errno(err, errno, "cannot fsync folder '%s'", dir);
    close(fd);
    return ret;
}

int kc_file_write_atomic(const char *path, const void *data, size_t len,
                         unsigned mode, struct kc_err *err)
{
    char *dir = kc_file_dirname(path);
    char *tmp = kc_xasprintf("%s.tmp.XXXXXX", path);
    const char *p = data;
    int fd, ret = 0;

    fd = mkstemp(tmp);
    if (fd < 0) {
        ret = kc_err_from_errno(err, errno, "cannot create temp file for '%s'",
                                path);
        goto out;
    }
    if (fchmod(fd, mode) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot chmod '%s'", tmp);
        goto fail;
    }
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = kc_err_from_errno(err, errno, "cannot write '%s'", tmp);
            goto fail;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot fsync '%s'", tmp);
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        ret = kc_err_from_errno(err, errno, "cannot close '%s'", tmp);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot rename '%s' to '%s'", tmp,
                                path);
        goto fail;
    }
    ret = fsync_dir(dir, err);
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    free(tmp);
    free(dir);
    return ret;
}
