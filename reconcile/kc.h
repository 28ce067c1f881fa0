/* reconcile/kc.h: what every kmsctl file includes first: attributes,
 * error codes and struct kc_err, allocators that abort on OOM, banned calls.
 *
 * Errors: a fallible function returns 0 or a negative KC_E* code and fills
 * the struct kc_err passed last. kc_err_set() returns the code so that a
 * failure is one line; kc_err_prefix() adds context on the way up.
 */
#ifndef KC_RECONCILE_KC_H
#define KC_RECONCILE_KC_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KC_PRINTF(f, a)  __attribute__((format(printf, f, a)))
#define KC_UNUSED        __attribute__((unused))
#define KC_WARN_UNUSED   __attribute__((warn_unused_result))
#define KC_NORETURN      __attribute__((noreturn))
#define KC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KC_UNCONST(p)    ((void *)(uintptr_t)(const void *)(p))
#define kc_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Error codes: negative, disjoint from errno values' meaning. */
enum kc_errcode {
    KC_OK = 0,
    KC_EINVAL = -1001,    /* bad input: manifest, argument, response */
    KC_EIO = -1002,       /* file or device I/O */
    KC_ENOENT = -1003,    /* not found */
    KC_EEXIST = -1004,    /* already exists */
    KC_ECYCLE = -1005,    /* dependency cycle */
    KC_ECANCELED = -1006, /* operation cancelled */
    KC_ETIMEDOUT = -1007, /* deadline passed */
    KC_EHTTP = -1008,     /* transport error or unexpected HTTP status */
    KC_EPARSE = -1009,    /* malformed JSON, YAML, XML, RLP... */
    KC_ELOCKED = -1010,   /* the state lock is held */
    KC_ESTATE = -1011,    /* state file refused (format, lineage, serial) */
    KC_ECONFLICT = -1012, /* object exists and belongs to someone else */
    KC_EPERM = -1013,     /* permission denied / refused without consent */
    KC_EAGAIN = -1014,    /* transient, try again */
    KC_ENOTSUP = -1015,   /* not supported (yet) */
    KC_ERANGE = -1016,    /* over a size or depth bound */
    KC_ECRYPTO = -1017,   /* a cryptographic operation failed */
    KC_EREMOTE = -1018,   /* the remote API said no (provider message) */
    KC_EINTR = -1019,     /* interrupted by a signal */
};

struct kc_err {
    int code;      /* 0, or a negative KC_E* value */
    char msg[512]; /* one line, lower case, no trailing period */
};

/* Sets ERR (may be NULL) and returns CODE. */
int kc_err_set(struct kc_err *err, int code, const char *fmt, ...)
    KC_PRINTF(3, 4);
/* Prepends "PREFIX: " to ERR's message; returns err->code. */
int kc_err_prefix(struct kc_err *err, const char *fmt, ...) KC_PRINTF(2, 3);
/* Sets ERR from errno value ERRNUM: "WHAT: strerror". Returns the code. */
int kc_err_from_errno(struct kc_err *err, int errnum, const char *fmt, ...)
    KC_PRINTF(3, 4);
/* Sets ERR from OpenSSL's error queue (and clears it). Returns KC_ECRYPTO. */
int kc_err_from_ssl(struct kc_err *err, const char *what);
/* Sets ERR from a libuv status. Returns KC_EIO (or KC_ECANCELED). */
int kc_err_from_uv(struct kc_err *err, int uvstatus, const char *what);
void kc_err_clear(struct kc_err *err);
/* A short name for CODE ("invalid input"). */
const char *kc_strerror(int code);

/* Allocators: abort on out-of-memory (kmsctl survives a crash anywhere). */
void *kc_xmalloc(size_t n);
void *kc_xcalloc(size_t nmemb, size_t size);
void *kc_xrealloc(void *p, size_t n);
char *kc_xstrdup(const char *s);
char *kc_xstrndup(const char *s, size_t n);
char *kc_xasprintf(const char *fmt, ...) KC_PRINTF(1, 2);
/* Grows *P (of *CAP elements of SIZE) to hold at least N elements. */
void kc_xgrow(void *pp, size_t *cap, size_t n, size_t size);

KC_NORETURN void kc_bug_at(const char *file, int line, const char *fmt, ...)
    KC_PRINTF(3, 4);
#define KC_BUG(...) kc_bug_at(__FILE__, __LINE__, __VA_ARGS__)

/* Wipes N bytes at P (not optimised away). */
void kc_memzero(void *p, size_t n);
/* snprintf that returns KC_ERANGE on truncation, else 0. */
int kc_snprintf(char *dst, size_t size, const char *fmt, ...) KC_PRINTF(3, 4);

#include "reconcile/banned.h"

#endif
