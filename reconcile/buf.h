/* reconcile/buf.h: growable byte buffer with a maximum (as curl's dynbuf).
 *
 * A zeroed struct kc_buf is valid and has no maximum; kc_buf_init() sets one.
 * data is always NUL-terminated when non-NULL. Appends past the maximum fail
 * with KC_ERANGE and leave the buffer as it was.
 */
#ifndef KC_RECONCILE_BUF_H
#define KC_RECONCILE_BUF_H

#include "reconcile/kc.h"

struct kc_buf {
    char *data; /* read-only: NUL-terminated, NULL while empty */
    size_t len; /* read-only */
    size_t cap; /* private */
    size_t max; /* private: 0 = unbounded */
};

void kc_buf_init(struct kc_buf *buf, size_t max);
int kc_buf_add(struct kc_buf *buf, const void *data, size_t len);
int kc_buf_addstr(struct kc_buf *buf, const char *s);
int kc_buf_addch(struct kc_buf *buf, char c);
int kc_buf_addf(struct kc_buf *buf, const char *fmt, ...) KC_PRINTF(2, 3);
int kc_buf_vaddf(struct kc_buf *buf, const char *fmt, va_list ap);
/* Returns the contents ("" when empty), never NULL. Borrowed. */
const char *kc_buf_str(const struct kc_buf *buf);
/* Empties the buffer, keeping its memory and maximum. */
void kc_buf_reset(struct kc_buf *buf);
/* Frees the contents; the buffer is empty and reusable (maximum kept). */
void kc_buf_release(struct kc_buf *buf);
/* As release, but wipes the bytes first (for secrets). */
void kc_buf_release_wipe(struct kc_buf *buf);
/* Returns the contents (caller frees; never NULL) and empties the buffer. */
char *kc_buf_detach(struct kc_buf *buf, size_t *len);

#endif
