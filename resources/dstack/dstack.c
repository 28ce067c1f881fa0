/* resources/dstack/dstack.c: streamed atomic output files for the writers. */
#include "resources/dstack/dstack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/file.h"
#include "reconcile/hex.h"

int dstack_out_open(struct dstack_out *o, const char *path, unsigned mode,
                    struct kc_err *err)
{
    o->fd = -1;
    o->path = kc_xstrdup(path);
    o->tmp = kc_xasprintf("%s.tmp-XXXXXX", path);
    o->fd = mkstemp(o->tmp);
    if (o->fd < 0) {
        int ret = kc_err_from_errno(err, errno, "cannot create '%s'", o->tmp);

        free(o->tmp);
        free(o->path);
        o->tmp = o->path = NULL;
        return ret;
    }
    if (fchmod(o->fd, (mode_t)mode) < 0) {
        int ret = kc_err_from_errno(err, errno, "cannot chmod '%s'", o->tmp);

        dstack_out_abort(o);
        return ret;
    }
    return 0;
}

int dstack_out_commit(struct dstack_out *o, struct kc_err *err)
{
    char *dir = NULL;
    int dfd = -1, ret = 0;

    if (fsync(o->fd) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot fsync '%s'", o->tmp);
        goto out;
    }
    if (close(o->fd) < 0) {
        o->fd = -1;
        ret = kc_err_from_errno(err, errno, "cannot close '%s'", o->tmp);
        goto out;
    }
    o->fd = -1;
    if (rename(o->tmp, o->path) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot rename '%s' to '%s'",
                                o->tmp, o->path);
        goto out;
    }
    free(o->tmp);
    o->tmp = NULL;
    dir = kc_file_dirname(o->path);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        ret = kc_err_from_errno(err, errno, "cannot fsync folder '%s'", dir);
out:
    if (dfd >= 0)
        close(dfd);
    free(dir);
    dstack_out_abort(o);
    return ret;
}

void dstack_out_abort(struct dstack_out *o)
{
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    o->tmp = o->path = NULL;
}

int dstack_write_all(int fd, const void *p, size_t n, const char *what,
                     struct kc_err *err)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return kc_err_from_errno(err, errno, "cannot write '%s'", what);
        if (w == 0)
            return kc_err_set(err, KC_EIO, "cannot write '%s': no progress",
                              what);
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void dstack_hex(const unsigned char *p, size_t n, char *out)
{
    kc_hex_encode(p, n, out);
}

void dstack_put_le16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

void dstack_put_le32(unsigned char *p, uint32_t v)
{
    dstack_put_le16(p, v);
    dstack_put_le16(p + 2, v >> 16);
}

void dstack_put_le64(unsigned char *p, uint64_t v)
{
    dstack_put_le32(p, (uint32_t)v);
    dstack_put_le32(p + 4, (uint32_t)(v >> 32));
}
