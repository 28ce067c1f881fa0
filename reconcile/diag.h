/* reconcile/diag.h: a list of diagnostics ("FILE:LINE:COL: message"), for
 * checks that report every error rather than the first (schema, semantics).
 *
 * Order is stable: kc_diags_sort() orders by file, line, column, then by
 * insertion. Messages are one line, lower case, no trailing period. */
#ifndef KC_RECONCILE_DIAG_H
#define KC_RECONCILE_DIAG_H

#include "reconcile/kc.h"

struct kc_pos {
    const char *file; /* borrowed from the document */
    int line;         /* 1-based; 0 = unknown */
    int col;          /* 1-based */
};

struct kc_diag {
    struct kc_pos pos;
    char
        *path; /* document path, "kms_vms.dstack-kms.machine_type"; may be "" */
    char *msg;
    size_t seq; /* private: insertion order */
};

struct kc_diags {
    struct kc_diag *items; /* read-only */
    size_t n;              /* read-only */
    size_t cap;            /* private */
};

/* Adds "PATH: MSG" at POS (POS may be NULL). */
void kc_diags_add(struct kc_diags *d, const struct kc_pos *pos,
                  const char *path, const char *fmt, ...) KC_PRINTF(4, 5);
void kc_diags_sort(struct kc_diags *d);
/* Writes every diagnostic as "FILE:LINE:COL: PATH: MSG\n" to OUT. */
void kc_diags_print(const struct kc_diags *d, FILE *out);
/* The I-th diagnostic formatted as above (no newline); caller frees. */
char *kc_diags_format(const struct kc_diags *d, size_t i);
void kc_diags_release(struct kc_diags *d);

#endif
