/* reconcile/buf.c: growable byte buffer with a maximum. */
#include "reconcile/buf.h"

void kc_buf_init(struct kc_buf *buf, size_t max)
{
    memset(buf, 0, sizeof(*buf));
    buf->max = max;
}

int kc_buf_add(struct kc_buf *buf, const void *data, size_t len)
{
    if (buf->max && (len > buf->max || buf->len > buf->max - len))
        return KC_ERANGE;
    if (buf->len + len + 1 > buf->cap)
        kc_xgrow(&buf->data, &buf->cap, buf->len + len + 1, 1);
    if (len)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
    return 0;
}

int kc_buf_addstr(struct kc_buf *buf, const char *s)
{
    return kc_buf_add(buf, s, strlen(s));
}

int kc_buf_addch(struct kc_buf *buf, char c)
{
    return kc_buf_add(buf, &c, 1);
}

int kc_buf_vaddf(struct kc_buf *buf, const char *fmt, va_list ap)
{
    va_list cp;
    char small[256];
    char *big;
    int n, ret;

    va_copy(cp, ap);
    n = vsnprintf(small, sizeof(small), fmt, cp);
    va_end(cp);
    if (n < 0)
        return KC_EINVAL;
    if ((size_t)n < sizeof(small))
        return kc_buf_add(buf, small, (size_t)n);
    big = kc_xmalloc((size_t)n + 1);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    ret = kc_buf_add(buf, big, (size_t)n);
    free(big);
    return ret;
}

int kc_buf_addf(struct kc_buf *buf, const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = kc_buf_vaddf(buf, fmt, ap);
    va_end(ap);
    return ret;
}

const char *kc_buf_str(const struct kc_buf *buf)
{
    return buf->data ? buf->data : "";
}

void kc_buf_reset(struct kc_buf *buf)
{
    buf->len = 0;
    if (buf->data)
        buf->data[0] = '\0';
}

void kc_buf_release(struct kc_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void kc_buf_release_wipe(struct kc_buf *buf)
{
    kc_memzero(buf->data, buf->cap);
    kc_buf_release(buf);
}

char *kc_buf_detach(struct kc_buf *buf, size_t *len)
{
    char *p = buf->data ? buf->data : kc_xstrdup("");

    if (len)
        *len = buf->len;
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return p;
}
