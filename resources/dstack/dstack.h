/* resources/dstack/dstack.h: helpers shared by the dstack artifact writers
 * (private to resources/dstack): streamed atomic output files. */
#ifndef KC_RESOURCES_DSTACK_DSTACK_H
#define KC_RESOURCES_DSTACK_DSTACK_H

#include "reconcile/kc.h"

/* An output file written through a temp file in the same folder and renamed
 * into place by dstack_out_commit(). Zeroed is valid (fd -1 after open). */
struct dstack_out {
    int fd;
    char *tmp;
    char *path;
};

/* Opens a temp file beside PATH with MODE. */
int dstack_out_open(struct dstack_out *o, const char *path, unsigned mode,
                    struct kc_err *err);
/* fsync, close, rename over PATH, fsync of the folder. Frees O's memory;
 * on failure the temp file is removed. */
int dstack_out_commit(struct dstack_out *o, struct kc_err *err);
/* Closes and removes the temp file; NULL-safe, fine after commit. */
void dstack_out_abort(struct dstack_out *o);

/* write() until all N bytes are out (EINTR retried). WHAT names the file. */
int dstack_write_all(int fd, const void *p, size_t n, const char *what,
                     struct kc_err *err);
/* Appends S as a JSON string the way Python's json.dumps(ensure_ascii=True)
 * does: everything outside printable ASCII as lowercase \uXXXX, surrogate
 * pairs above the BMP. KC_EINVAL (naming WHAT) for invalid UTF-8. */
struct kc_buf;
int dstack_json_str(struct kc_buf *out, const char *s, const char *what,
                    struct kc_err *err);
/* V little-endian into the 2, 4 or 8 bytes at P (on-disk structures). */
void dstack_put_le16(unsigned char *p, uint32_t v);
void dstack_put_le32(unsigned char *p, uint32_t v);
void dstack_put_le64(unsigned char *p, uint64_t v);
/* Lowercase hex of N bytes into OUT (2N + 1 bytes). */
void dstack_hex(const unsigned char *p, size_t n, char *out);

#endif
