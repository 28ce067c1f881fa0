/* reconcile/diag.c: diagnostics with positions, in a stable order. */
#include "reconcile/diag.h"

#include "reconcile/buf.h"

void kc_diags_add(struct kc_diags *d, const struct kc_pos *pos,
                  const char *path, const char *fmt, ...)
{
    struct kc_diag *g;
    struct kc_buf b = { 0 };
    va_list ap;

    kc_xgrow(&d->items, &d->cap, d->n + 1, sizeof(*d->items));
    g = &d->items[d->n];
    memset(g, 0, sizeof(*g));
    if (pos)
        g->pos = *pos;
    g->path = kc_xstrdup(path ? path : "");
    va_start(ap, fmt);
    kc_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    g->msg = kc_buf_detach(&b, NULL);
    g->seq = d->n;
    d->n++;
}

static int diag_cmp(const void *pa, const void *pb)
{
    const struct kc_diag *a = pa, *b = pb;
    int c =
        strcmp(a->pos.file ? a->pos.file : "", b->pos.file ? b->pos.file : "");

    if (c)
        return c;
    if (a->pos.line != b->pos.line)
        return a->pos.line < b->pos.line ? -1 : 1;
    if (a->pos.col != b->pos.col)
        return a->pos.col < b->pos.col ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void kc_diags_sort(struct kc_diags *d)
{
    if (d->n > 1)
        qsort(d->items, d->n, sizeof(*d->items), diag_cmp);
}

char *kc_diags_format(const struct kc_diags *d, size_t i)
{
    const struct kc_diag *g = &d->items[i];
    struct kc_buf b = { 0 };

    kc_buf_addf(&b, "%s:%d:%d: ", g->pos.file ? g->pos.file : "-", g->pos.line,
                g->pos.col);
    if (g->path[0])
        kc_buf_addf(&b, "%s: ", g->path);
    kc_buf_addstr(&b, g->msg);
    return kc_buf_detach(&b, NULL);
}

void kc_diags_print(const struct kc_diags *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        char *line = kc_diags_format(d, i);

        fprintf(out, "%s\n", line);
        free(line);
    }
}

void kc_diags_release(struct kc_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].path);
        free(d->items[i].msg);
    }
    free(d->items);
    memset(d, 0, sizeof(*d));
}
