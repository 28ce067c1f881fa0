/* reconcile/manifest.c: the YAML loader, libyaml events to a node tree with
 * positions, refusing what a manifest has no use for (see manifest.h). */
#include "reconcile/manifest.h"

#include <yaml.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"

/* libyaml's core-schema tag names (yaml.h spells them YAML_*_TAG). */
#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_SEQ "tag:yaml.org,2002:seq"
#define TAG_MAP "tag:yaml.org,2002:map"

/* An open-addressing table from byte strings (borrowed) to indices. */
struct strmap_ent {
    const char *key; /* NULL: free slot */
    size_t len;
    size_t val;
};

struct strmap {
    struct strmap_ent *e;
    size_t cap, n;
};

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct strmap_ent *strmap_slot(const struct strmap *m, const char *key,
                                      size_t len)
{
    size_t i = (size_t)hash_bytes(key, len) & (m->cap - 1);

    for (;;) {
        struct strmap_ent *e = &m->e[i];

        if (!e->key || (e->len == len && memcmp(e->key, key, len) == 0))
            return e;
        i = (i + 1) & (m->cap - 1);
    }
}

/* The entry for KEY, or NULL. */
static const struct strmap_ent *strmap_get(const struct strmap *m,
                                           const char *key, size_t len)
{
    const struct strmap_ent *e;

    if (!m->cap)
        return NULL;
    e = strmap_slot(m, key, len);
    return e->key ? e : NULL;
}

/* Sets KEY (borrowed: it must outlive the map) to VAL. */
static void strmap_put(struct strmap *m, const char *key, size_t len,
                       size_t val)
{
    struct strmap_ent *e;

    if ((m->n + 1) * 2 > m->cap) {
        struct strmap old = *m;

        m->cap = old.cap ? old.cap * 2 : 16;
        m->e = kc_xcalloc(m->cap, sizeof(*m->e));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.e[i].key)
                strmap_put(m, old.e[i].key, old.e[i].len, old.e[i].val);
        free(old.e);
    }
    e = strmap_slot(m, key, len);
    if (!e->key) {
        e->key = key;
        e->len = len;
        m->n++;
    }
    e->val = val;
}

static void strmap_release(struct strmap *m)
{
    free(m->e);
    memset(m, 0, sizeof(*m));
}

/* The source text, validated, with where each line starts. */
struct src {
    const char *text;
    size_t len;
    size_t *lines; /* byte offset where line i (0-based) starts */
    size_t nlines, caplines;
    size_t *tabs; /* first tab in the indentation of a non-blank line */
    size_t ntabs, captabs;
};

