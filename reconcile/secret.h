/* reconcile/secret.h: a secret is a struct kc_secret from the moment it is
 * read, so it cannot reach a printf("%s") by accident. The bytes are only
 * reached through kc_secret_reveal(), where they are used, and are wiped on
 * kc_secret_free().
 */
#ifndef KC_RECONCILE_SECRET_H
#define KC_RECONCILE_SECRET_H

#include "reconcile/kc.h"

struct kc_secret;

/* Copies LEN bytes of DATA (a NUL is appended). Caller frees. */
struct kc_secret *kc_secret_new(const void *data, size_t len);
struct kc_secret *kc_secret_dup(const struct kc_secret *s);
/* Borrowed, NUL-terminated; *LEN (optional) gets the length. */
const char *kc_secret_reveal(const struct kc_secret *s, size_t *len);
size_t kc_secret_len(const struct kc_secret *s);
/* Wipes and frees; NULL-safe. */
void kc_secret_free(struct kc_secret *s);
/* "sha256:<hex>" of SALT || bytes: enough to notice a change, nothing more.
 * OUT must hold 72 bytes. */
void kc_secret_digest(const void *data, size_t len, const char *salt,
                      char out[72]);

#endif
