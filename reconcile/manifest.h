/* reconcile/manifest.h: the manifest loader. libyaml events become a tree of
 * nodes that remember file, line and column (1-based) of where they start.
 *
 * The loader rejects, with "FILE:LINE:COL: message" in err->msg: files over
 * KC_MANIFEST_MAX_BYTES, invalid UTF-8, tabs in indentation, more than one
 * document, duplicate keys, non-scalar keys, nesting deeper than
 * KC_MANIFEST_MAX_DEPTH, and alias expansion past KC_MANIFEST_MAX_NODES
 * nodes in all or past KC_MANIFEST_MAX_BYTES of copied scalar text
 * (billion laughs, checked before each copy). Aliases are expanded into
 * copies.
 *
 * Tags: only !!str (and the non-specific "!") on scalars, which then count
 * as quoted, and !!seq / !!map on their own kind; any other tag is refused.
 * Merge keys ("<<" as a plain key) are refused with a clear message: YAML
 * 1.2 has no merge keys and a manifest has no need for them. An alias is a
 * copy of its anchored node, positioned at the alias (its insides keep the
 * positions of the anchor's text).
 *
 * Also refused: control characters (what libyaml's reader refuses, named
 * with their code point), aliases to no anchor (or to a node that contains
 * them). Depth counts collections: the root map is level 1. Columns count
 * characters, not bytes, and line breaks are libyaml's (LF, CR, CRLF, NEL,
 * LS, PS), so positions match libyaml's own messages. An empty value
 * ("key:") is a null scalar placed just after the colon. Key equality is on
 * the text: `1` and "1" are the same key here.
 *
 * Scalars keep their text and whether they were quoted: a plain scalar
 * `true`, `12001` or `null` is typed (YAML 1.2 core schema) by
 * kc_node_scalar_type(); a quoted one is always a string.
 */
#ifndef KC_RECONCILE_MANIFEST_H
#define KC_RECONCILE_MANIFEST_H

#include "reconcile/diag.h"
#include "reconcile/kc.h"

#define KC_MANIFEST_MAX_BYTES (4u << 20)
#define KC_MANIFEST_MAX_DEPTH 64
#define KC_MANIFEST_MAX_NODES 100000

enum kc_node_type {
    KC_NODE_SCALAR,
    KC_NODE_SEQ,
    KC_NODE_MAP,
};

/* What a scalar means under the YAML 1.2 core schema. */
enum kc_scalar_type {
    KC_SCALAR_STRING,
    KC_SCALAR_INT,
    KC_SCALAR_FLOAT,
    KC_SCALAR_BOOL,
    KC_SCALAR_NULL,
};

struct kc_node;

struct kc_node_pair {
    struct kc_node *key; /* always a scalar */
    struct kc_node *val;
};

struct kc_node {
    enum kc_node_type type;
    struct kc_pos pos;
    /* KC_NODE_SCALAR */
    char *str; /* NUL-terminated; may contain NULs only up to len */
    size_t len;
    bool quoted; /* single, double, literal or folded: always a string */
    /* KC_NODE_SEQ: items; KC_NODE_MAP: pairs, in document order */
    struct kc_node **items;
    struct kc_node_pair *pairs;
    size_t n;
    /* private: the node's bytes in kc_doc.text, [src_off, src_end) (a copy
     * made for an alias keeps the anchored node's), for kc_doc_text_pos() */
    size_t src_off, src_end;
};

struct kc_doc {
    char *file;           /* as given, used in every position */
    char *dir;            /* the manifest's folder, for ${file:…} */
    struct kc_node *root; /* NULL for an empty document */
    /* private: the source text and where its lines start */
    char *text;
    size_t text_len;
    size_t *lines;
    size_t nlines;
};

/* Loads and parses PATH. On success *OUT is the caller's (kc_doc_free). */
int kc_manifest_load(const char *path, struct kc_doc **out, struct kc_err *err);
/* Parses LEN bytes of TEXT as if read from FILE (folder DIR may be NULL). */
int kc_manifest_parse(const char *file, const char *dir, const char *text,
                      size_t len, struct kc_doc **out, struct kc_err *err);
void kc_doc_free(struct kc_doc *doc);

/* The value of KEY in MAP, or NULL (also when MAP is not a map). Borrowed. */
const struct kc_node *kc_node_get(const struct kc_node *map, const char *key);
/* The pair whose key is KEY, or NULL. Borrowed. */
const struct kc_node_pair *kc_node_pair(const struct kc_node *map,
                                        const char *key);
enum kc_scalar_type kc_node_scalar_type(const struct kc_node *n);
/* "a string", "a list", "a map", "an integer", "a number" (float),
 * "a boolean", "null"; "nothing" for a NULL node. */
const char *kc_node_describe(const struct kc_node *n);

/* Added by the loader's author (additions, nothing above changed): */

/* The value of a plain INT scalar (decimal, 0o octal, 0x hex) into *OUT.
 * False when N is not an integer or does not fit in int64_t. */
bool kc_node_scalar_int(const struct kc_node *n, int64_t *out);
/* The value of a plain BOOL scalar into *OUT; false when not a boolean. */
bool kc_node_scalar_bool(const struct kc_node *n, bool *out);
/* Where in the source byte I of scalar N's value comes from, when the loader
 * can tell (it can for every '$' of a value written without escapes that
 * produce one); otherwise N's own position. DOC may be NULL (N->pos). */
struct kc_pos kc_doc_text_pos(const struct kc_doc *doc, const struct kc_node *n,
                              size_t i);

#endif