/* Decodes the UTF-8 character at S[I]; 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t len, size_t i,
                          uint32_t *cp)
{
    unsigned char c = s[i];
    size_t w;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        w = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        w = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        w = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len - i < w)
        return 0;
    for (size_t k = 1; k < w; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return w;
}

/* What libyaml's reader accepts (YAML 1.1 c-printable). */
static bool cp_printable(uint32_t cp)
{
    return cp == 0x09 || cp == 0x0A || cp == 0x0D ||
           (cp >= 0x20 && cp <= 0x7E) || cp == 0x85 ||
           (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* libyaml's line breaks: LF, CR, CRLF, NEL, LS, PS. */
static bool cp_break(uint32_t cp)
{
    return cp == 0x0A || cp == 0x0D || cp == 0x85 || cp == 0x2028 ||
           cp == 0x2029;
}

static size_t bom_len(const char *text, size_t len)
{
    return len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

/* Line (1-based) of byte OFF. */
static size_t src_line_of(const struct src *s, size_t off)
{
    size_t lo = 0, hi = s->nlines;

    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->lines[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo + 1;
}

/* Line and column (1-based, columns in characters as libyaml counts them)
 * of byte OFF. */
static struct kc_pos src_pos(const struct src *s, const char *file, size_t off)
{
    struct kc_pos p = { file, 0, 0 };
    size_t line = src_line_of(s, off);
    int col = 1;

    for (size_t i = s->lines[line - 1]; i < off && i < s->len; i++)
        if (((unsigned char)s->text[i] & 0xC0) != 0x80)
            col++;
    p.line = line > INT32_MAX ? INT32_MAX : (int)line;
    p.col = col;
    return p;
}

/* Checks encoding and characters; records line starts and tabs used for
 * indentation. */
static int src_scan(struct src *s, const char *file, struct kc_err *err)
{
    const unsigned char *t = (const unsigned char *)s->text;
    size_t i = bom_len(s->text, s->len);
    bool indent = true; /* still in the leading blanks of this line */
    size_t tab = SIZE_MAX;

    kc_xgrow(&s->lines, &s->caplines, 1, sizeof(*s->lines));
    s->lines[s->nlines++] = i;
    while (i < s->len) {
        uint32_t cp;
        size_t w = utf8_decode(t, s->len, i, &cp);

        if (w == 0) {
            struct kc_pos p = src_pos(s, file, i);

            return kc_err_set(err, KC_EPARSE,
                              "%s:%d:%d: invalid UTF-8 (byte 0x%02x at byte "
                              "offset %zu); a manifest must be UTF-8 text",
                              file, p.line, p.col, t[i], i);
        }
        if (!cp_printable(cp)) {
            struct kc_pos p = src_pos(s, file, i);

            return kc_err_set(err, KC_EPARSE,
                              "%s:%d:%d: control character U+%04X is not "
                              "allowed (byte offset %zu)",
                              file, p.line, p.col, (unsigned)cp, i);
        }
        if (cp_break(cp)) {
            i += w;
            if (cp == 0x0D && i < s->len && t[i] == 0x0A)
                i++;
            kc_xgrow(&s->lines, &s->caplines, s->nlines + 1, sizeof(*s->lines));
            s->lines[s->nlines++] = i;
            indent = true;
            tab = SIZE_MAX;
            continue;
        }
        if (indent) {
            if (cp == '\t' && tab == SIZE_MAX) {
                tab = i;
            } else if (cp != ' ' && cp != '\t') {
                indent = false;
                if (tab != SIZE_MAX) {
                    kc_xgrow(&s->tabs, &s->captabs, s->ntabs + 1,
                             sizeof(*s->tabs));
                    s->tabs[s->ntabs++] = tab;
                }
            }
        }
        i += w;
    }
    return 0;
}

static void src_release(struct src *s)
{
    free(s->lines);
    free(s->tabs);
}

struct frame {
    struct kc_node *node; /* SEQ or MAP being built */
    struct kc_node *key;  /* MAP: the key waiting for its value */
    struct strmap keys;   /* MAP: key -> index in pairs */
    char *anchor;         /* registered when the node is complete */
    size_t nodes_before;  /* b->nodes before this node */
    size_t bytes_before;  /* b->bytes before this node */
    int height;           /* deepest child's height */
};

struct anchor {
    char *name;
    const struct kc_node *node; /* borrowed from the tree */
    size_t count;               /* nodes in its subtree */
    size_t bytes;               /* scalar bytes in its subtree */
    int height;                 /* collection levels in its subtree */
};

struct builder {
    const char *file;
    struct src *src;
    struct frame frames[KC_MANIFEST_MAX_DEPTH];
    int depth;
    struct anchor *anchors;
    size_t nanchors, capanchors;
    struct strmap anchor_idx;
    size_t nodes;
    size_t bytes;       /* scalar bytes in the tree, copies included */
    size_t alias_bytes; /* of which copies made for aliases */
    struct kc_node *root;
    int docs;
    /* libyaml's marks count characters; this maps them to bytes, moving
     * from the last answer (marks arrive nearly in order) */
    size_t cur_char, cur_byte;
    /* non-plain scalars: a tab inside one is content, not indentation */
    size_t (*spans)[2];
    size_t nspans, capspans;
};

static void node_free(struct kc_node *n)
{
    if (!n)
        return;
    if (n->type == KC_NODE_SCALAR) {
        free(n->str);
    } else if (n->type == KC_NODE_SEQ) {
        for (size_t i = 0; i < n->n; i++)
            node_free(n->items[i]);
        free(n->items);
    } else {
        for (size_t i = 0; i < n->n; i++) {
            node_free(n->pairs[i].key);
            node_free(n->pairs[i].val);
        }
        free(n->pairs);
    }
    free(n);
}

/* Depth is bounded by KC_MANIFEST_MAX_DEPTH, so the recursion is too. */
static struct kc_node *node_copy(const struct kc_node *n)
{
    struct kc_node *c = kc_xcalloc(1, sizeof(*c));

    *c = *n;
    if (n->type == KC_NODE_SCALAR) {
        c->str = kc_xmalloc(n->len + 1);
        memcpy(c->str, n->str, n->len + 1);
    } else if (n->type == KC_NODE_SEQ) {
        c->items = n->n ? kc_xcalloc(n->n, sizeof(*c->items)) : NULL;
        for (size_t i = 0; i < n->n; i++)
            c->items[i] = node_copy(n->items[i]);
    } else {
        c->pairs = n->n ? kc_xcalloc(n->n, sizeof(*c->pairs)) : NULL;
        for (size_t i = 0; i < n->n; i++) {
            c->pairs[i].key = node_copy(n->pairs[i].key);
            c->pairs[i].val = node_copy(n->pairs[i].val);
        }
    }
    return c;
}

/* Appends S as a quoted, printable, bounded snippet for a message. */
static void add_snippet(struct kc_buf *b, const char *s, size_t len)
{
    size_t max = len > 60 ? 57 : len;

    kc_buf_addch(b, '\'');
    for (size_t i = 0; i < max; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7F || c == '\'' || c == '\\')
            kc_buf_addf(b, "\\x%02x", c);
        else
            kc_buf_addch(b, (char)c);
    }
    if (max < len)
        kc_buf_addstr(b, "...");
    kc_buf_addch(b, '\'');
}

static int fail(struct builder *b, struct kc_err *err, int code,
                const struct kc_pos *p, const char *fmt, ...) KC_PRINTF(5, 6);

static int fail(struct builder *b, struct kc_err *err, int code,
                const struct kc_pos *p, const char *fmt, ...)
{
    struct kc_buf m = { 0 };
    va_list ap;

    kc_buf_addf(&m, "%s:%d:%d: ", b->file, p->line, p->col);
    va_start(ap, fmt);
    kc_buf_vaddf(&m, fmt, ap);
    va_end(ap);
    kc_err_set(err, code, "%s", kc_buf_str(&m));
    kc_buf_release(&m);
    return code;
}

static struct kc_pos mark_pos(const struct builder *b, yaml_mark_t m)
{
    struct kc_pos p = { b->file, 0, 0 };

    p.line = m.line >= INT32_MAX ? INT32_MAX : (int)m.line + 1;
    p.col = m.column >= INT32_MAX ? INT32_MAX : (int)m.column + 1;
    return p;
}

/* Byte offset of libyaml's MARK (its index counts characters after any
 * byte order mark, a CRLF as two). */
static size_t mark_offset(struct builder *b, yaml_mark_t m)
{
    const unsigned char *t = (const unsigned char *)b->src->text;
    size_t len = b->src->len;

    while (b->cur_char < m.index && b->cur_byte < len) {
        b->cur_byte++;
        while (b->cur_byte < len && (t[b->cur_byte] & 0xC0) == 0x80)
            b->cur_byte++;
        b->cur_char++;
    }
    while (b->cur_char > m.index) {
        b->cur_byte--;
        while ((t[b->cur_byte] & 0xC0) == 0x80)
            b->cur_byte--;
        b->cur_char--;
    }
    return b->cur_byte;
}

static struct kc_node *node_new(struct builder *b, enum kc_node_type type,
                                const yaml_event_t *ev)
{
    struct kc_node *n = kc_xcalloc(1, sizeof(*n));

    n->type = type;
    n->pos = mark_pos(b, ev->start_mark);
    n->src_off = mark_offset(b, ev->start_mark);
    n->src_end = mark_offset(b, ev->end_mark);
    if (n->src_end < n->src_off)
        n->src_end = n->src_off;
    return n;
}

static int count_node(struct builder *b, size_t more, const struct kc_pos *p,
                      struct kc_err *err)
{
    if (more > KC_MANIFEST_MAX_NODES - b->nodes)
        return fail(b, err, KC_ERANGE, p,
                    "document has more than %d nodes (aliases count once per "
                    "use)",
                    KC_MANIFEST_MAX_NODES);
    b->nodes += more;
    return 0;
}

static void add_anchor(struct builder *b, const char *name,
                       const struct kc_node *n, size_t count, size_t bytes,
                       int height)
{
    struct anchor *a;

    kc_xgrow(&b->anchors, &b->capanchors, b->nanchors + 1, sizeof(*a));
    a = &b->anchors[b->nanchors];
    a->name = kc_xstrdup(name);
    a->node = n;
    a->count = count;
    a->bytes = bytes;
    a->height = height;
    /* A later anchor of the same name takes over (YAML 1.2 §3.2.2.2). */
    strmap_put(&b->anchor_idx, a->name, strlen(a->name), b->nanchors);
    b->nanchors++;
}

/* P (an array of N elements of SIZE) with room for one more. Nodes being
 * built hold no capacity: it is 4, then the next power of two. */
static void *grow_pow2(void *p, size_t n, size_t size)
{
    if (n == 0)
        return kc_xmalloc(4 * size);
    if (n >= 4 && (n & (n - 1)) == 0)
        return kc_xrealloc(p, 2 * n * size);
    return p;
}

/* Puts N (of HEIGHT collection levels) where the document is at; takes N. */
static int attach(struct builder *b, struct kc_node *n, int height,
                  struct kc_err *err)
{
    struct frame *f;

    if (b->depth == 0) {
        b->root = n;
        return 0;
    }
    f = &b->frames[b->depth - 1];
    if (height > f->height)
        f->height = height;
    if (f->node->type == KC_NODE_SEQ) {
        f->node->items =
            grow_pow2(f->node->items, f->node->n, sizeof(*f->node->items));
        f->node->items[f->node->n++] = n;
        return 0;
    }
    if (!f->key) {
        const struct strmap_ent *dup;
        struct kc_buf m = { 0 };
        int ret;

        if (n->type != KC_NODE_SCALAR) {
            ret =
                fail(b, err, KC_EPARSE, &n->pos,
                     "a map key must be a scalar, not %s", kc_node_describe(n));
            node_free(n);
            return ret;
        }
        if (!n->quoted && n->len == 2 && memcmp(n->str, "<<", 2) == 0) {
            struct kc_pos p = n->pos;

            node_free(n);
            return fail(b, err, KC_ENOTSUP, &p,
                        "merge keys ('<<') are not supported; write the keys "
                        "out (an alias '*name' may still stand for a whole "
                        "value)");
        }
        dup = strmap_get(&f->keys, n->str, n->len);
        if (dup) {
            const struct kc_node *first = f->node->pairs[dup->val].key;

            add_snippet(&m, n->str, n->len);
            ret = fail(b, err, KC_EPARSE, &n->pos,
                       "duplicate key %s (first defined at %d:%d)",
                       kc_buf_str(&m), first->pos.line, first->pos.col);
            kc_buf_release(&m);
            node_free(n);
            return ret;
        }
        f->key = n;
        return 0;
    }
    f->node->pairs =
        grow_pow2(f->node->pairs, f->node->n, sizeof(*f->node->pairs));
    f->node->pairs[f->node->n].key = f->key;
    f->node->pairs[f->node->n].val = n;
    strmap_put(&f->keys, f->key->str, f->key->len, f->node->n);
    f->node->n++;
    f->key = NULL;
    return 0;
}

static bool in_key_position(const struct builder *b)
{
    const struct frame *f;

    if (b->depth == 0)
        return false;
    f = &b->frames[b->depth - 1];
    return f->node->type == KC_NODE_MAP && !f->key;
}

static int check_tag(struct builder *b, const yaml_char_t *tag,
                     const char *allowed, const struct kc_pos *p,
                     struct kc_err *err)
{
    struct kc_buf m = { 0 };
    int ret;

    if (!tag || strcmp((const char *)tag, allowed) == 0)
        return 0;
    if (strncmp((const char *)tag, "tag:yaml.org,2002:", 18) == 0) {
        kc_buf_addstr(&m, "'!!");
        kc_buf_addstr(&m, (const char *)tag + 18);
        kc_buf_addch(&m, '\'');
    } else {
        add_snippet(&m, (const char *)tag, strlen((const char *)tag));
    }
    ret = fail(b, err, KC_ENOTSUP, p,
               "tag %s is not supported here (quote a value to make it a "
               "string)",
               kc_buf_str(&m));
    kc_buf_release(&m);
    return ret;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev,
                     struct kc_err *err)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    struct kc_pos p = mark_pos(b, ev->start_mark);
    struct kc_node *n;
    int ret;

    if (tag && strcmp(tag, "!") != 0) {
        ret = check_tag(b, ev->data.scalar.tag, TAG_STR, &p, err);
        if (ret < 0)
            return ret;
    }
    ret = count_node(b, 1, &p, err);
    if (ret < 0)
        return ret;
    n = node_new(b, KC_NODE_SCALAR, ev);
    n->len = ev->data.scalar.length;
    n->str = kc_xmalloc(n->len + 1);
    if (n->len)
        memcpy(n->str, ev->data.scalar.value, n->len);
    n->str[n->len] = '\0';
    b->bytes += n->len;
    /* An explicit tag (!!str, or "!") makes a plain scalar a string. */
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        kc_xgrow(&b->spans, &b->capspans, b->nspans + 1, sizeof(*b->spans));
        b->spans[b->nspans][0] = n->src_off;
        b->spans[b->nspans][1] = n->src_end;
        b->nspans++;
    }
    if (ev->data.scalar.anchor)
        add_anchor(b, (const char *)ev->data.scalar.anchor, n, 1, n->len, 0);
    return attach(b, n, 0, err);
}

static int on_alias(struct builder *b, const yaml_event_t *ev,
                    struct kc_err *err)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct kc_pos p = mark_pos(b, ev->start_mark);
    const struct strmap_ent *e = strmap_get(&b->anchor_idx, name, strlen(name));
    const struct anchor *a;
    struct kc_node *c;
    struct kc_buf m = { 0 };
    char *star = kc_xasprintf("*%s", name);
    int ret = 0;

    add_snippet(&m, star, strlen(star));
    free(star);
    if (!e) {
        ret = fail(b, err, KC_EPARSE, &p,
                   "alias %s refers to no anchor defined before it (or to "
                   "a node that contains the alias)",
                   kc_buf_str(&m));
        goto out;
    }
    a = &b->anchors[e->val];
    /* Checked before copying anything: a billion laughs fails at once. */
    if (a->count > KC_MANIFEST_MAX_NODES - b->nodes) {
        ret = fail(b, err, KC_ERANGE, &p,
                   "alias %s would expand the document past %d nodes "
                   "(alias expansion bound)",
                   kc_buf_str(&m), KC_MANIFEST_MAX_NODES);
        goto out;
    }
    /* Nodes are not the only cost: one big scalar copied 100000 times would
     * be gigabytes. Copies may add as much text as the file may hold. */
    if (a->bytes > KC_MANIFEST_MAX_BYTES - b->alias_bytes) {
        ret = fail(b, err, KC_ERANGE, &p,
                   "alias %s would copy more than 4 MiB of text in all "
                   "(alias expansion bound)",
                   kc_buf_str(&m));
        goto out;
    }
    if (b->depth + a->height > KC_MANIFEST_MAX_DEPTH) {
        ret = fail(b, err, KC_ERANGE, &p,
                   "alias %s nests the document deeper than %d levels",
                   kc_buf_str(&m), KC_MANIFEST_MAX_DEPTH);
        goto out;
    }
    if (in_key_position(b) && a->node->type != KC_NODE_SCALAR) {
        ret = fail(b, err, KC_EPARSE, &p,
                   "a map key must be a scalar, not %s (alias %s)",
                   kc_node_describe(a->node), kc_buf_str(&m));
        goto out;
    }
    b->nodes += a->count;
    b->bytes += a->bytes;
    b->alias_bytes += a->bytes;
    c = node_copy(a->node);
    /* The copy is where the alias is; its insides keep their own places. */
    c->pos = p;
    ret = attach(b, c, a->height, err);
out:
    kc_buf_release(&m);
    return ret;
}

