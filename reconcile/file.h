/* reconcile/file.h: bounded file reads and atomic writes.
 * These block: use them before the loop runs or from uv_queue_work. */
#ifndef KC_RECONCILE_FILE_H
#define KC_RECONCILE_FILE_H

#include "reconcile/kc.h"

/* Reads PATH whole into *OUT (NUL-terminated, caller frees). A file over MAX
 * bytes fails with KC_ERANGE naming the bound. *LEN is optional. */
int kc_file_read(const char *path, size_t max, char **out, size_t *len,
                 struct kc_err *err);
/* Writes DATA to PATH atomically: a temp file in the same folder, fsync,
 * rename, fsync of the folder. MODE applies to the new file. */
int kc_file_write_atomic(const char *path, const void *data, size_t len,
                         unsigned mode, struct kc_err *err);
/* Creates DIR and its parents with MODE where missing. */
int kc_file_mkdirs(const char *dir, unsigned mode, struct kc_err *err);
/* The folder part of PATH ("." when none); caller frees. */
char *kc_file_dirname(const char *path);
/* PATH joined to BASE's folder unless absolute; "~/" expanded. Caller frees. */
char *kc_file_resolve(const char *base_dir, const char *path);

#endif
