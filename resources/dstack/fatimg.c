/* resources/dstack/fatimg.c: a reproducible FAT32 image (Microsoft FAT32 File
 * System Specification 1.03: BPB, FSInfo, directory entries, long names). */
#include "resources/dstack/fatimg.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resources/dstack/dstack.h"

#define SECTOR       512u
#define RESERVED     32u
#define NFATS        2u
#define FAT_EOC      0x0fffffffu
#define DIRENT       32u
#define LFN_CHARS    13u
#define FIXED_DATE   0x0021u /* 1980-01-01 */
#define FIXED_TIME   0x0000u
#define ATTR_ARCHIVE 0x20u
#define ATTR_VOLUME  0x08u
#define ATTR_LFN     0x0fu

struct layout {
    uint32_t total;    /* sectors */
    uint32_t spc;      /* sectors per cluster */
    uint32_t fatsz;    /* sectors per FAT */
    uint32_t clusters; /* data clusters */
    uint32_t data;     /* first data sector */
};

static int check_name(const char *name, struct kc_err *err)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > 255)
        return kc_err_set(err, KC_EINVAL,
                          "file name '%.64s' must be 1 to 255 characters",
                          name ? name : "");
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return kc_err_set(err, KC_EINVAL, "file name '%s' is reserved", name);
    for (const char *p = name; *p; p++)
        if (*p < 0x20 || *p > 0x7e || strchr("/\\:*?\"<>|", *p))
            return kc_err_set(err, KC_EINVAL,
                              "file name '%.64s' has a character FAT does "
                              "not allow",
                              name);
    if (name[len - 1] == ' ' || name[len - 1] == '.')
        return kc_err_set(err, KC_EINVAL,
                          "file name '%.64s' ends in a space or dot", name);
    return 0;
}

static bool short_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'()-@^_`{}~", c) != NULL;
}

/* The 8.3 alias of NAME: basis from the name without leading dots and the
 * extension after its last dot, upper case, invalid characters as '_',
 * then "~N" (always, so an alias never stands in for the long name). */
static void short_name(const char *name, unsigned n, unsigned char out[11])
{
    const char *s = name, *dot;
    char base[9] = { 0 }, tail[8];
    size_t nb = 0, ntail;

    while (*s == '.')
        s++;
    dot = strrchr(s, '.');
    memset(out, ' ', 11);
    for (const char *p = s; *p && (!dot || p < dot) && nb < 8; p++) {
        char c = *p;

        if (c == ' ' || c == '.')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        base[nb++] = short_char_ok(c) ? c : '_';
    }
    if (nb == 0)
        base[nb++] = '_';
    ntail = (size_t)snprintf(tail, sizeof(tail), "~%u", n);
    if (nb > 8 - ntail)
        nb = 8 - ntail;
    memcpy(out, base, nb);
    memcpy(out + nb, tail, ntail);
    if (dot) {
        size_t ne = 0;

        for (const char *p = dot + 1; *p && ne < 3; p++) {
            char c = *p;

            if (c == ' ')
                continue;
            if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
            out[8 + ne++] = (unsigned char)(short_char_ok(c) ? c : '_');
        }
    }
}

static unsigned char lfn_checksum(const unsigned char sn[11])
{
    unsigned char sum = 0;

    for (int i = 0; i < 11; i++)
        sum = (unsigned char)(((sum & 1) << 7) + (sum >> 1) + sn[i]);
    return sum;
}