static int on_start(struct builder *b, const yaml_event_t *ev,
                    enum kc_node_type type, struct kc_err *err)
{
    struct kc_pos p = mark_pos(b, ev->start_mark);
    const yaml_char_t *tag, *anchor;
    struct frame *f;
    int ret;

    if (type == KC_NODE_SEQ) {
        tag = ev->data.sequence_start.tag;
        anchor = ev->data.sequence_start.anchor;
    } else {
        tag = ev->data.mapping_start.tag;
        anchor = ev->data.mapping_start.anchor;
    }
    if (in_key_position(b))
        return fail(b, err, KC_EPARSE, &p, "a map key must be a scalar, not %s",
                    type == KC_NODE_SEQ ? "a list" : "a map");
    if (tag && strcmp((const char *)tag, "!") != 0) {
        ret =
            check_tag(b, tag, type == KC_NODE_SEQ ? TAG_SEQ : TAG_MAP, &p, err);
        if (ret < 0)
            return ret;
    }
    if (b->depth >= KC_MANIFEST_MAX_DEPTH)
        return fail(b, err, KC_ERANGE, &p, "nesting is deeper than %d levels",
                    KC_MANIFEST_MAX_DEPTH);
    ret = count_node(b, 1, &p, err);
    if (ret < 0)
        return ret;
    f = &b->frames[b->depth++];
    memset(f, 0, sizeof(*f));
    f->nodes_before = b->nodes - 1;
    f->bytes_before = b->bytes;
    f->node = node_new(b, type, ev);
    f->anchor = anchor ? kc_xstrdup((const char *)anchor) : NULL;
    return 0;
}

