/* resources/chain/abi.h: the Solidity contract ABI (types, encoding,
 * decoding, selectors, event topics, revert reasons).
 *
 * Types are parsed from canonical type strings ("uint256", "bytes32[]",
 * "(address,bytes32,string[])") or from the JSON ABI of a Hardhat artifact
 * (where a tuple is "tuple" with "components"). Supported: uintN, intN,
 * address, bool, bytesN, bytes, string, tuples, T[] and T[k]. Nesting is
 * bounded by CHAIN_ABI_MAX_DEPTH.
 *
 * A value mirrors its type. Static scalars live in a 32-byte word exactly as
 * encoded (uint/int big-endian two's complement, address and bool right
 * aligned, bytesN left aligned); bytes and string own their bytes; tuples
 * and arrays own an array of values. Values are built with the
 * chain_abi_val_* helpers and released with chain_abi_value_release().
 *
 * Decoding treats its input as hostile: every offset and length is checked
 * against the data, arrays are bounded by what the data can hold, and
 * errors (KC_EPARSE) name the parameter path ("args[1][3]").
 */
#ifndef KC_RESOURCES_CHAIN_ABI_H
#define KC_RESOURCES_CHAIN_ABI_H

#include <json-c/json.h>

#include "reconcile/buf.h"
#include "reconcile/kc.h"

#define CHAIN_ABI_MAX_DEPTH  16
#define CHAIN_ABI_MAX_PARAMS 64

enum chain_abi_kind {
    CHAIN_ABI_UINT = 1,
    CHAIN_ABI_INT,
    CHAIN_ABI_ADDRESS,
    CHAIN_ABI_BOOL,
    CHAIN_ABI_FIXED_BYTES, /* bytes1..bytes32 */
    CHAIN_ABI_BYTES,
    CHAIN_ABI_STRING,
    CHAIN_ABI_TUPLE,
    CHAIN_ABI_ARRAY,  /* T[] */
    CHAIN_ABI_FARRAY, /* T[k] */
};

struct chain_abi_type {
    enum chain_abi_kind kind;
    /* bits (uint/int), bytes (bytesN), k (T[k]) or members (tuple) */
    size_t size;
    struct chain_abi_type *elem;     /* arrays */
    struct chain_abi_type **members; /* tuples */
};

/* Parses a canonical type string. Caller frees. */
int chain_abi_type_parse(const char *s, struct chain_abi_type **out,
                         struct kc_err *err);
/* Parses a JSON ABI parameter ({"type": ..., "components": [...]}). */
int chain_abi_type_from_json(struct json_object *param,
                             struct chain_abi_type **out, struct kc_err *err);
void chain_abi_type_free(struct chain_abi_type *t);
/* Appends the canonical string of T ("(address,bytes32)[]"). */
int chain_abi_type_canonical(const struct chain_abi_type *t, struct kc_buf *b);
bool chain_abi_type_is_dynamic(const struct chain_abi_type *t);

struct chain_abi_value {
    enum chain_abi_kind kind;
    uint8_t word[32];
    uint8_t *bytes; /* bytes, string (NUL-terminated for strings) */
    size_t len;
    struct chain_abi_value *items; /* tuple members, array elements */
    size_t n;
};

/* Value constructors (into caller storage). */
void chain_abi_val_uint(struct chain_abi_value *v, uint64_t x);
void chain_abi_val_address(struct chain_abi_value *v, const uint8_t a[20]);
void chain_abi_val_bool(struct chain_abi_value *v, bool b);
void chain_abi_val_bytes32(struct chain_abi_value *v, const uint8_t b[32]);
void chain_abi_val_bytes(struct chain_abi_value *v, const void *p, size_t len);
void chain_abi_val_string(struct chain_abi_value *v, const char *s);
/* A tuple or array of N zeroed items to fill in. */
void chain_abi_val_list(struct chain_abi_value *v, enum chain_abi_kind kind,
                        size_t n);
void chain_abi_value_release(struct chain_abi_value *v);
/* Frees an array of N values returned by chain_abi_decode(). */
void chain_abi_values_free(struct chain_abi_value *v, size_t n);

