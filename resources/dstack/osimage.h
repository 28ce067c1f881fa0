/* resources/dstack/osimage.h: the dstack OS image on the local disk and the
 * archive GCE imports (reference/dstack.md §4.6, §5.2 step 2).
 *
 * Finding: an OS image NAME is the folder <search path>/<NAME> holding
 * disk.raw and a non-empty auth_hash.txt (the -uki release layout); the first
 * search path that has both wins. "~/" is expanded and relative paths are
 * taken from BASE_DIR (the manifest's folder). A miss names every folder
 * looked at; a folder that holds the bare-metal variant instead (no disk.raw)
 * is named as such, with the -uki file to download.
 *
 * Archiving: a gzip-compressed tar with one member "disk.raw", GNU "oldgnu"
 * format as GCE's import documentation asks (`tar --format=oldgnu -Sczf`),
 * written as a GNU sparse member (type 'S'): 4 KiB blocks of zeros, found
 * through SEEK_DATA/SEEK_HOLE and by content, are left out and restored as
 * holes on extraction. Numbers past 8 GiB use GNU's base-256 form. The bytes
 * depend only on the contents of disk.raw (fixed mtime 0, owner root, mode
 * 0644, gzip without name or time), so the archive digest can name the
 * uploaded object. Memory is constant (a 1 MiB buffer, zlib's state) plus
 * the sparse map (16 bytes per data region).
 *
 * Everything here blocks (reads the disk twice: map, then data): run it off
 * the loop (uv_queue_work).
 */
#ifndef KC_RESOURCES_DSTACK_OSIMAGE_H
#define KC_RESOURCES_DSTACK_OSIMAGE_H

#include "reconcile/kc.h"

#include <time.h>

struct dstack_osimage {
    char *dir;           /* <search path>/<name>, resolved */
    char *disk_path;     /* <dir>/disk.raw */
    char auth_hash[129]; /* auth_hash.txt, stripped, lowercase hex */
    uint64_t disk_size;
    time_t disk_mtime;
};

/* Finds NAME (a folder name: no '/', not "." or "..") in PATHS. On success
 * IMG is filled (release with dstack_osimage_release). KC_ENOENT when
 * missing (the message names every path tried), KC_EINVAL for a bad name or
 * a malformed auth_hash.txt. */
int dstack_osimage_find(const char *base_dir, const char *const *paths,
                        size_t npaths, const char *name,
                        struct dstack_osimage *img, struct kc_err *err);
void dstack_osimage_release(struct dstack_osimage *img);

/* Digests of the archive bytes, as the GCS upload needs them. */
struct dstack_archive_digest {
    uint64_t size;         /* archive bytes */
    char sha256[65];       /* hex */
    unsigned char md5[16]; /* GCS md5Hash is base64 of these */
    uint32_t crc32c;       /* GCS crc32c is base64 of it, big-endian */
    char md5_b64[25];      /* base64, as GCS reports it */
    char crc32c_b64[9];    /* base64 of the 4 big-endian bytes */
    uint64_t data_bytes;   /* disk bytes stored (non-zero blocks) */
};

/* Where archive bytes go: return 0 or a negative KC_E* with ERR set. */
typedef int (*dstack_sink_fn)(void *ctx, const void *p, size_t n,
                              struct kc_err *err);

/* Archives the regular file DISK_PATH into SINK. */
int dstack_osimage_archive(const char *disk_path, dstack_sink_fn sink,
                           void *ctx, struct dstack_archive_digest *dg,
                           struct kc_err *err);
/* The same written to FD (from its current offset). */
int dstack_osimage_archive_fd(const char *disk_path, int fd,
                              struct dstack_archive_digest *dg,
                              struct kc_err *err);
/* The same into OUT_PATH, atomically (mode 0644). */
int dstack_osimage_archive_file(const char *disk_path, const char *out_path,
                                struct dstack_archive_digest *dg,
                                struct kc_err *err);

/* CRC-32C (Castagnoli, reflected, as GCS uses): start with 0, feed pieces. */
uint32_t dstack_crc32c(uint32_t crc, const void *p, size_t n);

#endif