static int on_end(struct builder *b, const yaml_event_t *ev, struct kc_err *err)
{
    struct frame *f = &b->frames[b->depth - 1];
    struct kc_node *n = f->node;
    int height = f->height + 1;

    /* The end mark of a collection is where its closing token ends. */
    n->src_end = mark_offset(b, ev->end_mark);
    if (n->src_end < n->src_off)
        n->src_end = n->src_off;
    if (f->anchor)
        add_anchor(b, f->anchor, n, b->nodes - f->nodes_before,
                   b->bytes - f->bytes_before, height);
    free(f->anchor);
    strmap_release(&f->keys);
    /* A map always ends after a value: libyaml emits an empty scalar. */
    node_free(f->key);
    memset(f, 0, sizeof(*f));
    b->depth--;
    return attach(b, n, height, err);
}

static int yaml_error(struct builder *b, const yaml_parser_t *ps,
                      struct kc_err *err)
{
    struct kc_pos p;
    const char *problem = ps->problem ? ps->problem : "syntax error";
    const char *hint = "";
    size_t off;

    if (ps->error == YAML_MEMORY_ERROR)
        KC_BUG("libyaml ran out of memory");
    if (ps->error == YAML_READER_ERROR) {
        p = src_pos(b->src, b->file,
                    ps->problem_offset < b->src->len ? ps->problem_offset
                                                     : b->src->len);
        return fail(b, err, KC_EPARSE, &p, "%s (byte offset %zu)", problem,
                    ps->problem_offset);
    }
    p = mark_pos(b, ps->problem_mark);
    off = mark_offset(b, ps->problem_mark);
    /* In flow style ([…], {…}) '{' ends a plain scalar: "${" must be quoted
     * there, which libyaml cannot know to say. */
    if (off > 0 && off < b->src->len && b->src->text[off] == '{' &&
        b->src->text[off - 1] == '$')
        hint = "; inside [ ] or { } quote a value holding '${'";
    if (ps->context)
        return fail(b, err, KC_EPARSE, &p, "%s (%s started at %d:%d)%s",
                    problem, ps->context, (int)ps->context_mark.line + 1,
                    (int)ps->context_mark.column + 1, hint);
    return fail(b, err, KC_EPARSE, &p, "%s%s", problem, hint);
}

