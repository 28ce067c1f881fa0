/* resources/dstack/fatimg.h: a FAT32 file system image written from a list
 * of files, for the dstack shared disk (reference/dstack.md §4.4, §5.2 step
 * 3: label DSTACKSHR, files in the root folder).
 *
 * The bytes depend only on the inputs: fixed volume id, fixed timestamps
 * (1980-01-01 00:00:00), files and clusters in the order given, every file
 * contiguous. Every name gets VFAT long-name entries (the dot files need
 * them) next to a generated 8.3 alias (NAME~N.EXT).
 *
 * Layout: 512-byte sectors, 32 reserved sectors (FSInfo in 1, backup boot
 * sector in 6, backup FSInfo in 7), two FATs, root folder from cluster 2,
 * one sector per cluster up to 256 MiB, 8 above. An image under 33 MiB has
 * fewer than 65525 clusters: Linux and dosfstools take it as FAT32 from its
 * BPB (as mkfs.fat -F 32 does for dstack-cloud's 8 MiB disk), while mtools
 * 4.0.32 types FAT by cluster count and cannot read it.
 *
 * Writing blocks (file I/O and hashing): call it off the loop.
 */
#ifndef KC_RESOURCES_DSTACK_FATIMG_H
#define KC_RESOURCES_DSTACK_FATIMG_H

#include "reconcile/kc.h"

#define DSTACK_FATIMG_DEFAULT_SIZE (8u << 20)
#define DSTACK_FATIMG_MIN_SIZE     (1u << 20)
#define DSTACK_FATIMG_MAX_SIZE     (2048ull << 20)
#define DSTACK_FATIMG_LABEL        "DSTACKSHR"
#define DSTACK_FATIMG_VOLUME_ID    0x4b4d5343u /* "KMSC", fixed */

struct dstack_fat_file {
    const char *name; /* printable ASCII, no / \ : * ? " < > |, <= 255 */
    const void *data; /* borrowed */
    size_t len;
};

struct dstack_fatimg {
    uint64_t size;     /* bytes, multiple of 512; 0: default 8 MiB */
    const char *label; /* <= 11 of A-Z 0-9 space _ -; NULL: DSTACKSHR */
    uint32_t volume_id;
    bool volume_id_set; /* else DSTACK_FATIMG_VOLUME_ID */
    const struct dstack_fat_file *files;
    size_t nfiles;
};

/* Writes the image to FD (at its current position, sequentially; a regular
 * file gets its zero tail as a hole). DIGEST (optional) gets the SHA-256 of
 * all SIZE bytes as hex. KC_EINVAL for a bad name, label or size, KC_ERANGE
 * when the files do not fit, KC_EIO on write errors. */
int dstack_fatimg_write_fd(const struct dstack_fatimg *img, int fd,
                           char digest[65], struct kc_err *err);
/* The same into PATH, atomically (temp file, fsync, rename), mode MODE. */
int dstack_fatimg_write_file(const struct dstack_fatimg *img, const char *path,
                             unsigned mode, char digest[65],
                             struct kc_err *err);

#endif
