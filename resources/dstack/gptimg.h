/* resources/dstack/gptimg.h: the dstack data disk, a raw disk image with a
 * GUID partition table (UEFI 2.10 §5.3) holding one Linux file system
 * partition named "dstack-data" over the usable space, as `sgdisk -o -n 1:0:0
 * -c 1:dstack-data` makes it (reference/dstack.md §5.2 step 4): protective
 * MBR, primary header and entry array at LBA 1-33, backup entry array and
 * header in the last 33 sectors, CRC32s valid, first partition sector 2048.
 *
 * Only the 34 first and 33 last sectors are written; the rest is a hole in a
 * regular file (zeros written to anything else), so a disk of any size costs
 * a few KiB of memory. GUIDs are derived from the size and a caller-chosen
 * seed, so equal inputs give equal bytes. Blocks: call it off the loop.
 */
#ifndef KC_RESOURCES_DSTACK_GPTIMG_H
#define KC_RESOURCES_DSTACK_GPTIMG_H

#include "reconcile/kc.h"

#define DSTACK_GPTIMG_DEFAULT_SIZE (10u << 20)
#define DSTACK_GPTIMG_MIN_SIZE     (2u << 20)
#define DSTACK_GPTIMG_NAME         "dstack-data"

struct dstack_gptimg {
    uint64_t size;    /* bytes, multiple of 512; 0: 10 MiB */
    const char *name; /* partition name (ASCII, <= 36); NULL: dstack-data */
    const char *seed; /* GUIDs derive from it and the size; NULL: "" */
};

/* Writes the disk to FD sequentially from its current position (0 for a
 * file). KC_EINVAL for a bad size or name, KC_EIO on write errors. */
int dstack_gptimg_write_fd(const struct dstack_gptimg *img, int fd,
                           struct kc_err *err);
/* The same into PATH, atomically, mode MODE. */
int dstack_gptimg_write_file(const struct dstack_gptimg *img, const char *path,
                             unsigned mode, struct kc_err *err);

#endif
