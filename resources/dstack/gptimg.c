/* resources/dstack/gptimg.c: a GPT disk with one partition, written sparse. */
#include "resources/dstack/gptimg.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "resources/dstack/dstack.h"

#define SECTOR     512u
#define NENTRIES   128u
#define ENTRY_SIZE 128u
#define ARRAY_SECT (NENTRIES * ENTRY_SIZE / SECTOR) /* 32 */
#define FIRST_LBA  2048u

/* Linux filesystem data: 0FC63DAF-8483-4772-8E79-3D69D8477DE4, mixed-endian
 * as stored on disk. */
static const unsigned char linux_fs_type[16] = {
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
    0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

/* A version 4 / variant 1 GUID from SHA-256(what, seed, size). */
static int derive_guid(const char *what, const char *seed, uint64_t size,
                       unsigned char guid[16], struct kc_err *err)
{
    unsigned char md[32], sz[8];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    dstack_put_le64(sz, size);
    ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, what, strlen(what) + 1) == 1 &&
         EVP_DigestUpdate(ctx, seed, strlen(seed) + 1) == 1 &&
         EVP_DigestUpdate(ctx, sz, sizeof(sz)) == 1 &&
         EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return kc_err_from_ssl(err, "sha256");
    memcpy(guid, md, 16);
    guid[7] = (unsigned char)((guid[7] & 0x0f) | 0x40); /* time_hi: version */
    guid[8] = (unsigned char)((guid[8] & 0x3f) | 0x80); /* variant */
    return 0;
}

static uint32_t crc(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

static void header(unsigned char *h, uint64_t my, uint64_t alt,
                   uint64_t last_usable, const unsigned char disk_guid[16],
                   uint64_t entries_lba, uint32_t entries_crc)
{
    memset(h, 0, SECTOR);
    memcpy(h, "EFI PART", 8);
    dstack_put_le32(h + 8, 0x00010000);
    dstack_put_le32(h + 12, 92);
    dstack_put_le64(h + 24, my);
    dstack_put_le64(h + 32, alt);
    dstack_put_le64(h + 40, 34);
    dstack_put_le64(h + 48, last_usable);
    memcpy(h + 56, disk_guid, 16);
    dstack_put_le64(h + 72, entries_lba);
    dstack_put_le32(h + 80, NENTRIES);
    dstack_put_le32(h + 84, ENTRY_SIZE);
    dstack_put_le32(h + 88, entries_crc);
    dstack_put_le32(h + 16, crc(h, 92));
}

static int write_zeros(int fd, uint64_t n, struct kc_err *err)
{
    static const unsigned char zeros[64 << 10];
    struct stat st;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);

        if (pos < 0 || ftruncate(fd, pos + (off_t)n) < 0 ||
            lseek(fd, (off_t)n, SEEK_CUR) < 0)
            return kc_err_from_errno(err, errno, "cannot extend disk image");
        return 0;
    }
    while (n > 0) {
        size_t k = n > sizeof(zeros) ? sizeof(zeros) : (size_t)n;
        int ret = dstack_write_all(fd, zeros, k, "disk image", err);

        if (ret < 0)
            return ret;
        n -= k;
    }
    return 0;
}

int dstack_gptimg_write_fd(const struct dstack_gptimg *img, int fd,
                           struct kc_err *err)
{
    uint64_t size = img->size ? img->size : DSTACK_GPTIMG_DEFAULT_SIZE;
    const char *name = img->name ? img->name : DSTACK_GPTIMG_NAME;
    const char *seed = img->seed ? img->seed : "";
    unsigned char head[34 * SECTOR], tail[33 * SECTOR];
    unsigned char disk_guid[16], *entries, *e;
    uint64_t nsect, last_usable;
    uint32_t ecrc;
    int ret;

    if (size % SECTOR || size < DSTACK_GPTIMG_MIN_SIZE)
        return kc_err_set(err, KC_EINVAL,
                          "data disk size %llu must be a multiple of 512 and "
                          "at least 2 MiB",
                          (unsigned long long)size);
    if (!*name || strlen(name) > 36)
        return kc_err_set(err, KC_EINVAL,
                          "partition name '%.40s' must be 1 to 36 characters",
                          name);
    for (const char *p = name; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return kc_err_set(err, KC_EINVAL,
                              "partition name must be printable ASCII");
    nsect = size / SECTOR;
    last_usable = nsect - 34;

    memset(head, 0, sizeof(head));
    /* Protective MBR: one partition of type 0xEE over the disk. */
    {
        unsigned char *pe = head + 446;

        pe[1] = 0x00;
        pe[2] = 0x02;
        pe[3] = 0x00;
        pe[4] = 0xee;
        pe[5] = pe[6] = pe[7] = 0xff;
        dstack_put_le32(pe + 8, 1);
        dstack_put_le32(pe + 12, nsect - 1 > 0xffffffffu
                                     ? 0xffffffffu
                                     : (uint32_t)(nsect - 1));
        head[510] = 0x55;
        head[511] = 0xaa;
    }
    entries = head + 2 * SECTOR;
    e = entries;
    memcpy(e, linux_fs_type, 16);
    if ((ret = derive_guid("kmsctl-gpt-partition", seed, size, e + 16, err)) <
            0 ||
        (ret = derive_guid("kmsctl-gpt-disk", seed, size, disk_guid, err)) < 0)
        return ret;
    dstack_put_le64(e + 32, FIRST_LBA);
    dstack_put_le64(e + 40, last_usable);
    for (size_t i = 0; name[i]; i++)
        dstack_put_le16(e + 56 + 2 * i, (unsigned char)name[i]);
    ecrc = crc(entries, NENTRIES * ENTRY_SIZE);
    header(head + SECTOR, 1, nsect - 1, last_usable, disk_guid, 2, ecrc);

    memcpy(tail, entries, NENTRIES * ENTRY_SIZE);
    header(tail + ARRAY_SECT * SECTOR, nsect - 1, 1, last_usable, disk_guid,
           nsect - 33, ecrc);

    if ((ret = dstack_write_all(fd, head, sizeof(head), "disk image", err)) <
            0 ||
        (ret = write_zeros(fd, (nsect - 34 - 33) * SECTOR, err)) < 0 ||
        (ret = dstack_write_all(fd, tail, sizeof(tail), "disk image", err)) < 0)
        return ret;
    return 0;
}

int dstack_gptimg_write_file(const struct dstack_gptimg *img, const char *path,
                             unsigned mode, struct kc_err *err)
{
    struct dstack_out o = { .fd = -1 };
    int ret;

    if ((ret = dstack_out_open(&o, path, mode, err)) < 0)
        return ret;
    ret = dstack_gptimg_write_fd(img, o.fd, err);
    if (ret < 0) {
        dstack_out_abort(&o);
        return kc_err_prefix(err, "write '%s'", path);
    }
    return dstack_out_commit(&o, err);
}
