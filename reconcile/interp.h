/* reconcile/interp.h: ${…} interpolation of manifest values.
 *
 * Syntax inside any scalar value (keys are never interpolated):
 *   ${env:NAME}    the environment variable NAME ([A-Za-z_][A-Za-z0-9_]*);
 *                  unset is an error (set but empty gives "")
 *   ${file:PATH}   the contents of PATH, relative to the manifest's folder,
 *                  "~/" expanded from HOME ("~user/" refused), trailing
 *                  CR/LF trimmed, no NUL byte inside, at most
 *                  KC_INTERP_MAX_FILE_BYTES, a regular file only
 *   ${a.b.c}       a reference to something another resource supplies, one
 *                  of KINDS below; resolved by the caller's resolver, else
 *                  UNKNOWN (kc_value_new_unknown with the reference)
 *   $${            a literal "${"
 * Any other "$" is literal. Values from env and file are SENSITIVE, and so
 * is every string they are concatenated into.
 *
 * Referenceable things (the one table is in interp.c):
 *   kms_vms.NAME.{external_ip,internal_ip,self_link,compose_hash,
 *                 instance_id,app_id}
 *   nitro_hosts.NAME.{instance_id,public_ip,private_ip,ami}
 *   contracts.kms.{address,app_implementation,deploy_block}
 *   contracts.apps.NAME.{app_id}
 *
 * Every error message starts "FILE:LINE:COL: " with the position of the
 * "${" concerned (or of the node when the loader cannot place it).
 */
#ifndef KC_RECONCILE_INTERP_H
#define KC_RECONCILE_INTERP_H

#include "reconcile/diag.h"
#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/manifest.h"
#include "reconcile/value.h"

#define KC_INTERP_MAX_FILE_BYTES (1u << 20)
/* What one kc_interp_node call may add through ${…} in all (env, files
 * and resolved references), so that a 4 MiB manifest naming one big file
 * 100000 times cannot ask for gigabytes. */
#define KC_INTERP_MAX_TOTAL_BYTES (16u << 20)
/* kc_interp_check_doc stops adding diagnostics after this many. */
#define KC_INTERP_MAX_DIAGS 100

/* Resolves a reference such as "kms_vms.dstack-kms.external_ip". Returns 0
 * with *out a new value when known, 0 with *out NULL when not known yet (the
 * result becomes UNKNOWN carrying the ref), or <0 with err set. */
typedef int (*kc_interp_resolve_fn)(void *ctx, const char *ref,
                                    struct kc_value **out, struct kc_err *err);

struct kc_interp_opts {
    const struct kc_doc *doc;     /* for ${file:} (relative to doc->dir) and
                                     ref checks; NULL: paths relative to the
                                     working folder, no existence checks */
    kc_interp_resolve_fn resolve; /* NULL: every reference stays UNKNOWN */
    void *resolve_ctx;
    struct kc_log *log; /* NULL ok; learns every secret (kc_log_add_secret) */
    const char *(*getenv_fn)(const char *name); /* NULL: getenv */
};

/* The value of NODE (scalar, list or map, recursively) with every ${…}
 * expanded. Plain scalars typed per YAML 1.2 core schema (int, bool, null,
 * string), except that what an int64 cannot carry keeps its text as a
 * string: floats ("0.5", values have no float type), integers too large,
 * and "0x" integers of more than 16 hex digits (addresses and hashes, even
 * 0x00…01). A scalar containing an interpolation is a string, except that a
 * scalar that is exactly one reference is the resolved value as it is. A
 * reference inside a longer string must resolve to a string, integer or
 * boolean. Values containing a NUL byte are refused. Map keys stay literal.
 * Errors are "FILE:LINE:COL: …" naming the variable/file/reference; at most
 * KC_INTERP_MAX_TOTAL_BYTES come from ${…} in one call. *OUT is new
 * (kc_value_free). */
int kc_interp_node(const struct kc_interp_opts *o, const struct kc_node *node,
                   struct kc_value **out, struct kc_err *err);

/* Checks every ${…} in the document for syntax and, for references, that
 * they point at something that can exist (section, name present in the doc,
 * attribute known); adds one diagnostic per problem (at most
 * KC_INTERP_MAX_DIAGS, then one saying it stopped), with the document path
 * of the value. Also flags "${" in a map key (keys are not interpolated).
 * Does not read env or files. DOC may have a NULL root. */
void kc_interp_check_doc(const struct kc_doc *doc, struct kc_diags *d);

/* Every reference used in the subtree NODE ("kms_vms.x.external_ip"), for
 * dependency edges: sorted, each once. Sets *REFS (an array of *N new
 * strings; NULL when none) — it does not append. Malformed ${…} are skipped
 * (kc_interp_check_doc reports them). Free with kc_interp_refs_free. */
void kc_interp_refs(const struct kc_node *node, char ***refs, size_t *n);
/* Added: frees what kc_interp_refs gave. NULL-safe. */
void kc_interp_refs_free(char **refs, size_t n);

/* True if the scalar NODE's text is exactly one ${env:…} or ${file:…} (a
 * secret source). */
bool kc_interp_is_secret_source(const struct kc_node *node);

/* Added: checks that REF ("kms_vms.dstack-kms.external_ip", without "${}")
 * names something that can be referenced: a known section, a known
 * attribute and, when DOC is non-NULL, a name present in DOC. Returns 0 or
 * KC_EINVAL with a message (no position). */
int kc_interp_check_ref(const struct kc_doc *doc, const char *ref,
                        struct kc_err *err);

#endif
