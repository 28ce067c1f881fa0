/* reconcile/kc.c: errors, allocators and small helpers shared by everything. */
#include "reconcile/kc.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <uv.h>

static void err_vset(struct kc_err *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int kc_err_set(struct kc_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int kc_err_prefix(struct kc_err *err, const char *fmt, ...)
{
    char prefix[256];
    char old[sizeof(err->msg)];
    va_list ap;

    if (!err)
        return KC_EINVAL;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) >=
        (int)sizeof(err->msg))
        memcpy(err->msg + sizeof(err->msg) - 4, "...", 4); /* truncated */
    return err->code;
}

int kc_err_from_errno(struct kc_err *err, int errnum, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    int code = KC_EIO;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (errnum == ENOENT)
        code = KC_ENOENT;
    else if (errnum == EEXIST)
        code = KC_EEXIST;
    else if (errnum == EACCES || errnum == EPERM)
        code = KC_EPERM;
    else if (errnum == EINTR)
        code = KC_EINTR;
    return kc_err_set(err, code, "%s: %s", what, strerror(errnum));
}

int kc_err_from_ssl(struct kc_err *err, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";

    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return kc_err_set(err, KC_ECRYPTO, "%s: %s", what, buf);
}

int kc_err_from_uv(struct kc_err *err, int uvstatus, const char *what)
{
    int code = uvstatus == UV_ECANCELED ? KC_ECANCELED : KC_EIO;

    return kc_err_set(err, code, "%s: %s", what, uv_strerror(uvstatus));
}

void kc_err_clear(struct kc_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *kc_strerror(int code)
{
    switch (code) {
    case KC_OK:
        return "success";
    case KC_EINVAL:
        return "invalid input";
    case KC_EIO:
        return "i/o error";
    case KC_ENOENT:
        return "not found";
    case KC_EEXIST:
        return "already exists";
    case KC_ECYCLE:
        return "dependency cycle";
    case KC_ECANCELED:
        return "cancelled";
    case KC_ETIMEDOUT:
        return "timed out";
    case KC_EHTTP:
        return "http error";
    case KC_EPARSE:
        return "parse error";
    case KC_ELOCKED:
        return "state locked";
    case KC_ESTATE:
        return "state refused";
    case KC_ECONFLICT:
        return "conflict";
    case KC_EPERM:
        return "permission denied";
    case KC_EAGAIN:
        return "try again";
    case KC_ENOTSUP:
        return "not supported";
    case KC_ERANGE:
        return "out of range";
    case KC_ECRYPTO:
        return "cryptographic failure";
    case KC_EREMOTE:
        return "remote error";
    case KC_EINTR:
        return "interrupted";
    }
    return "unknown error";
}

static KC_NORETURN void oom(size_t n)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *kc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        oom(n);
    return p;
}

void *kc_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

    if (!p)
        oom(nmemb * size);
    return p;
}

void *kc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (!q)
        oom(n);
    return q;
}

char *kc_xstrdup(const char *s)
{
    return kc_xstrndup(s, strlen(s));
}

char *kc_xstrndup(const char *s, size_t n)
{
    char *p = kc_xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *kc_xasprintf(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        KC_BUG("vsnprintf failed for '%s'", fmt);
    p = kc_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void kc_xgrow(void *pp, size_t *cap, size_t n, size_t size)
{
    void **p = pp;
    size_t c = *cap, max;

    if (n <= c)
        return;
    if (size == 0)
        KC_BUG("kc_xgrow: elements of size 0");
    /* c * size must not wrap (nor c *= 2): past MAX it is a bug. */
    max = SIZE_MAX / size;
    if (n > max)
        KC_BUG("kc_xgrow: %zu elements of %zu bytes overflow size_t", n, size);
    if (c < 8)
        c = 8;
    while (c < n)
        c = c > max / 2 ? max : c * 2;
    if (c > max)
        c = max;
    *p = kc_xrealloc(*p, c * size);
    *cap = c;
}

void kc_bug_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "BUG: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void kc_memzero(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

int kc_snprintf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return KC_ERANGE;
    return 0;
}
