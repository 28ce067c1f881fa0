/* reconcile/hex.h: hex digits, for every module that writes or reads them.
 *
 * One encoder (lowercase, as in digests, ids, UUIDs and Ethereum data) and
 * one digit decoder, so that the engine and the providers agree on them.
 */
#ifndef KC_RECONCILE_HEX_H
#define KC_RECONCILE_HEX_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

/* Writes the 2 * LEN lowercase hex digits of DATA and a NUL to OUT, which
 * must hold 2 * LEN + 1 bytes. */
void kc_hex_encode(const void *data, size_t len, char *out);
/* Writes the SHA-256 of DATA as 64 lowercase hex digits and a NUL to OUT. */
void kc_hex_sha256(const void *data, size_t len, char out[65]);
/* The value (0-15) of the hex digit C, either case; -1 when C is not one. */
int kc_hex_digit(int c);
/* Appends the LEN bytes of S to OUT percent-encoded (RFC 3986 §2.1): every
 * byte but the unreserved A-Z a-z 0-9 - . _ ~ becomes %XX, upper-case hex.
 * 0, or KC_ERANGE at OUT's maximum (OUT then holds what fitted). */
int kc_hex_pct_encode(struct kc_buf *out, const char *s, size_t len);
/* Writes a random UUID v4 (RFC 9562 §5.4: version 4, variant 10) to OUT in
 * its lowercase 8-4-4-4-12 form with a NUL. < 0 when OpenSSL has no random
 * bytes (ERR says so). */
int kc_hex_uuid4(char out[37], struct kc_err *err);

#endif
