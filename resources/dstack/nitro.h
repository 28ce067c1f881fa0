/* resources/dstack/nitro.h: the image hash of a Nitro Enclave app from the
 * measurements `nitro-cli build-enclave` (or describe-eif) prints
 * (reference/dstack.md §4.6, §4.7, §6.2):
 *
 *   {"Measurements": {"HashAlgorithm": "Sha384 { ... }",
 *                     "PCR0": "<96 hex>", "PCR1": "<96 hex>", "PCR2": "<96
 * hex>"}}
 *
 * hash = SHA-256(PCR0 || PCR1 || PCR2) over the raw 48-byte values. It is at
 * once the app's os_image_hash, compose hash and mr_aggregated on chain.
 * PCRs that are all zero (a --debug-mode enclave) are refused: the KMS would
 * see 32 zero bytes, the hash DESIGN.md forbids registering. An object that
 * holds PCR0..2 directly (no "Measurements") is accepted too.
 */
#ifndef KC_RESOURCES_DSTACK_NITRO_H
#define KC_RESOURCES_DSTACK_NITRO_H

#include "reconcile/kc.h"

#define DSTACK_NITRO_MAX_JSON (64u << 10)

/* From LEN bytes of JSON TEXT; WHAT names the source in errors. OUT gets the
 * 32 bytes, HEX (optional) their lowercase hex. KC_EPARSE for malformed
 * input, KC_EINVAL for all-zero PCRs. */
int dstack_nitro_image_hash(const char *text, size_t len, const char *what,
                            unsigned char out[32], char hex[65],
                            struct kc_err *err);
/* The same from the file PATH (at most DSTACK_NITRO_MAX_JSON bytes). */
int dstack_nitro_image_hash_file(const char *path, unsigned char out[32],
                                 char hex[65], struct kc_err *err);

#endif