static int plan_layout(uint64_t size, struct layout *l, struct kc_err *err)
{
    if (size % SECTOR || size < DSTACK_FATIMG_MIN_SIZE ||
        size > DSTACK_FATIMG_MAX_SIZE)
        return kc_err_set(err, KC_EINVAL,
                          "FAT image size %llu must be a multiple of 512 "
                          "from 1 MiB to 2 GiB",
                          (unsigned long long)size);
    l->total = (uint32_t)(size / SECTOR);
    l->spc = size <= (256ull << 20) ? 1 : 8;
    /* The smallest FAT that maps every cluster the rest leaves room for. */
    for (l->fatsz = 1;; l->fatsz++) {
        uint32_t data = RESERVED + NFATS * l->fatsz;

        l->clusters = (l->total - data) / l->spc;
        if ((uint64_t)l->fatsz * (SECTOR / 4) >= (uint64_t)l->clusters + 2)
            break;
    }
    l->data = RESERVED + NFATS * l->fatsz;
    return 0;
}

static void boot_sector(unsigned char *b, const struct layout *l,
                        uint32_t volid, const char *label)
{
    memcpy(b, "\xeb\x58\x90", 3);
    memcpy(b + 3, "KMSCTL  ", 8);
    dstack_put_le16(b + 11, SECTOR);
    b[13] = (unsigned char)l->spc;
    dstack_put_le16(b + 14, RESERVED);
    b[16] = NFATS;
    b[21] = 0xf8; /* fixed disk */
    dstack_put_le16(b + 24, 32);
    dstack_put_le16(b + 26, 2);
    dstack_put_le32(b + 32, l->total);
    dstack_put_le32(b + 36, l->fatsz);
    dstack_put_le32(b + 44, 2); /* root cluster */
    dstack_put_le16(b + 48, 1); /* FSInfo */
    dstack_put_le16(b + 50, 6); /* backup boot sector */
    b[64] = 0x80;
    b[66] = 0x29;
    dstack_put_le32(b + 67, volid);
    memset(b + 71, ' ', 11);
    memcpy(b + 71, label, strlen(label));
    memcpy(b + 82, "FAT32   ", 8);
    /* Not bootable: hlt; jmp back. */
    memcpy(b + 90, "\xf4\xeb\xfd", 3);
    b[510] = 0x55;
    b[511] = 0xaa;
}

static void fsinfo_sector(unsigned char *b, uint32_t free_clusters,
                          uint32_t next_free)
{
    dstack_put_le32(b, 0x41615252);
    dstack_put_le32(b + 484, 0x61417272);
    dstack_put_le32(b + 488, free_clusters);
    dstack_put_le32(b + 492, next_free);
    dstack_put_le32(b + 508, 0xaa550000);
}

static void dirent(unsigned char *e, const unsigned char name[11],
                   unsigned attr, uint32_t cluster, uint32_t size)
{
    memcpy(e, name, 11);
    e[11] = (unsigned char)attr;
    dstack_put_le16(e + 14, FIXED_TIME);
    dstack_put_le16(e + 16, FIXED_DATE);
    dstack_put_le16(e + 18, FIXED_DATE);
    dstack_put_le16(e + 20, cluster >> 16);
    dstack_put_le16(e + 22, FIXED_TIME);
    dstack_put_le16(e + 24, FIXED_DATE);
    dstack_put_le16(e + 26, cluster & 0xffff);
    dstack_put_le32(e + 28, size);
}

/* Writes the long-name entries of NAME (last piece first) at E; returns the
 * number written. */
static size_t lfn_entries(unsigned char *e, const char *name, unsigned char sum)
{
    static const int off[LFN_CHARS] = { 1,  3,  5,  7,  9,  14, 16,
                                        18, 20, 22, 24, 28, 30 };
    size_t len = strlen(name), n = (len + LFN_CHARS - 1) / LFN_CHARS;

    for (size_t k = 0; k < n; k++) {
        size_t seq = n - k; /* 1-based piece number */
        unsigned char *d = e + k * DIRENT;

        d[0] = (unsigned char)(seq | (k == 0 ? 0x40 : 0));
        d[11] = ATTR_LFN;
        d[13] = sum;
        for (size_t i = 0; i < LFN_CHARS; i++) {
            size_t at = (seq - 1) * LFN_CHARS + i;
            uint32_t ch = at < len    ? (unsigned char)name[at]
                          : at == len ? 0x0000
                                      : 0xffff;

            dstack_put_le16(d + off[i], ch);
        }
    }
    return n;
}