/* Encodes the N values as the tuple of TYPES (head/tail), appended to OUT.
 * KC_EINVAL when a value does not fit its type (names the position). */
int chain_abi_encode(struct chain_abi_type *const *types,
                     const struct chain_abi_value *vals, size_t n,
                     struct kc_buf *out, struct kc_err *err);
/* Decodes DATA as the tuple of TYPES into *OUT (N values; free with
 * chain_abi_values_free). */
int chain_abi_decode(struct chain_abi_type *const *types, size_t n,
                     const uint8_t *data, size_t len,
                     struct chain_abi_value **out, struct kc_err *err);
/* Appends a human form of V ("0xAbC…", "true", "42", "\"text\"",
 * "(a, b)", "[x, y]"). Addresses in EIP-55 form, bytes in hex. */
int chain_abi_value_format(const struct chain_abi_type *t,
                           const struct chain_abi_value *v, struct kc_buf *b);

/* A function, event or error of a contract. */
enum chain_abi_entry_kind {
    CHAIN_ABI_FUNCTION = 1,
    CHAIN_ABI_EVENT,
    CHAIN_ABI_ERROR,
    CHAIN_ABI_CONSTRUCTOR,
};

struct chain_abi_entry {
    enum chain_abi_entry_kind kind;
    char *name;
    char *signature;     /* canonical "name(type,...)" */
    uint8_t selector[4]; /* functions, errors */
    uint8_t topic[32];   /* events: keccak256(signature) */
    size_t nin;
    struct chain_abi_type **in;
    char **in_names;
    bool *in_indexed; /* events */
    size_t nout;
    struct chain_abi_type **out;
};

/* Parses a signature "name(type,...)" with an optional output list
 * "(type,...)" (OUTPUTS may be NULL) into a function entry. */
int chain_abi_entry_parse(const char *signature, const char *outputs,
                          enum chain_abi_entry_kind kind,
                          struct chain_abi_entry **out, struct kc_err *err);
void chain_abi_entry_free(struct chain_abi_entry *e);

/* Encodes a call of FN: selector then the arguments. */
int chain_abi_encode_call(const struct chain_abi_entry *fn,
                          const struct chain_abi_value *args, size_t nargs,
                          struct kc_buf *out, struct kc_err *err);

/* A contract ABI (the "abi" array of an artifact). */
struct chain_abi {
    struct chain_abi_entry **entries;
    size_t n;
};

/* Parses the JSON array ABI. Unknown entry types (fallback, receive) are
 * skipped. Caller frees. */
int chain_abi_from_json(struct json_object *abi, struct chain_abi **out,
                        struct kc_err *err);
void chain_abi_free(struct chain_abi *abi);
/* Lookups; NULL when absent. NAME matches the name or the signature. */
const struct chain_abi_entry *chain_abi_find(const struct chain_abi *abi,
                                             enum chain_abi_entry_kind kind,
                                             const char *name);
const struct chain_abi_entry *chain_abi_find_error(const struct chain_abi *abi,
                                                   const uint8_t selector[4]);
const struct chain_abi_entry *chain_abi_find_event(const struct chain_abi *abi,
                                                   const uint8_t topic[32]);

/* Appends a one-line description of revert data DATA: "reverted without a
 * reason", "Error(\"text\")", "Panic(0x11: arithmetic overflow)", a custom
 * error of ABI (may be NULL) decoded ("OwnableUnauthorizedAccount(0x…)"),
 * else "unknown error 0x12345678 (N bytes)". */
int chain_abi_describe_revert(const struct chain_abi *abi, const uint8_t *data,
                              size_t len, struct kc_buf *out);

/* Decodes the data and topics of a log of event EV into *OUT (ev->nin
 * values, indexed ones from the topics; an indexed dynamic value is left as
 * its 32-byte hash in word, kind FIXED_BYTES). */
int chain_abi_decode_log(const struct chain_abi_entry *ev,
                         const uint8_t (*topics)[32], size_t ntopics,
                         const uint8_t *data, size_t len,
                         struct chain_abi_value **out, struct kc_err *err);

#endif
