/* resources/chain/hex.h: hex strings and JSON-RPC quantities.
 *
 * Data ("0x" followed by an even number of hex digits) and quantities ("0x"
 * followed by the shortest hex digits of a number, "0x0" for zero) as in the
 * Ethereum JSON-RPC specification. Parsers accept either case and, where
 * said, the "0x" prefix as optional; every error names WHAT.
 */
#ifndef KC_RESOURCES_CHAIN_HEX_H
#define KC_RESOURCES_CHAIN_HEX_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

/* Writes 2 * LEN lowercase digits of DATA and a NUL to OUT (of OUTSZ bytes),
 * with "0x" first when PREFIX. KC_BUG if OUT is too small. */
void chain_hex_encode(const void *data, size_t len, bool prefix, char *out,
                      size_t outsz);
/* Appends "0x" and the hex of DATA to BUF. */
int chain_hex_add(struct kc_buf *buf, const void *data, size_t len);
/* Decodes hex text S (of SLEN bytes; "0x" optional) into exactly N bytes at
 * OUT. KC_EINVAL when S is not hex or is not 2 * N digits. */
int chain_hex_decode_fixed(const char *s, size_t slen, uint8_t *out, size_t n,
                           const char *what, struct kc_err *err);
/* Decodes hex text S ("0x" optional) of any even length into *OUT (caller
 * frees; non-NULL even when empty) and *LEN. At most MAX bytes. */
int chain_hex_decode_alloc(const char *s, size_t max, uint8_t **out,
                           size_t *len, const char *what, struct kc_err *err);

/* Parses a quantity ("0x" required, at most 64 bits). */
int chain_quantity_parse(const char *s, uint64_t *out, const char *what,
                         struct kc_err *err);
/* Parses a quantity of up to 256 bits into big-endian OUT. */
int chain_quantity_parse_u256(const char *s, uint8_t out[32], const char *what,
                              struct kc_err *err);
/* Formats V as a quantity into OUT (at least 19 bytes). */
void chain_quantity_format(uint64_t v, char out[19]);

/* Parses a 20-byte address ("0x" optional, any case; the EIP-55 checksum is
 * checked when the letters are mixed case). */
int chain_address_parse(const char *s, uint8_t out[20], const char *what,
                        struct kc_err *err);
/* Formats ADDR in EIP-55 mixed-case checksum form ("0x" + 40, and a NUL). */
void chain_address_format(const uint8_t addr[20], char out[43]);

/* Big-endian uint256 helpers. */
void chain_u256_from_u64(uint64_t v, uint8_t out[32]);
/* KC_ERANGE if V does not fit in 64 bits. */
int chain_u256_to_u64(const uint8_t v[32], uint64_t *out);
bool chain_is_zero(const void *p, size_t n);

#endif