static void fat_set(unsigned char *fat, uint32_t cluster, uint32_t v)
{
    dstack_put_le32(fat + 4 * (size_t)cluster, v);
}

/* Chains N clusters from FIRST in FAT. */
static void fat_chain(unsigned char *fat, uint32_t first, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        fat_set(fat, first + i, i + 1 < n ? first + i + 1 : FAT_EOC);
}

static int check_label(const char *label, struct kc_err *err)
{
    size_t len = strlen(label);

    if (len == 0 || len > 11)
        return kc_err_set(err, KC_EINVAL,
                          "volume label '%.16s' must be 1 to 11 characters",
                          label);
    for (const char *p = label; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == ' ' || *p == '_' || *p == '-'))
            return kc_err_set(err, KC_EINVAL,
                              "volume label '%s' may hold only A-Z, 0-9, "
                              "space, _ and -",
                              label);
    return 0;
}

int dstack_fatimg_write_fd(const struct dstack_fatimg *img, int fd,
                           char digest[65], struct kc_err *err)
{
    static const unsigned char zeros[64 << 10];
    const char *label = img->label ? img->label : DSTACK_FATIMG_LABEL;
    uint32_t volid =
        img->volume_id_set ? img->volume_id : DSTACK_FATIMG_VOLUME_ID;
    uint64_t size = img->size ? img->size : DSTACK_FATIMG_DEFAULT_SIZE;
    struct layout l = { 0 };
    unsigned char *head = NULL, *fat, *root, md[32];
    unsigned char(*names)[11] = NULL;
    size_t nents = 1, cbytes, headlen;
    uint32_t rootc, used, next;
    EVP_MD_CTX *ctx = NULL;
    uint64_t left;
    struct stat st;
    int ret;

    if ((ret = plan_layout(size, &l, err)) < 0 ||
        (ret = check_label(label, err)) < 0)
        return ret;
    cbytes = (size_t)l.spc * SECTOR;
    names = kc_xcalloc(img->nfiles + 1, sizeof(*names));
    for (size_t i = 0; i < img->nfiles; i++) {
        if ((ret = check_name(img->files[i].name, err)) < 0)
            goto out;
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(img->files[i].name, img->files[j].name) == 0) {
                ret = kc_err_set(err, KC_EINVAL,
                                 "file name '%s' given twice (FAT ignores "
                                 "case)",
                                 img->files[i].name);
                goto out;
            }
        if (img->files[i].len > UINT32_MAX) {
            ret = kc_err_set(err, KC_ERANGE, "file '%s' is over 4 GiB",
                             img->files[i].name);
            goto out;
        }
        /* Aliases NAME~1, NAME~2... unique among the files written. */
        for (unsigned n = 1;; n++) {
            bool clash = false;

            short_name(img->files[i].name, n, names[i]);
            for (size_t j = 0; j < i && !clash; j++)
                clash = memcmp(names[i], names[j], 11) == 0;
            if (!clash)
                break;
        }
        nents += 1 + (strlen(img->files[i].name) + LFN_CHARS - 1) / LFN_CHARS;
    }

    /* Clusters: the root folder first, then each file in order. */
    rootc = (uint32_t)((nents * DIRENT + cbytes - 1) / cbytes);
    used = rootc;
    for (size_t i = 0; i < img->nfiles; i++) {
        uint64_t c = (img->files[i].len + cbytes - 1) / cbytes;

        if (used + c > l.clusters) {
            ret = kc_err_set(err, KC_ERANGE,
                             "files do not fit a FAT image of %llu bytes",
                             (unsigned long long)size);
            goto out;
        }
        used += (uint32_t)c;
    }

    headlen = ((size_t)l.data + (size_t)used * l.spc) * SECTOR;
    head = kc_xcalloc(1, headlen);
    fat = head + (size_t)RESERVED * SECTOR;
    root = head + (size_t)l.data * SECTOR;

    boot_sector(head, &l, volid, label);
    fsinfo_sector(head + SECTOR, l.clusters - used, 2 + used);
    memcpy(head + 6 * SECTOR, head, SECTOR);
    memcpy(head + 7 * SECTOR, head + SECTOR, SECTOR);

    fat_set(fat, 0, 0x0fffff00u | 0xf8u);
    fat_set(fat, 1, FAT_EOC);
    fat_chain(fat, 2, rootc);
    {
        unsigned char vol[11];
        unsigned char *e = root;

        memset(vol, ' ', 11);
        memcpy(vol, label, strlen(label));
        dirent(e, vol, ATTR_VOLUME, 0, 0);
        e += DIRENT;
        next = 2 + rootc;
        for (size_t i = 0; i < img->nfiles; i++) {
            const struct dstack_fat_file *f = &img->files[i];
            uint32_t c = (uint32_t)((f->len + cbytes - 1) / cbytes);

            e += lfn_entries(e, f->name, lfn_checksum(names[i])) * DIRENT;
            dirent(e, names[i], ATTR_ARCHIVE, c ? next : 0, (uint32_t)f->len);
            e += DIRENT;
            if (c) {
                fat_chain(fat, next, c);
                memcpy(head + ((size_t)l.data + (size_t)(next - 2) * l.spc) *
                                  SECTOR,
                       f->data, f->len);
            }
            next += c;
        }
    }
    memcpy(fat + (size_t)l.fatsz * SECTOR, fat, (size_t)l.fatsz * SECTOR);

    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, head, headlen) != 1) {
        ret = kc_err_from_ssl(err, "sha256");
        goto out;
    }
    if ((ret = dstack_write_all(fd, head, headlen, "FAT image", err)) < 0)
        goto out;
    left = size - headlen;
    for (uint64_t done = 0; done < left;) {
        size_t n =
            left - done > sizeof(zeros) ? sizeof(zeros) : (size_t)(left - done);

        if (EVP_DigestUpdate(ctx, zeros, n) != 1) {
            ret = kc_err_from_ssl(err, "sha256");
            goto out;
        }
        done += n;
    }
    /* The zero tail: a hole in a regular file, written bytes elsewhere. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);

        if (pos < 0 || ftruncate(fd, pos + (off_t)left) < 0 ||
            lseek(fd, (off_t)left, SEEK_CUR) < 0) {
            ret = kc_err_from_errno(err, errno, "cannot extend FAT image");
            goto out;
        }
    } else {
        for (uint64_t done = 0; done < left;) {
            size_t n = left - done > sizeof(zeros) ? sizeof(zeros)
                                                   : (size_t)(left - done);

            if ((ret = dstack_write_all(fd, zeros, n, "FAT image", err)) < 0)
                goto out;
            done += n;
        }
    }
    if (EVP_DigestFinal_ex(ctx, md, NULL) != 1) {
        ret = kc_err_from_ssl(err, "sha256");
        goto out;
    }
    if (digest)
        dstack_hex(md, 32, digest);
    ret = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(head);
    free(names);
    return ret;
}

int dstack_fatimg_write_file(const struct dstack_fatimg *img, const char *path,
                             unsigned mode, char digest[65], struct kc_err *err)
{
    struct dstack_out o = { .fd = -1 };
    int ret;

    if ((ret = dstack_out_open(&o, path, mode, err)) < 0)
        return ret;
    ret = dstack_fatimg_write_fd(img, o.fd, digest, err);
    if (ret < 0) {
        dstack_out_abort(&o);
        return kc_err_prefix(err, "write '%s'", path);
    }
    return dstack_out_commit(&o, err);
}