/* The first tab in indentation, on or before LINE (0: anywhere), that is not
 * inside a quoted or block scalar. */
static size_t first_bad_tab(const struct builder *b, size_t line)
{
    size_t k = 0;

    for (size_t i = 0; i < b->src->ntabs; i++) {
        size_t t = b->src->tabs[i];

        if (line && src_line_of(b->src, t) > line)
            break;
        while (k < b->nspans && b->spans[k][1] <= t)
            k++;
        if (k < b->nspans && b->spans[k][0] < t && t < b->spans[k][1])
            continue;
        return t;
    }
    return SIZE_MAX;
}

static int tab_error(struct builder *b, size_t t, struct kc_err *err)
{
    struct kc_pos p = src_pos(b->src, b->file, t);

    return fail(b, err, KC_EPARSE, &p,
                "tab character in indentation (YAML indents with spaces "
                "only)");
}

static void builder_release(struct builder *b)
{
    while (b->depth > 0) {
        struct frame *f = &b->frames[--b->depth];

        node_free(f->node);
        node_free(f->key);
        free(f->anchor);
        strmap_release(&f->keys);
    }
    for (size_t i = 0; i < b->nanchors; i++)
        free(b->anchors[i].name);
    free(b->anchors);
    strmap_release(&b->anchor_idx);
    free(b->spans);
    node_free(b->root);
}

