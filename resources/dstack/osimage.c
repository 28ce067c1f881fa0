/* resources/dstack/osimage.c: find a dstack OS image, archive its disk.raw as
 * GCE wants it (GNU tar "oldgnu" sparse member, gzip), with digests. */
#include "resources/dstack/osimage.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"
#include "resources/dstack/dstack.h"

#define AUTH_HASH_MAX 4096
#define BLOCK         512u
#define CHUNK         4096u        /* sparse granularity */
#define IOBUF         (1u << 20)   /* read buffer */
#define RECORD        (20 * BLOCK) /* GNU tar's default record */

static bool exists(const char *path, bool want_dir)
{
    struct stat st;

    return stat(path, &st) == 0 &&
           (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

/* Names of the bare-metal (non -uki) variant's files (§4.6). */
static bool looks_bare_metal(const char *dir)
{
    static const char *const names[] = {
        "bzImage",     "initramfs.cpio.gz", "rootfs.img.verity",
        "rootfs.cpio", "metadata.json",     NULL
    };

    for (size_t i = 0; names[i]; i++) {
        char *p = kc_xasprintf("%s/%s", dir, names[i]);
        bool yes = exists(p, false);

        free(p);
        if (yes)
            return true;
    }
    return false;
}

static int read_auth_hash(const char *path, char out[129], struct kc_err *err)
{
    char *text = NULL;
    size_t len = 0, a, b, n;
    int ret = kc_file_read(path, AUTH_HASH_MAX, &text, &len, err);

    if (ret < 0)
        return ret;
    a = 0;
    b = len;
    while (a < b && strchr(" \t\r\n", text[a]))
        a++;
    while (b > a && strchr(" \t\r\n", text[b - 1]))
        b--;
    n = b - a;
    if (n == 0) {
        ret = kc_err_set(err, KC_EINVAL,
                         "'%s' is empty: the image has no OS image hash "
                         "(wrong variant? use the -uki release)",
                         path);
        goto out;
    }
    if (n > 128 || n % 2) {
        ret = kc_err_set(err, KC_EINVAL,
                         "'%s' does not hold a hex hash (%zu characters)", path,
                         n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char c = text[a + i];

        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            ret = kc_err_set(err, KC_EINVAL, "'%s' is not hex", path);
            goto out;
        }
        out[i] = c;
    }
    out[n] = '\0';
out:
    free(text);
    return ret;
}

int dstack_osimage_find(const char *base_dir, const char *const *paths,
                        size_t npaths, const char *name,
                        struct dstack_osimage *img, struct kc_err *err)
{
    struct kc_buf tried = { 0 };
    char *abs = base_dir ? realpath(base_dir, NULL) : NULL;
    int ret = KC_ENOENT;

    memset(img, 0, sizeof(*img));
    if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return kc_err_set(err, KC_EINVAL, "os_image '%.64s' is not a name",
                          name ? name : "");
    if (abs)
        base_dir = abs; /* errors name absolute folders */
    for (size_t i = 0; i < npaths; i++) {
        const char *rel = paths[i];
        char *root;

        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        root = kc_file_resolve(base_dir, rel);
        char *dir = kc_xasprintf("%s/%s", root, name);
        char *disk = kc_xasprintf("%s/disk.raw", dir);
        char *auth = kc_xasprintf("%s/auth_hash.txt", dir);
        const char *why = NULL;

        free(root);
        if (exists(disk, false) && exists(auth, false)) {
            struct stat st;

            ret = read_auth_hash(auth, img->auth_hash, err);
            if (ret == 0 && stat(disk, &st) < 0)
                ret = kc_err_from_errno(err, errno, "cannot stat '%s'", disk);
            if (ret == 0) {
                img->dir = dir;
                img->disk_path = disk;
                img->disk_size = (uint64_t)st.st_size;
                img->disk_mtime = st.st_mtime;
                free(auth);
                goto out;
            }
            free(dir);
            free(disk);
            free(auth);
            goto out;
        }
        if (!exists(dir, true))
            why = "no such folder";
        else if (!exists(disk, false))
            why = looks_bare_metal(dir)
                      ? "no disk.raw: this is the bare-metal variant"
                      : "no disk.raw";
        else
            why = "no auth_hash.txt";
        kc_buf_addf(&tried, "%s%s (%s)", i ? ", " : "", dir, why);
        free(dir);
        free(disk);
        free(auth);
    }
    ret = kc_err_set(err, KC_ENOENT,
                     "OS image '%s' not found: looked in %s; download "
                     "%s-uki.tar.gz (it holds %s/disk.raw and "
                     "%s/auth_hash.txt) and extract it into one of "
                     "image_search_paths",
                     name, npaths ? kc_buf_str(&tried) : "no search paths",
                     name, name, name);
out:
    kc_buf_release(&tried);
    free(abs);
    return ret;
}

void dstack_osimage_release(struct dstack_osimage *img)
{
    if (!img)
        return;
    free(img->dir);
    free(img->disk_path);
    img->dir = img->disk_path = NULL;
}

/* CRC-32C, reflected polynomial 0x82F63B78, one table built once. */
static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t dstack_crc32c(uint32_t crc, const void *p, size_t n)
{
    const uint32_t *table = crc32c_table;
    const unsigned char *b = p;

    if (pthread_once(&crc32c_once, crc32c_init) != 0)
        KC_BUG("pthread_once failed");
    crc = ~crc;
    while (n--)
        crc = table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

struct region {
    uint64_t off, len;
};

/* The output side: gzip, digests, the caller's sink. */
struct writer {
    z_stream z;
    bool z_ready;
    EVP_MD_CTX *sha, *md5;
    uint32_t crc;
    uint64_t size;
    dstack_sink_fn sink;
    void *ctx;
    unsigned char out[64 << 10];
    uint64_t tar_bytes; /* uncompressed bytes so far */
};

static int emit(struct writer *w, const unsigned char *p, size_t n,
                struct kc_err *err)
{
    if (EVP_DigestUpdate(w->sha, p, n) != 1 ||
        EVP_DigestUpdate(w->md5, p, n) != 1)
        return kc_err_from_ssl(err, "digest");
    w->crc = dstack_crc32c(w->crc, p, n);
    w->size += n;
    return w->sink(w->ctx, p, n, err);
}

static int deflate_run(struct writer *w, const void *p, size_t n, int flush,
                       struct kc_err *err)
{
    int zret, ret;

    w->z.next_in = KC_UNCONST(p);
    w->z.avail_in = (uInt)n;
    do {
        w->z.next_out = w->out;
        w->z.avail_out = sizeof(w->out);
        zret = deflate(&w->z, flush);
        if (zret == Z_STREAM_ERROR)
            return kc_err_set(err, KC_EIO, "gzip: deflate failed");
        ret = emit(w, w->out, sizeof(w->out) - w->z.avail_out, err);
        if (ret < 0)
            return ret;
    } while (w->z.avail_out == 0 ||
             (flush == Z_FINISH && zret != Z_STREAM_END));
    return 0;
}

static int tar_put(struct writer *w, const void *p, size_t n,
                   struct kc_err *err)
{
    const unsigned char *c = p;

    /* uInt is 32 bits: feed in bounded pieces. */
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        int ret = deflate_run(w, c, k, Z_NO_FLUSH, err);

        if (ret < 0)
            return ret;
        w->tar_bytes += k;
        c += k;
        n -= k;
    }
    return 0;
}

/* A 12-byte (or 8-byte) numeric field: octal with a NUL when it fits, GNU
 * base-256 otherwise. */
static void num_field(unsigned char *f, size_t width, uint64_t v)
{
    uint64_t max = 1;

    for (size_t i = 0; i < width - 1; i++)
        max *= 8;
    if (v < max) {
        f[width - 1] = '\0';
        for (size_t i = width - 1; i-- > 0;) {
            f[i] = (unsigned char)('0' + (v & 7));
            v >>= 3;
        }
        return;
    }
    memset(f, 0, width);
    f[0] = 0x80;
    for (size_t i = width; i-- > 1 && v;) {
        f[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static void checksum(unsigned char *h)
{
    unsigned sum = 0;

    memset(h + 148, ' ', 8);
    for (size_t i = 0; i < BLOCK; i++)
        sum += h[i];
    /* Six octal digits, NUL, space: as GNU tar writes it. */
    for (int i = 5; i >= 0; i--) {
        h[148 + i] = (unsigned char)('0' + (sum & 7));
        sum >>= 3;
    }
    h[154] = '\0';
    h[155] = ' ';
}

static bool all_zero(const unsigned char *p, size_t n)
{
    static const unsigned char zeros[CHUNK];

    while (n >= CHUNK) {
        if (memcmp(p, zeros, CHUNK) != 0)
            return false;
        p += CHUNK;
        n -= CHUNK;
    }
    return n == 0 || memcmp(p, zeros, n) == 0;
}

static int read_at(int fd, unsigned char *buf, size_t n, uint64_t off,
                   const char *path, struct kc_err *err)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kc_err_from_errno(err, errno, "cannot read '%s'", path);
        if (r == 0)
            return kc_err_set(err, KC_EIO, "'%s' shrank while being read",
                              path);
        got += (size_t)r;
    }
    return 0;
}

static void region_add(struct region **v, size_t *n, size_t *cap, uint64_t off,
                       uint64_t len)
{
    if (*n && (*v)[*n - 1].off + (*v)[*n - 1].len == off) {
        (*v)[*n - 1].len += len;
        return;
    }
    kc_xgrow(v, cap, *n + 1, sizeof(**v));
    (*v)[*n].off = off;
    (*v)[*n].len = len;
    (*n)++;
}

/* The data regions of the file: chunks of CHUNK bytes (the last may be
 * shorter) that are not all zero, found by content inside the extents
 * SEEK_DATA reports. */
static int map_regions(int fd, uint64_t size, unsigned char *buf,
                       const char *path, struct region **v, size_t *n,
                       struct kc_err *err)
{
    size_t cap = 0;
    uint64_t pos = 0;

    *v = NULL;
    *n = 0;
    while (pos < size) {
        off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;
        uint64_t end;

        if (d < 0 && errno == ENXIO)
            break; /* only a hole is left */
        if (d < 0) {
            /* No SEEK_DATA here: treat the rest as data. */
            d = (off_t)pos;
            h = (off_t)size;
        } else {
            h = lseek(fd, d, SEEK_HOLE);
            if (h < 0)
                h = (off_t)size;
        }
        /* Align the extent out to whole chunks. */
        pos = (uint64_t)d / CHUNK * CHUNK;
        end = ((uint64_t)h + CHUNK - 1) / CHUNK * CHUNK;
        if (end > size)
            end = size;
        while (pos < end) {
            size_t k = end - pos > IOBUF ? IOBUF : (size_t)(end - pos);
            int ret = read_at(fd, buf, k, pos, path, err);

            if (ret < 0)
                return ret;
            for (size_t o = 0; o < k; o += CHUNK) {
                size_t c = k - o > CHUNK ? CHUNK : k - o;

                if (!all_zero(buf + o, c))
                    region_add(v, n, &cap, pos + o, c);
            }
            pos += k;
        }
    }
    return 0;
}

static int write_headers(struct writer *w, uint64_t size,
                         const struct region *v, size_t n, uint64_t stored,
                         struct kc_err *err)
{
    unsigned char h[BLOCK];
    size_t nmap = n, i = 0;
    struct region last = { size, 0 };
    int ret;

    /* GNU tar ends the map at the end of the file: a file that ends in a
     * hole gets an empty region there. */
    if (n == 0 || v[n - 1].off + v[n - 1].len < size)
        nmap++;

    memset(h, 0, sizeof(h));
    memcpy(h, "disk.raw", 8);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    num_field(h + 124, 12, stored);
    num_field(h + 136, 12, 0);
    h[156] = 'S';
    memcpy(h + 257, "ustar  ", 8); /* oldgnu magic and version */
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    for (size_t k = 0; k < 4 && i < nmap; k++, i++) {
        const struct region *r = i < n ? &v[i] : &last;

        num_field(h + 386 + 24 * k, 12, r->off);
        num_field(h + 386 + 24 * k + 12, 12, r->len);
    }
    h[482] = i < nmap;
    num_field(h + 483, 12, size);
    checksum(h);
    if ((ret = tar_put(w, h, BLOCK, err)) < 0)
        return ret;
    while (i < nmap) {
        memset(h, 0, sizeof(h));
        for (size_t k = 0; k < 21 && i < nmap; k++, i++) {
            const struct region *r = i < n ? &v[i] : &last;

            num_field(h + 24 * k, 12, r->off);
            num_field(h + 24 * k + 12, 12, r->len);
        }
        h[504] = i < nmap;
        if ((ret = tar_put(w, h, BLOCK, err)) < 0)
            return ret;
    }
    return 0;
}

int dstack_osimage_archive(const char *disk_path, dstack_sink_fn sink,
                           void *ctx, struct dstack_archive_digest *dg,
                           struct kc_err *err)
{
    static const unsigned char zeros[RECORD];
    struct writer *w = kc_xcalloc(1, sizeof(*w));
    unsigned char *buf = kc_xmalloc(IOBUF), md[32];
    struct region *v = NULL;
    size_t n = 0;
    uint64_t size, stored = 0;
    struct stat st;
    int fd, ret;

    memset(dg, 0, sizeof(*dg));
    fd = open(disk_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = kc_err_from_errno(err, errno, "cannot open '%s'", disk_path);
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ret =
            kc_err_set(err, KC_EINVAL, "'%s' is not a regular file", disk_path);
        goto out;
    }
    size = (uint64_t)st.st_size;
    if ((ret = map_regions(fd, size, buf, disk_path, &v, &n, err)) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        stored += v[i].len;

    w->sink = sink;
    w->ctx = ctx;
    w->sha = EVP_MD_CTX_new();
    w->md5 = EVP_MD_CTX_new();
    if (!w->sha || !w->md5 ||
        EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(w->md5, EVP_md5(), NULL) != 1) {
        ret = kc_err_from_ssl(err, "digest init");
        goto out;
    }
    /* windowBits 15 + 16: a gzip wrapper with no name and mtime 0. */
    if (deflateInit2(&w->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        ret = kc_err_set(err, KC_EIO, "gzip: deflateInit2 failed");
        goto out;
    }
    w->z_ready = true;

    if ((ret = write_headers(w, size, v, n, stored, err)) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        for (uint64_t done = 0; done < v[i].len;) {
            size_t k =
                v[i].len - done > IOBUF ? IOBUF : (size_t)(v[i].len - done);

            if ((ret = read_at(fd, buf, k, v[i].off + done, disk_path, err)) <
                    0 ||
                (ret = tar_put(w, buf, k, err)) < 0)
                goto out;
            done += k;
        }
    }
    /* Pad the data to a block, two zero blocks, then a whole record. */
    if (stored % BLOCK &&
        (ret = tar_put(w, zeros, BLOCK - stored % BLOCK, err)) < 0)
        goto out;
    if ((ret = tar_put(w, zeros, 2 * BLOCK, err)) < 0)
        goto out;
    if (w->tar_bytes % RECORD &&
        (ret = tar_put(w, zeros, RECORD - w->tar_bytes % RECORD, err)) < 0)
        goto out;
    if ((ret = deflate_run(w, NULL, 0, Z_FINISH, err)) < 0)
        goto out;

    if (EVP_DigestFinal_ex(w->sha, md, NULL) != 1 ||
        EVP_DigestFinal_ex(w->md5, dg->md5, NULL) != 1) {
        ret = kc_err_from_ssl(err, "digest");
        goto out;
    }
    dstack_hex(md, 32, dg->sha256);
    dg->size = w->size;
    dg->crc32c = w->crc;
    dg->data_bytes = stored;
    EVP_EncodeBlock((unsigned char *)dg->md5_b64, dg->md5, 16);
    {
        unsigned char be[4] = { (unsigned char)(w->crc >> 24),
                                (unsigned char)(w->crc >> 16),
                                (unsigned char)(w->crc >> 8),
                                (unsigned char)w->crc };

        EVP_EncodeBlock((unsigned char *)dg->crc32c_b64, be, 4);
    }
    ret = 0;
out:
    if (w->z_ready)
        deflateEnd(&w->z);
    EVP_MD_CTX_free(w->sha);
    EVP_MD_CTX_free(w->md5);
    if (fd >= 0)
        close(fd);
    free(v);
    free(buf);
    free(w);
    return ret;
}

static int fd_sink(void *ctx, const void *p, size_t n, struct kc_err *err)
{
    return dstack_write_all(*(int *)ctx, p, n, "archive", err);
}

int dstack_osimage_archive_fd(const char *disk_path, int fd,
                              struct dstack_archive_digest *dg,
                              struct kc_err *err)
{
    int ret = dstack_osimage_archive(disk_path, fd_sink, &fd, dg, err);

    return ret < 0 ? kc_err_prefix(err, "archive '%s'", disk_path) : 0;
}

int dstack_osimage_archive_file(const char *disk_path, const char *out_path,
                                struct dstack_archive_digest *dg,
                                struct kc_err *err)
{
    struct dstack_out o = { .fd = -1 };
    int ret;

    if ((ret = dstack_out_open(&o, out_path, 0644, err)) < 0)
        return ret;
    ret = dstack_osimage_archive_fd(disk_path, o.fd, dg, err);
    if (ret < 0) {
        dstack_out_abort(&o);
        return ret;
    }
    return dstack_out_commit(&o, err);
}
