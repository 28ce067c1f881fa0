/* reconcile/schema.h: a JSON Schema (2020-12) validator for the subset of
 * keywords kmsctl's schemas use, over manifest documents (struct kc_node,
 * with positions) and over json-c objects (plans, states, outputs).
 *
 * Supported keywords: type, enum, const, properties, required,
 * additionalProperties, patternProperties, propertyNames, minProperties,
 * maxProperties, items, prefixItems, minItems, maxItems, uniqueItems,
 * minLength, maxLength, pattern, format, minimum, maximum,
 * exclusiveMinimum, exclusiveMaximum, oneOf, anyOf, allOf, not, and $ref to
 * a JSON pointer inside the same schema ("#/$defs/name"). Annotations
 * ($schema, $id, $comment, $defs, title, description, default, examples,
 * readOnly, writeOnly, deprecated) are accepted; any other keyword makes the
 * schema invalid (a typo in a schema is caught when it is loaded).
 *
 * Dialect details:
 * - pattern is a POSIX extended regular expression (regcomp REG_EXTENDED),
 *   unanchored as in JSON Schema: use ^ and $. No \d, \w, lookaround or
 *   lazy quantifiers; every pattern is compiled when the schema is loaded.
 * - format: uri (parsed by libcurl's URL API), hostname (RFC 1123), email,
 *   ipv4, ipv6, date-time (RFC 3339), and cidr (an IPv4 or IPv6 network,
 *   prefix in range).
 *   Unknown formats are schema errors.
 * - title, when present, names the expected value in messages ("'0x12' is
 *   not a 32-byte hex hash (0x and 64 hex digits)").
 * - Manifest scalars are typed by the YAML 1.2 core schema
 *   (kc_node_scalar_type). A plain scalar that YAML types as an integer or
 *   float is also accepted where a string is expected, with its text as the
 *   value: 0x... hashes and addresses need no quotes. A string holding an
 *   unescaped ${...} interpolation is accepted where a string, integer,
 *   number or boolean is expected, and its value constraints (enum, const,
 *   pattern, format, lengths, ranges) are left to the resolved value.
 * - writeOnly: true marks a secret: the validator never quotes its value,
 *   and reports the nodes it matched (kc_schema_secrets) so that callers
 *   can insist they come from ${env:...} or ${file:...}.
 *
 * Errors: every error is reported (not only the first), each at the
 * position of the offending node (for an unknown or missing property: the
 * key) with its dotted path ("kms_vms.kms.firewall[1].port"). For oneOf and
 * anyOf the errors of the branch that came closest are reported (the one
 * whose type matches and whose required keys are present), or one message
 * naming every accepted type when none has the right type.
 */
#ifndef KC_RECONCILE_SCHEMA_H
#define KC_RECONCILE_SCHEMA_H

#include "reconcile/diag.h"
#include "reconcile/kc.h"
#include "reconcile/manifest.h"

#include <json-c/json.h>

struct kc_schema;

/* Nodes matched by a writeOnly (secret) schema, in document order. */
struct kc_schema_secrets {
    const struct kc_node **nodes; /* read-only, borrowed from the document */
    char **paths;                 /* read-only: each node's dotted path */
    size_t n;                     /* read-only */
    size_t cap;                   /* private */
};

/* The text of an embedded schema ("manifest", "state", "plan"), generated
 * at build time from schemas/ (scripts/embed.cmake); NULL if absent. */
const char *kc_schema_text(const char *name);

/* Loads the embedded schema NAME. *OUT is the caller's (kc_schema_free). */
int kc_schema_load(const char *name, struct kc_schema **out,
                   struct kc_err *err);
/* Parses LEN bytes of TEXT as a schema; WHAT names it in errors. Fails with
 * KC_EPARSE (bad JSON) or KC_EINVAL (unsupported keyword, bad pattern,
 * unknown format, dangling $ref). */
int kc_schema_parse(const char *text, size_t len, const char *what,
                    struct kc_schema **out, struct kc_err *err);
void kc_schema_free(struct kc_schema *schema);

/* Validates ROOT (may be NULL: an empty document, validated as null) and
 * adds one diagnostic per error to DIAGS, sorted by position. SECRETS (may
 * be NULL) receives the nodes matched by writeOnly schemas. Returns the
 * number of errors added. */
size_t kc_schema_validate_node(const struct kc_schema *schema,
                               const struct kc_node *root,
                               struct kc_diags *diags,
                               struct kc_schema_secrets *secrets);
/* Validates the json-c value OBJ (NULL is JSON null). Diagnostics carry
 * WHAT as their file and line 0; WHAT is borrowed and must outlive DIAGS.
 * Returns the number of errors added. */
size_t kc_schema_validate_json(const struct kc_schema *schema,
                               struct json_object *obj, const char *what,
                               struct kc_diags *diags);
/* Convenience: validates OBJ against the embedded schema NAME; 0 when
 * valid, else KC_EINVAL with the first error (and the count) in ERR. */
int kc_schema_check_json(const char *name, struct json_object *obj,
                         struct kc_err *err);

void kc_schema_secrets_release(struct kc_schema_secrets *secrets);

/* Levenshtein distance of A and B (99 when either is over 64 bytes), for
 * "did you mean" suggestions. */
size_t kc_schema_edit_distance(const char *a, const char *b);

/* True when the scalar text S (LEN bytes) holds an unescaped ${...}. */
bool kc_schema_has_interp(const char *s, size_t len);

#endif