static int build(struct builder *b, struct kc_err *err)
{
    yaml_parser_t ps;
    yaml_event_t ev;
    int ret = 0;
    bool done = false;
    size_t err_line = 0;

    if (!yaml_parser_initialize(&ps))
        KC_BUG("yaml_parser_initialize failed");
    yaml_parser_set_input_string(&ps, (const unsigned char *)b->src->text,
                                 b->src->len);
    while (!done) {
        if (!yaml_parser_parse(&ps, &ev)) {
            ret = yaml_error(b, &ps, err);
            if (ps.error == YAML_READER_ERROR)
                err_line = src_line_of(b->src, ps.problem_offset);
            else
                err_line = ps.problem_mark.line + 1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
        case YAML_NO_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (b->docs++ > 0) {
                struct kc_pos p = mark_pos(b, ev.start_mark);

                ret = fail(b, err, KC_EPARSE, &p,
                           "a second YAML document; a manifest is one "
                           "document");
            }
            break;
        case YAML_SCALAR_EVENT:
            ret = on_scalar(b, &ev, err);
            break;
        case YAML_ALIAS_EVENT:
            ret = on_alias(b, &ev, err);
            break;
        case YAML_SEQUENCE_START_EVENT:
            ret = on_start(b, &ev, KC_NODE_SEQ, err);
            break;
        case YAML_MAPPING_START_EVENT:
            ret = on_start(b, &ev, KC_NODE_MAP, err);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            ret = on_end(b, &ev, err);
            break;
        }
        if (ret < 0)
            err_line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (ret < 0)
            break;
    }
    yaml_parser_delete(&ps);
    /* A tab before the trouble is the likelier cause (libyaml's own message
     * for one is "found character that cannot start any token"). */
    {
        size_t t = first_bad_tab(b, ret < 0 ? err_line : 0);

        if (t != SIZE_MAX)
            ret = tab_error(b, t, err);
    }
    return ret;
}

