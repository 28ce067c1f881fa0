/* resources/gcp/codec.h: the small encodings the GCP provider needs:
 * base64 (standard and URL-safe), CRC32C, Cloud Storage's base64 digests,
 * form/percent encoding and random UUIDs for requestId.
 *
 * Cloud Storage reports an object's checksums as base64 strings: "crc32c" is
 * the CRC32C (Castagnoli) of the data "encoded using base64 in big-endian byte
 * order" and "md5Hash" the base64 of the 16-byte MD5 (Cloud Storage JSON API,
 * Objects resource, https://cloud.google.com/storage/docs/json_api/v1/objects).
 * All functions are pure and thread-safe; gcp_uuid4() reads OpenSSL's RNG.
 */
#ifndef KC_RESOURCES_GCP_CODEC_H
#define KC_RESOURCES_GCP_CODEC_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

/* Lengths of the NUL-terminated strings below, terminator included. */
#define GCP_CRC32C_B64_LEN 9  /* 4 bytes -> 8 base64 characters */
#define GCP_MD5_B64_LEN    25 /* 16 bytes -> 24 base64 characters */
#define GCP_UUID_LEN       37

/* CRC32C (polynomial 0x1EDC6F41, reflected 0x82F63B78, RFC 3720 appendix
 * B.4). Start with crc = 0 and feed the data in any number of pieces:
 * gcp_crc32c_update(gcp_crc32c_update(0, a, n), b, m) == crc32c(a || b). */
uint32_t gcp_crc32c_update(uint32_t crc, const void *data, size_t len);
/* The base64 of CRC's four bytes, big-endian, as Cloud Storage writes it. */
void gcp_crc32c_b64(uint32_t crc, char out[GCP_CRC32C_B64_LEN]);
/* The base64 of a 16-byte MD5 digest. */
void gcp_md5_b64(const unsigned char md5[16], char out[GCP_MD5_B64_LEN]);

/* Appends the base64 of LEN bytes of DATA to OUT: the standard alphabet with
 * '=' padding, or, when URL is set, the URL-safe alphabet without padding
 * (RFC 4648 §4 and §5; JWTs use the latter, RFC 7515 §2). */
int gcp_b64_encode(const void *data, size_t len, bool url, struct kc_buf *out);
/* Decodes TEXT (LEN characters, either alphabet, padding optional) into OUT.
 * KC_EPARSE on a character outside the alphabet or an impossible length. */
int gcp_b64_decode(const char *text, size_t len, struct kc_buf *out,
                   struct kc_err *err);

/* Appends S percent-encoded for a query string or form body: every byte but
 * the RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) becomes %XX. */
int gcp_pct_encode(const char *s, size_t len, struct kc_buf *out);

/* A random (version 4) UUID in lower-case hex with dashes. */
int gcp_uuid4(char out[GCP_UUID_LEN], struct kc_err *err);

#endif