int kc_manifest_parse(const char *file, const char *dir, const char *text,
                      size_t len, struct kc_doc **out, struct kc_err *err)
{
    struct builder b = { 0 };
    struct src src = { 0 };
    struct kc_doc *doc = kc_xcalloc(1, sizeof(*doc));
    int ret;

    *out = NULL;
    doc->file = kc_xstrdup(file ? file : "-");
    doc->dir = dir ? kc_xstrdup(dir) : NULL;
    if (len > KC_MANIFEST_MAX_BYTES) {
        ret = kc_err_set(err, KC_ERANGE,
                         "%s:1:1: file is %zu bytes, over the limit of 4 MiB "
                         "(%u bytes)",
                         doc->file, len, KC_MANIFEST_MAX_BYTES);
        goto out;
    }
    doc->text = kc_xmalloc(len + 1);
    if (len)
        memcpy(doc->text, text, len);
    doc->text[len] = '\0';
    doc->text_len = len;
    src.text = doc->text;
    src.len = len;
    ret = src_scan(&src, doc->file, err);
    if (ret < 0)
        goto out;
    b.file = doc->file;
    b.src = &src;
    b.cur_byte = bom_len(src.text, src.len);
    ret = build(&b, err);
    if (ret < 0)
        goto out;
    doc->root = b.root;
    b.root = NULL;
    doc->lines = src.lines;
    doc->nlines = src.nlines;
    src.lines = NULL;
    *out = doc;
    doc = NULL;
out:
    builder_release(&b);
    src_release(&src);
    kc_doc_free(doc);
    return ret;
}

int kc_manifest_load(const char *path, struct kc_doc **out, struct kc_err *err)
{
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    int ret;

    *out = NULL;
    ret = kc_file_read(path, KC_MANIFEST_MAX_BYTES, &text, &len, err);
    if (ret == KC_ERANGE) {
        ret = kc_err_set(err, KC_ERANGE,
                         "%s:1:1: file is over the limit of 4 MiB (%u bytes)",
                         path, KC_MANIFEST_MAX_BYTES);
        goto out;
    }
    if (ret < 0)
        goto out;
    dir = kc_file_dirname(path);
    ret = kc_manifest_parse(path, dir, text, len, out, err);
out:
    free(dir);
    free(text);
    return ret;
}

void kc_doc_free(struct kc_doc *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    free(doc->file);
    free(doc->dir);
    free(doc->text);
    free(doc->lines);
    free(doc);
}

struct kc_pos kc_doc_text_pos(const struct kc_doc *doc, const struct kc_node *n,
                              size_t i)
{
    struct src s = { 0 };
    size_t want = 0, have = 0, off;

    if (!doc || !doc->text || !n || n->type != KC_NODE_SCALAR || i > n->len ||
        n->src_end > doc->text_len || !doc->nlines)
        return n ? n->pos : (struct kc_pos){ 0 };
    /* Which "${" or character run is meant: count the '$' before I in the
     * value and find the same '$' in the source text. Escapes and folding
     * do not produce or swallow a '$', so the counts agree unless a "\x24"
     * style escape was used; then the node's own position is the answer. */
    for (size_t k = 0; k < i; k++)
        if (n->str[k] == '$')
            want++;
    if (i < n->len && n->str[i] != '$')
        return n->pos;
    for (off = n->src_off; off < n->src_end; off++) {
        if (doc->text[off] != '$')
            continue;
        if (have++ == want)
            break;
    }
    if (off >= n->src_end)
        return n->pos;
    {
        size_t dollars = 0;

        for (size_t k = n->src_off; k < n->src_end; k++)
            dollars += doc->text[k] == '$';
        for (size_t k = 0; k < n->len; k++)
            dollars -= n->str[k] == '$';
        if (dollars != 0)
            return n->pos;
    }
    s.text = doc->text;
    s.len = doc->text_len;
    s.lines = doc->lines;
    s.nlines = doc->nlines;
    return src_pos(&s, n->pos.file, off);
}

const struct kc_node_pair *kc_node_pair(const struct kc_node *map,
                                        const char *key)
{
    size_t len;

    if (!map || map->type != KC_NODE_MAP || !key)
        return NULL;
    len = strlen(key);
    for (size_t i = 0; i < map->n; i++) {
        const struct kc_node *k = map->pairs[i].key;

        if (k->len == len && memcmp(k->str, key, len) == 0)
            return &map->pairs[i];
    }
    return NULL;
}

const struct kc_node *kc_node_get(const struct kc_node *map, const char *key)
{
    const struct kc_node_pair *p = kc_node_pair(map, key);

    return p ? p->val : NULL;
}

static bool all_of(const char *s, const char *set)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr(set, *s))
            return false;
    return true;
}

#define DIGITS    "0123456789"
#define OCTDIGITS "01234567"
#define HEXDIGITS "0123456789abcdefABCDEF"

static bool is_core_int(const char *s)
{
    if (s[0] == '0' && s[1] == 'o')
        return all_of(s + 2, OCTDIGITS);
    if (s[0] == '0' && s[1] == 'x')
        return all_of(s + 2, HEXDIGITS);
    if (*s == '-' || *s == '+')
        s++;
    return all_of(s, DIGITS);
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
 * and [-+]? \.inf, \.nan in their three spellings (YAML 1.2.2 §10.3.2). */
static bool is_core_float(const char *s)
{
    const char *p;
    size_t n;

    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))
        return true;
    if (*s == '-' || *s == '+')
        s++;
    if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF"))
        return true;
    p = s;
    n = strspn(p, DIGITS);
    p += n;
    if (*p == '.') {
        size_t frac = strspn(p + 1, DIGITS);

        if (n == 0 && frac == 0)
            return false;
        p += 1 + frac;
    } else if (n == 0) {
        return false;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        n = strspn(p, DIGITS);
        if (n == 0)
            return false;
        p += n;
    }
    return *p == '\0';
}

enum kc_scalar_type kc_node_scalar_type(const struct kc_node *n)
{
    const char *s;

    if (!n || n->type != KC_NODE_SCALAR || n->quoted)
        return KC_SCALAR_STRING;
    s = n->str;
    if (strlen(s) != n->len)
        return KC_SCALAR_STRING;
    if (n->len == 0 || !strcmp(s, "~") || !strcmp(s, "null") ||
        !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return KC_SCALAR_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") ||
        !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return KC_SCALAR_BOOL;
    if (is_core_int(s))
        return KC_SCALAR_INT;
    if (is_core_float(s))
        return KC_SCALAR_FLOAT;
    return KC_SCALAR_STRING;
}

bool kc_node_scalar_bool(const struct kc_node *n, bool *out)
{
    if (kc_node_scalar_type(n) != KC_SCALAR_BOOL)
        return false;
    *out = n->str[0] == 't' || n->str[0] == 'T';
    return true;
}

bool kc_node_scalar_int(const struct kc_node *n, int64_t *out)
{
    const char *s;
    bool neg = false;
    unsigned base = 10;
    uint64_t v = 0, lim;

    if (kc_node_scalar_type(n) != KC_SCALAR_INT)
        return false;
    s = n->str;
    if (s[0] == '0' && s[1] == 'o') {
        base = 8, s += 2;
    } else if (s[0] == '0' && s[1] == 'x') {
        base = 16, s += 2;
    } else if (*s == '-' || *s == '+') {
        neg = *s++ == '-';
    }
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *s; s++) {
        unsigned d = *s <= '9'   ? (unsigned)(*s - '0')
                     : *s <= 'F' ? (unsigned)(*s - 'A' + 10)
                                 : (unsigned)(*s - 'a' + 10);

        if (v > (lim - d) / base)
            return false;
        v = v * base + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return true;
}

const char *kc_node_describe(const struct kc_node *n)
{
    if (!n)
        return "nothing";
    switch (n->type) {
    case KC_NODE_SEQ:
        return "a list";
    case KC_NODE_MAP:
        return "a map";
    case KC_NODE_SCALAR:
        break;
    }
    switch (kc_node_scalar_type(n)) {
    case KC_SCALAR_INT:
        return "an integer";
    case KC_SCALAR_FLOAT:
        return "a number";
    case KC_SCALAR_BOOL:
        return "a boolean";
    case KC_SCALAR_NULL:
        return "null";
    case KC_SCALAR_STRING:
        break;
    }
    return "a string";
}
