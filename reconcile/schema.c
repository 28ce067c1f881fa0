/* reconcile/schema.c: JSON Schema subset validator with positioned errors. */
#include "reconcile/schema.h"

#include <arpa/inet.h>
#include <math.h>
#include <regex.h>

#include <curl/curl.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"

/* $ref chains and nested schemas deeper than this are a schema bug. */
#define SCHEMA_MAX_DEPTH 200
/* "Did you mean" is computed for at most this many unknown keys per map. */
#define SCHEMA_MAX_SUGGEST 64
/* Values quoted in messages are cut at this many bytes. */
#define SCHEMA_QUOTE_MAX 60

struct schema_pattern {
    struct json_object *owner; /* the schema object holding "pattern" */
    regex_t re;
};

struct kc_schema {
    struct json_object *root;
    struct schema_pattern *pats;
    size_t npats, cap;
};

/* Error kinds that the oneOf/anyOf heuristics look at. */
enum verr_kind {
    VERR_OTHER,
    VERR_TYPE,         /* wrong type; aux: what was expected */
    VERR_MISSING,      /* missing required property; aux: its name */
    VERR_UNKNOWN,      /* unknown property; aux: the suggested name or NULL */
    VERR_MISSING_TYPO, /* missing, but an unknown key looks like it: silent */
};

struct verr {
    const struct kc_node *node; /* the node the error is about */
    struct kc_pos pos;
    char *path;
    char *msg;
    enum verr_kind kind;
    char *aux;
};

struct vsec {
    const struct kc_node *node;
    char *path;
};

struct vres {
    struct verr *errs;
    size_t n, cap;
    struct vsec *sec;
    size_t nsec, seccap;
};

struct vctx {
    const struct kc_schema *schema;
    int depth;
};

/* Type bits of an instance. */
enum {
    T_NULL = 1 << 0,
    T_BOOL = 1 << 1,
    T_INT = 1 << 2,
    T_NUM = 1 << 3,
    T_STR = 1 << 4,
    T_ARR = 1 << 5,
    T_OBJ = 1 << 6,
};

static void validate(struct vctx *cx, struct json_object *sch,
                     const struct kc_node *node, const char *path,
                     const struct kc_pos *keypos, struct vres *res);

/* ---- results ---------------------------------------------------------- */

static void res_add(struct vres *res, const struct kc_node *node,
                    const struct kc_pos *pos, const char *path,
                    enum verr_kind kind, const char *aux, const char *fmt, ...)
    KC_PRINTF(7, 8);

static void res_add(struct vres *res, const struct kc_node *node,
                    const struct kc_pos *pos, const char *path,
                    enum verr_kind kind, const char *aux, const char *fmt, ...)
{
    struct kc_buf b = { 0 };
    struct verr *e;
    va_list ap;

    kc_xgrow(&res->errs, &res->cap, res->n + 1, sizeof(*res->errs));
    e = &res->errs[res->n++];
    memset(e, 0, sizeof(*e));
    e->node = node;
    if (pos)
        e->pos = *pos;
    else if (node)
        e->pos = node->pos;
    e->path = kc_xstrdup(path);
    e->kind = kind;
    e->aux = aux ? kc_xstrdup(aux) : NULL;
    va_start(ap, fmt);
    kc_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    e->msg = kc_buf_detach(&b, NULL);
}

static void res_release(struct vres *res)
{
    for (size_t i = 0; i < res->n; i++) {
        free(res->errs[i].path);
        free(res->errs[i].msg);
        free(res->errs[i].aux);
    }
    free(res->errs);
    for (size_t i = 0; i < res->nsec; i++)
        free(res->sec[i].path);
    free(res->sec);
    memset(res, 0, sizeof(*res));
}

/* Moves everything of SRC to the end of DST; SRC is left empty. */
static void res_take(struct vres *dst, struct vres *src)
{
    kc_xgrow(&dst->errs, &dst->cap, dst->n + src->n, sizeof(*dst->errs));
    if (src->n)
        memcpy(dst->errs + dst->n, src->errs, src->n * sizeof(*src->errs));
    dst->n += src->n;
    kc_xgrow(&dst->sec, &dst->seccap, dst->nsec + src->nsec, sizeof(*dst->sec));
    if (src->nsec)
        memcpy(dst->sec + dst->nsec, src->sec, src->nsec * sizeof(*src->sec));
    dst->nsec += src->nsec;
    free(src->errs);
    free(src->sec);
    memset(src, 0, sizeof(*src));
}

static void res_secret(struct vres *res, const struct kc_node *node,
                       const char *path)
{
    kc_xgrow(&res->sec, &res->seccap, res->nsec + 1, sizeof(*res->sec));
    res->sec[res->nsec].node = node;
    res->sec[res->nsec].path = kc_xstrdup(path);
    res->nsec++;
}

static int sec_cmp(const void *pa, const void *pb)
{
    const struct vsec *a = pa, *b = pb;

    if (a->node->pos.line != b->node->pos.line)
        return a->node->pos.line < b->node->pos.line ? -1 : 1;
    if (a->node->pos.col != b->node->pos.col)
        return a->node->pos.col < b->node->pos.col ? -1 : 1;
    if (a->node != b->node)
        return (uintptr_t)a->node < (uintptr_t)b->node ? -1 : 1;
    return 0;
}

/* ---- paths and quoting ------------------------------------------------ */

static bool plain_key(const char *k)
{
    if (!*k)
        return false;
    for (; *k; k++)
        if (!(*k == '_' || *k == '-' || (*k >= 'a' && *k <= 'z') ||
              (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9')))
            return false;
    return true;
}

static char *path_key(const char *parent, const char *key)
{
    if (!plain_key(key))
        return kc_xasprintf("%s[\"%s\"]", parent, key);
    if (!*parent)
        return kc_xstrdup(key);
    return kc_xasprintf("%s.%s", parent, key);
}

/* Quotes scalar text for a message: 'text', cut after MAX bytes (then
 * '...') and with controls escaped. */
static void quote_max(struct kc_buf *b, const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;

    kc_buf_addch(b, '\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            kc_buf_addf(b, "\\x%02x", c);
        else
            kc_buf_addch(b, (char)c);
    }
    if (n < len)
        kc_buf_addstr(b, "...");
    kc_buf_addch(b, '\'');
}

static void quote(struct kc_buf *b, const char *s, size_t len)
{
    quote_max(b, s, len, SCHEMA_QUOTE_MAX);
}

/* ---- instance typing -------------------------------------------------- */

bool kc_schema_has_interp(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '$')
            continue;
        if (s[i + 1] == '$' && i + 2 < len && s[i + 2] == '{') {
            i += 2; /* "$${" writes a literal "${" */
            continue;
        }
        if (s[i + 1] == '{')
            return true;
    }
    return false;
}

static bool is_deferred(const struct kc_node *n)
{
    return n && n->type == KC_NODE_SCALAR &&
           kc_schema_has_interp(n->str, n->len);
}

static unsigned node_types(const struct kc_node *n)
{
    if (!n)
        return T_NULL;
    if (n->type == KC_NODE_MAP)
        return T_OBJ;
    if (n->type == KC_NODE_SEQ)
        return T_ARR;
    if (is_deferred(n))
        return T_STR | T_INT | T_NUM | T_BOOL;
    switch (kc_node_scalar_type(n)) {
    case KC_SCALAR_STRING:
        return T_STR;
    case KC_SCALAR_INT:
        return T_INT | T_NUM | T_STR;
    case KC_SCALAR_FLOAT:
        return T_NUM | T_STR;
    case KC_SCALAR_BOOL:
        return T_BOOL;
    case KC_SCALAR_NULL:
        return T_NULL;
    }
    return T_STR;
}

static const char *describe(const struct kc_node *n)
{
    return n ? kc_node_describe(n) : "null";
}

static unsigned type_bit(const char *t)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        { "null", T_NULL },  { "boolean", T_BOOL }, { "integer", T_INT },
        { "number", T_NUM }, { "string", T_STR },   { "array", T_ARR },
        { "object", T_OBJ },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(names); i++)
        if (strcmp(names[i].name, t) == 0)
            return names[i].bit;
    return 0;
}

static const char *type_words(unsigned bit)
{
    switch (bit) {
    case T_NULL:
        return "null";
    case T_BOOL:
        return "a boolean (true or false)";
    case T_INT:
        return "an integer";
    case T_NUM:
        return "a number";
    case T_STR:
        return "a string";
    case T_ARR:
        return "a list";
    case T_OBJ:
        return "a map";
    }
    return "a value";
}

/* Parses a YAML 1.2 core number (decimal, 0x, 0o, floats, .inf, .nan). */
static bool node_number(const struct kc_node *n, double *out)
{
    const char *s = n->str;
    char *end;
    int sign = 1;

    if (*s == '-' || *s == '+') {
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    if (strcmp(s, ".inf") == 0 || strcmp(s, ".Inf") == 0 ||
        strcmp(s, ".INF") == 0) {
        *out = sign * INFINITY;
        return true;
    }
    if (strcmp(n->str, ".nan") == 0 || strcmp(n->str, ".NaN") == 0 ||
        strcmp(n->str, ".NAN") == 0) {
        *out = NAN;
        return true;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        unsigned long long v;

        errno = 0;
        v = strtoull(s + 2, &end, s[1] == 'x' ? 16 : 8);
        if (errno || *end || end == s + 2)
            return false;
        *out = sign * (double)v;
        return true;
    }
    errno = 0;
    *out = strtod(n->str, &end);
    return !*end && end != n->str;
}

/* ---- schema helpers --------------------------------------------------- */

static struct json_object *kw(struct json_object *sch, const char *name)
{
    struct json_object *v = NULL;

    if (!json_object_is_type(sch, json_type_object))
        return NULL;
    return json_object_object_get_ex(sch, name, &v) ? v : NULL;
}

static const char *kw_str(struct json_object *sch, const char *name)
{
    struct json_object *v = kw(sch, name);

    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                    : NULL;
}

static bool kw_true(struct json_object *sch, const char *name)
{
    struct json_object *v = kw(sch, name);

    return json_object_is_type(v, json_type_boolean) &&
           json_object_get_boolean(v);
}

/* Resolves "#/a/b" inside the schema; NULL when it does not exist. */
static struct json_object *resolve_ref(const struct kc_schema *s,
                                       const char *ref)
{
    struct json_object *cur = s->root;
    const char *p;

    if (ref[0] != '#')
        return NULL;
    p = ref + 1;
    while (*p == '/') {
        struct kc_buf tok = { 0 };
        struct json_object *next = NULL;

        p++;
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0') {
                kc_buf_addch(&tok, '~');
                p += 2;
            } else if (p[0] == '~' && p[1] == '1') {
                kc_buf_addch(&tok, '/');
                p += 2;
            } else {
                kc_buf_addch(&tok, *p++);
            }
        }
        if (json_object_is_type(cur, json_type_object))
            json_object_object_get_ex(cur, kc_buf_str(&tok), &next);
        else if (json_object_is_type(cur, json_type_array))
            next = json_object_array_get_idx(
                cur, strtoul(kc_buf_str(&tok), NULL, 10));
        kc_buf_release(&tok);
        if (!next)
            return NULL;
        cur = next;
    }
    return *p ? NULL : cur;
}

static const regex_t *find_pattern(const struct kc_schema *s,
                                   struct json_object *owner)
{
    for (size_t i = 0; i < s->npats; i++)
        if (s->pats[i].owner == owner)
            return &s->pats[i].re;
    return NULL;
}

/* What the schema expects, for messages: its title, else its types. */
static void expected_words(struct vctx *cx, struct json_object *sch,
                           struct kc_buf *b)
{
    struct json_object *t;
    const char *title;
    int guard = 0;

    while (kw_str(sch, "$ref") && !kw_str(sch, "title") && !kw(sch, "type") &&
           guard++ < SCHEMA_MAX_DEPTH)
        sch = resolve_ref(cx->schema, kw_str(sch, "$ref"));
    title = kw_str(sch, "title");
    if (title) {
        kc_buf_addstr(b, title);
        return;
    }
    t = kw(sch, "type");
    if (json_object_is_type(t, json_type_string)) {
        kc_buf_addstr(b, type_words(type_bit(json_object_get_string(t))));
    } else if (json_object_is_type(t, json_type_array)) {
        size_t n = json_object_array_length(t);

        for (size_t i = 0; i < n; i++) {
            const char *name =
                json_object_get_string(json_object_array_get_idx(t, i));

            if (i)
                kc_buf_addstr(b, i + 1 == n ? " or " : ", ");
            kc_buf_addstr(b, type_words(type_bit(name)));
        }
    } else {
        kc_buf_addstr(b, "a valid value");
    }
}

/* ---- formats ---------------------------------------------------------- */

static bool fmt_hostname(const char *s)
{
    size_t total = strlen(s), label = 0;

    if (total == 0 || total > 253)
        return false;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63 || p[-1] == '-')
                return false;
            if (*p == '\0')
                return true;
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || (*p == '-' && label > 0)))
            return false;
        label++;
    }
}

static bool fmt_email(const char *s)
{
    const char *at = strrchr(s, '@');

    if (!at || at == s || at - s > 64 || !strchr(at + 1, '.'))
        return false;
    for (const char *p = s; p < at; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr("._%+-", *p)))
            return false;
    return fmt_hostname(at + 1);
}

static bool fmt_ip(const char *s, int af)
{
    unsigned char buf[16];

    return inet_pton(af, s, buf) == 1;
}

static bool fmt_cidr(const char *s)
{
    const char *slash = strchr(s, '/');
    char addr[64];
    size_t alen;
    int max;
    long prefix;
    char *end;

    if (!slash || slash == s || (alen = (size_t)(slash - s)) >= sizeof(addr))
        return false;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (fmt_ip(addr, AF_INET))
        max = 32;
    else if (fmt_ip(addr, AF_INET6))
        max = 128;
    else
        return false;
    if (slash[1] < '0' || slash[1] > '9' || (slash[1] == '0' && slash[2]))
        return false;
    errno = 0;
    prefix = strtol(slash + 1, &end, 10);
    return !errno && !*end && prefix >= 0 && prefix <= max;
}

static bool fmt_uri(const char *s)
{
    CURLU *u;
    CURLUcode rc;

    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    u = curl_url();
    if (!u)
        KC_BUG("out of memory");
    rc = curl_url_set(u, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME);
    curl_url_cleanup(u);
    return rc == CURLUE_OK;
}

/* RFC 3339 date-time: 2026-11-25T09:39:34Z, with optional fraction and
 * offset (+01:00). Field ranges are checked, not the calendar. */
static bool fmt_date_time(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    const char *p = s;
    int mon, day, hh, mm, ss;

    for (size_t i = 0; shape[i]; i++, p++) {
        if (shape[i] == 'd' ? (*p < '0' || *p > '9')
                            : (*p != shape[i] &&
                               !(shape[i] == 'T' && (*p == 't' || *p == ' '))))
            return false;
    }
    mon = (s[5] - '0') * 10 + (s[6] - '0');
    day = (s[8] - '0') * 10 + (s[9] - '0');
    hh = (s[11] - '0') * 10 + (s[12] - '0');
    mm = (s[14] - '0') * 10 + (s[15] - '0');
    ss = (s[17] - '0') * 10 + (s[18] - '0');
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 ||
        ss > 60)
        return false;
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return false;
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    return (*p == '+' || *p == '-') && p[1] >= '0' && p[1] <= '2' &&
           p[2] >= '0' && p[2] <= '9' && p[3] == ':' && p[4] >= '0' &&
           p[4] <= '5' && p[5] >= '0' && p[5] <= '9' && p[6] == '\0';
}

static const char *const known_formats[] = {
    "uri", "hostname", "email", "ipv4", "ipv6", "cidr", "date-time", NULL,
};

static bool format_ok(const char *fmt, const char *s)
{
    if (strcmp(fmt, "uri") == 0)
        return fmt_uri(s);
    if (strcmp(fmt, "hostname") == 0)
        return fmt_hostname(s);
    if (strcmp(fmt, "email") == 0)
        return fmt_email(s);
    if (strcmp(fmt, "ipv4") == 0)
        return fmt_ip(s, AF_INET);
    if (strcmp(fmt, "ipv6") == 0)
        return fmt_ip(s, AF_INET6);
    if (strcmp(fmt, "cidr") == 0)
        return fmt_cidr(s);
    if (strcmp(fmt, "date-time") == 0)
        return fmt_date_time(s);
    return true;
}

static const char *format_words(const char *fmt)
{
    if (strcmp(fmt, "uri") == 0)
        return "a URL";
    if (strcmp(fmt, "hostname") == 0)
        return "a hostname";
    if (strcmp(fmt, "email") == 0)
        return "an email address";
    if (strcmp(fmt, "ipv4") == 0)
        return "an IPv4 address";
    if (strcmp(fmt, "ipv6") == 0)
        return "an IPv6 address";
    if (strcmp(fmt, "date-time") == 0)
        return "an RFC 3339 date-time (e.g. 2026-11-25T09:39:34Z)";
    return "an IPv4 or IPv6 network in CIDR notation (e.g. 203.0.113.7/32)";
}

/* ---- equality (enum, const, uniqueItems) ------------------------------ */

/* Does the instance NODE equal the JSON value V? */
static bool equals_json(const struct kc_node *n, struct json_object *v)
{
    unsigned t = node_types(n);
    double d;

    switch (json_object_get_type(v)) {
    case json_type_null:
        return t == T_NULL;
    case json_type_boolean:
        return t == T_BOOL &&
               (strcmp(n->str, "true") == 0 || strcmp(n->str, "True") == 0 ||
                strcmp(n->str, "TRUE") == 0) == json_object_get_boolean(v);
    case json_type_int:
    case json_type_double:
        return (t & T_NUM) && kc_node_scalar_type(n) != KC_SCALAR_STRING &&
               node_number(n, &d) && d == json_object_get_double(v);
    case json_type_string:
        return (t & T_STR) && n->len == (size_t)json_object_get_string_len(v) &&
               memcmp(n->str, json_object_get_string(v), n->len) == 0;
    case json_type_array: {
        size_t len = json_object_array_length(v);

        if (t != T_ARR || n->n != len)
            return false;
        for (size_t i = 0; i < len; i++)
            if (!equals_json(n->items[i], json_object_array_get_idx(v, i)))
                return false;
        return true;
    }
    case json_type_object: {
        if (t != T_OBJ || n->n != (size_t)json_object_object_length(v))
            return false;
        for (size_t i = 0; i < n->n; i++) {
            struct json_object *m = NULL;

            if (!json_object_object_get_ex(v, n->pairs[i].key->str, &m) ||
                !equals_json(n->pairs[i].val, m))
                return false;
        }
        return true;
    }
    }
    return false;
}

static bool equals_node(const struct kc_node *a, const struct kc_node *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || (a->type != KC_NODE_SCALAR && a->n != b->n))
        return false;
    switch (a->type) {
    case KC_NODE_SCALAR:
        return kc_node_scalar_type(a) == kc_node_scalar_type(b) &&
               a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case KC_NODE_SEQ:
        for (size_t i = 0; i < a->n; i++)
            if (!equals_node(a->items[i], b->items[i]))
                return false;
        return true;
    case KC_NODE_MAP:
        for (size_t i = 0; i < a->n; i++) {
            const struct kc_node *bv = kc_node_get(b, a->pairs[i].key->str);

            if (!kc_node_pair(b, a->pairs[i].key->str) ||
                !equals_node(a->pairs[i].val, bv))
                return false;
        }
        return true;
    }
    return false;
}

/* ---- did you mean ----------------------------------------------------- */

size_t kc_schema_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), *row, best;

    if (la > 64 || lb > 64)
        return 99;
    row = kc_xcalloc(lb + 1, sizeof(*row));
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], v = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            diag = up;
            row[j] = v;
        }
    }
    best = row[lb];
    free(row);
    return best;
}

/* The property of PROPS closest to KEY, if it is close enough. */
static const char *suggest(struct json_object *props, const char *key)
{
    const char *best = NULL;
    size_t bestd = 3;

    if (!json_object_is_type(props, json_type_object))
        return NULL;
    json_object_object_foreach (props, name, sub) {
        size_t d = kc_schema_edit_distance(key, name);

        (void)sub;
        if (d < bestd && d * 3 <= strlen(name)) {
            best = name;
            bestd = d;
        }
    }
    return best;
}

/* ---- keywords --------------------------------------------------------- */

static bool check_type(struct vctx *cx, struct json_object *sch,
                       const struct kc_node *node, const char *path,
                       struct vres *res)
{
    struct json_object *t = kw(sch, "type");
    unsigned want = 0, have = node_types(node);
    struct kc_buf exp = { 0 };
    double d;

    if (!t)
        return true;
    if (json_object_is_type(t, json_type_string)) {
        want = type_bit(json_object_get_string(t));
    } else {
        for (size_t i = 0; i < json_object_array_length(t); i++)
            want |= type_bit(
                json_object_get_string(json_object_array_get_idx(t, i)));
    }
    if (want & T_NUM)
        want |= T_INT;
    /* JSON Schema: 2.0 is an integer. */
    if ((want & T_INT) && !(have & T_INT) && (have & T_NUM) &&
        node_number(node, &d) && isfinite(d) && d == floor(d))
        return true;
    if (have & want) {
        /* An integer must be integral, also when written 1.0. */
        if ((want & (T_INT | T_NUM)) == T_INT && !(have & T_INT) &&
            (have & T_NUM) && !(have & want & ~(T_INT | T_NUM)) &&
            !is_deferred(node) &&
            !(node_number(node, &d) && d == floor(d) && isfinite(d))) {
            res_add(res, node, NULL, path, VERR_TYPE, "an integer",
                    "expected an integer, got %s", describe(node));
            return false;
        }
        return true;
    }
    expected_words(cx, sch, &exp);
    res_add(res, node, NULL, path, VERR_TYPE, kc_buf_str(&exp),
            "expected %s, got %s", kc_buf_str(&exp), describe(node));
    kc_buf_release(&exp);
    return false;
}

static void check_enum_const(struct vctx *cx, struct json_object *sch,
                             const struct kc_node *node, const char *path,
                             struct vres *res)
{
    struct json_object *c = kw(sch, "const"), *e = kw(sch, "enum");
    bool secret = kw_true(sch, "writeOnly");
    struct kc_buf b = { 0 };

    (void)cx;
    if (is_deferred(node))
        return;
    if (c && !equals_json(node, c)) {
        kc_buf_addstr(&b, "expected ");
        kc_buf_addstr(&b, json_object_to_json_string_ext(
                              c, JSON_C_TO_STRING_PLAIN |
                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        if (node && node->type == KC_NODE_SCALAR && !secret) {
            kc_buf_addstr(&b, ", got ");
            quote(&b, node->str, node->len);
        }
        res_add(res, node, NULL, path, VERR_OTHER, NULL, "%s", kc_buf_str(&b));
    }
    kc_buf_reset(&b);
    if (json_object_is_type(e, json_type_array)) {
        size_t n = json_object_array_length(e);

        for (size_t i = 0; i < n; i++)
            if (equals_json(node, json_object_array_get_idx(e, i)))
                goto out;
        if (node && node->type == KC_NODE_SCALAR && !secret) {
            quote(&b, node->str, node->len);
            kc_buf_addstr(&b, " is not ");
        } else {
            kc_buf_addstr(&b, "expected ");
        }
        kc_buf_addstr(&b, n > 1 ? "one of " : "");
        for (size_t i = 0; i < n; i++) {
            if (i)
                kc_buf_addstr(&b, i + 1 == n ? " or " : ", ");
            kc_buf_addstr(&b, json_object_to_json_string_ext(
                                  json_object_array_get_idx(e, i),
                                  JSON_C_TO_STRING_PLAIN |
                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        }
        res_add(res, node, NULL, path, VERR_OTHER, NULL, "%s", kc_buf_str(&b));
    }
out:
    kc_buf_release(&b);
}

/* How much of a URL messages may quote: scheme and host, not the path or
 * query, which often carry an API key (https://host/v2/<key>). */
static size_t url_origin_len(const char *s, size_t len)
{
    const char *sep = memmem(s, len, "://", 3);
    size_t start = sep ? (size_t)(sep - s) + 3 : 0;

    for (size_t i = start; i < len; i++)
        if (s[i] == '/' || s[i] == '?' || s[i] == '#')
            return i;
    return len;
}

static size_t utf8_length(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

static void check_string(struct vctx *cx, struct json_object *sch,
                         const struct kc_node *node, const char *path,
                         struct vres *res)
{
    struct json_object *minl = kw(sch, "minLength"),
                       *maxl = kw(sch, "maxLength");
    const char *fmt = kw_str(sch, "format");
    const regex_t *re =
        kw(sch, "pattern") ? find_pattern(cx->schema, sch) : NULL;
    bool secret = kw_true(sch, "writeOnly");
    struct kc_buf b = { 0 };
    size_t len;

    if (!node || node->type != KC_NODE_SCALAR || !(node_types(node) & T_STR) ||
        is_deferred(node))
        return;
    len = utf8_length(node->str, node->len);
    if (minl && len < (size_t)json_object_get_int64(minl)) {
        if (len == 0)
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "must not be empty");
        else
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "too short: %zu characters, at least %lld", len,
                    (long long)json_object_get_int64(minl));
        return;
    }
    if (maxl && len > (size_t)json_object_get_int64(maxl)) {
        res_add(res, node, NULL, path, VERR_OTHER, NULL,
                "too long: %zu characters, at most %lld", len,
                (long long)json_object_get_int64(maxl));
        return;
    }
    if (secret)
        kc_buf_addstr(&b, "the value");
    else if (fmt && strcmp(fmt, "uri") == 0)
        quote_max(&b, node->str, node->len,
                  url_origin_len(node->str, node->len) < SCHEMA_QUOTE_MAX
                      ? url_origin_len(node->str, node->len)
                      : SCHEMA_QUOTE_MAX);
    else
        quote(&b, node->str, node->len);
    if (fmt && (strlen(node->str) != node->len || !format_ok(fmt, node->str))) {
        kc_buf_addstr(&b, " is not ");
        if (kw_str(sch, "title"))
            kc_buf_addstr(&b, kw_str(sch, "title"));
        else
            kc_buf_addstr(&b, format_words(fmt));
        res_add(res, node, NULL, path, VERR_OTHER, NULL, "%s", kc_buf_str(&b));
    } else if (re && (strlen(node->str) != node->len ||
                      regexec(re, node->str, 0, NULL, 0) != 0)) {
        if (kw_str(sch, "title"))
            kc_buf_addf(&b, " is not %s", kw_str(sch, "title"));
        else
            kc_buf_addf(&b, " does not match the pattern %s",
                        kw_str(sch, "pattern"));
        res_add(res, node, NULL, path, VERR_OTHER, NULL, "%s", kc_buf_str(&b));
    }
    kc_buf_release(&b);
}

static void check_number(struct vctx *cx, struct json_object *sch,
                         const struct kc_node *node, const char *path,
                         struct vres *res)
{
    static const struct {
        const char *kw;
        const char *words;
        int sense; /* value must be: 1 >=, 2 >, -1 <=, -2 < */
    } bounds[] = {
        { "minimum", "at least", 1 },
        { "exclusiveMinimum", "more than", 2 },
        { "maximum", "at most", -1 },
        { "exclusiveMaximum", "less than", -2 },
    };
    double d;

    (void)cx;
    if (!node || node->type != KC_NODE_SCALAR || is_deferred(node) ||
        kc_node_scalar_type(node) == KC_SCALAR_STRING ||
        !(node_types(node) & T_NUM) || !node_number(node, &d))
        return;
    for (size_t i = 0; i < KC_ARRAY_SIZE(bounds); i++) {
        struct json_object *b = kw(sch, bounds[i].kw);
        double lim;
        bool ok;

        if (!b)
            continue;
        lim = json_object_get_double(b);
        switch (bounds[i].sense) {
        case 1:
            ok = d >= lim;
            break;
        case 2:
            ok = d > lim;
            break;
        case -1:
            ok = d <= lim;
            break;
        default:
            ok = d < lim;
            break;
        }
        if (!ok) {
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "%s is out of range: must be %s %s", node->str,
                    bounds[i].words, json_object_get_string(b));
            return;
        }
    }
}

static bool required_only(struct json_object *sch)
{
    if (!json_object_is_type(sch, json_type_object) || !kw(sch, "required"))
        return false;
    json_object_object_foreach (sch, k, v) {
        (void)v;
        if (strcmp(k, "required") != 0 && strcmp(k, "description") != 0 &&
            strcmp(k, "$comment") != 0)
            return false;
    }
    return true;
}

static void check_object(struct vctx *cx, struct json_object *sch,
                         const struct kc_node *node, const char *path,
                         const struct kc_pos *keypos, struct vres *res)
{
    struct json_object *req = kw(sch, "required"),
                       *props = kw(sch, "properties");
    struct json_object *pprops = kw(sch, "patternProperties");
    struct json_object *addl = kw(sch, "additionalProperties");
    struct json_object *pnames = kw(sch, "propertyNames");
    struct json_object *minp = kw(sch, "minProperties");
    struct json_object *maxp = kw(sch, "maxProperties");
    const struct kc_pos *mpos = keypos ? keypos : &node->pos;

    const char **sugg;
    size_t nunknown = 0;

    if (node->type != KC_NODE_MAP)
        return;
    /* Suggestions for the first unknown keys only: a hostile map with
     * thousands of keys must not cost thousands of edit distances each. */
    sugg = kc_xcalloc(node->n ? node->n : 1, sizeof(*sugg));
    for (size_t j = 0; props && j < node->n; j++) {
        const char *k = node->pairs[j].key->str;

        if (json_object_object_get_ex(props, k, NULL))
            continue;
        if (nunknown++ >= SCHEMA_MAX_SUGGEST)
            break;
        sugg[j] = suggest(props, k);
    }
    for (size_t i = 0; req && i < json_object_array_length(req); i++) {
        const char *name =
            json_object_get_string(json_object_array_get_idx(req, i));
        bool typo = false;

        if (kc_node_pair(node, name))
            continue;
        /* A misspelt key is reported once, as unknown with a suggestion. */
        for (size_t j = 0; !typo && j < node->n; j++)
            typo = sugg[j] && strcmp(sugg[j], name) == 0;
        res_add(res, node, mpos, path, VERR_MISSING, name,
                typo ? "" : "missing required property '%s'", name);
        if (typo)
            res->errs[res->n - 1].kind = VERR_MISSING_TYPO;
    }
    if (minp && node->n < (size_t)json_object_get_int64(minp))
        res_add(res, node, mpos, path, VERR_OTHER, NULL,
                "expected at least %lld entries, got %zu",
                (long long)json_object_get_int64(minp), node->n);
    if (maxp && node->n > (size_t)json_object_get_int64(maxp))
        res_add(res, node, mpos, path, VERR_OTHER, NULL,
                "expected at most %lld entries, got %zu",
                (long long)json_object_get_int64(maxp), node->n);
    for (size_t i = 0; i < node->n; i++) {
        const struct kc_node *key = node->pairs[i].key;
        const struct kc_node *val = node->pairs[i].val;
        struct json_object *sub = NULL;
        char *sub_path = path_key(path, key->str);
        bool matched = false;

        if (pnames) {
            struct vres kres = { 0 };

            validate(cx, pnames, key, path, NULL, &kres);
            if (kres.n) {
                struct kc_buf exp = { 0 };

                expected_words(cx, pnames, &exp);
                res_add(res, key, &key->pos, path, VERR_OTHER, NULL,
                        "'%s' is not %s", key->str, kc_buf_str(&exp));
                kc_buf_release(&exp);
            }
            res_release(&kres);
        }
        if (props && json_object_object_get_ex(props, key->str, &sub)) {
            validate(cx, sub, val, sub_path, &key->pos, res);
            matched = true;
        }
        if (pprops) {
            json_object_object_foreach (pprops, pat, psch) {
                const regex_t *re = find_pattern(cx->schema, psch);

                (void)pat;
                if (re && strlen(key->str) == key->len &&
                    regexec(re, key->str, 0, NULL, 0) == 0) {
                    validate(cx, psch, val, sub_path, &key->pos, res);
                    matched = true;
                }
            }
        }
        if (!matched && addl) {
            if (json_object_is_type(addl, json_type_boolean) &&
                !json_object_get_boolean(addl)) {
                const char *s = sugg[i];

                if (s)
                    res_add(res, node, &key->pos, path, VERR_UNKNOWN, s,
                            "unknown property '%s' (did you mean '%s'?)",
                            key->str, s);
                else
                    res_add(res, node, &key->pos, path, VERR_UNKNOWN, NULL,
                            "unknown property '%s'", key->str);
            } else {
                validate(cx, addl, val, sub_path, &key->pos, res);
            }
        }
        free(sub_path);
    }
    free(sugg);
}

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A hash that equal nodes (equals_node) share; map order does not count. */
static uint64_t node_hash(const struct kc_node *n)
{
    uint64_t h = 0xcbf29ce484222325ull, sum = 0;
    unsigned char tag;

    if (!n)
        return h;
    tag = (unsigned char)n->type;
    h = fnv(h, &tag, 1);
    switch (n->type) {
    case KC_NODE_SCALAR:
        tag = (unsigned char)kc_node_scalar_type(n);
        h = fnv(h, &tag, 1);
        return fnv(h, n->str, n->len);
    case KC_NODE_SEQ:
        for (size_t i = 0; i < n->n; i++) {
            uint64_t e = node_hash(n->items[i]);

            h = fnv(h, &e, sizeof(e));
        }
        return h;
    case KC_NODE_MAP:
        for (size_t i = 0; i < n->n; i++)
            sum += node_hash(n->pairs[i].key) * 31 + node_hash(n->pairs[i].val);
        return fnv(h, &sum, sizeof(sum));
    }
    return h;
}

struct hashed {
    uint64_t hash;
    size_t idx;
};

static int hashed_cmp(const void *pa, const void *pb)
{
    const struct hashed *a = pa, *b = pb;

    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* uniqueItems in O(n log n): items sorted by hash, equal hashes compared.
 * Each duplicate names the first item equal to it. */
static void check_unique(const struct kc_node *node, const char *path,
                         struct vres *res)
{
    struct hashed *h = kc_xcalloc(node->n ? node->n : 1, sizeof(*h));
    size_t *dup_of = kc_xcalloc(node->n ? node->n : 1, sizeof(*dup_of));

    for (size_t i = 0; i < node->n; i++) {
        h[i].hash = node_hash(node->items[i]);
        h[i].idx = i;
        dup_of[i] = SIZE_MAX;
    }
    qsort(h, node->n, sizeof(*h), hashed_cmp);
    for (size_t g = 0; g < node->n;) {
        size_t end = g + 1;

        while (end < node->n && h[end].hash == h[g].hash)
            end++;
        /* Within a group, compare with the earlier items that are not
         * themselves duplicates (usually just the first). */
        for (size_t i = g + 1; i < end; i++) {
            for (size_t j = g; j < i; j++) {
                if (dup_of[h[j].idx] != SIZE_MAX)
                    continue;
                if (equals_node(node->items[h[i].idx], node->items[h[j].idx])) {
                    dup_of[h[i].idx] = h[j].idx;
                    break;
                }
            }
        }
        g = end;
    }
    for (size_t i = 0; i < node->n; i++) {
        size_t j = dup_of[i];
        char *ip;

        if (j == SIZE_MAX)
            continue;
        ip = kc_xasprintf("%s[%zu]", path, i);
        res_add(res, node->items[i], NULL, ip, VERR_OTHER, NULL,
                "duplicate of item %zu (line %d)", j,
                node->items[j] ? node->items[j]->pos.line : 0);
        free(ip);
    }
    free(dup_of);
    free(h);
}

static void check_array(struct vctx *cx, struct json_object *sch,
                        const struct kc_node *node, const char *path,
                        const struct kc_pos *keypos, struct vres *res)
{
    struct json_object *items = kw(sch, "items"),
                       *prefix = kw(sch, "prefixItems");
    struct json_object *mini = kw(sch, "minItems"), *maxi = kw(sch, "maxItems");
    size_t nprefix = prefix ? json_object_array_length(prefix) : 0;

    if (node->type != KC_NODE_SEQ)
        return;
    if (mini && node->n < (size_t)json_object_get_int64(mini)) {
        long long m = (long long)json_object_get_int64(mini);

        res_add(res, node, node->n ? NULL : keypos, path, VERR_OTHER, NULL,
                "expected at least %lld item%s, got %zu", m, m == 1 ? "" : "s",
                node->n);
    }
    if (maxi && node->n > (size_t)json_object_get_int64(maxi)) {
        long long m = (long long)json_object_get_int64(maxi);

        res_add(res, node->items[m], NULL, path, VERR_OTHER, NULL,
                "expected at most %lld item%s, got %zu", m, m == 1 ? "" : "s",
                node->n);
    }
    for (size_t i = 0; i < node->n; i++) {
        char *ip = kc_xasprintf("%s[%zu]", path, i);

        if (i < nprefix)
            validate(cx, json_object_array_get_idx(prefix, i), node->items[i],
                     ip, NULL, res);
        else if (json_object_is_type(items, json_type_boolean) &&
                 !json_object_get_boolean(items))
            res_add(res, node->items[i], NULL, path, VERR_OTHER, NULL,
                    "expected at most %zu items, got %zu", nprefix, node->n);
        else if (items)
            validate(cx, items, node->items[i], ip, NULL, res);
        free(ip);
    }
    if (kw_true(sch, "uniqueItems"))
        check_unique(node, path, res);
}

/* ---- combinators ------------------------------------------------------ */

static bool res_has(const struct vres *r, const struct kc_node *node,
                    enum verr_kind kind, const char *aux)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->errs[i].node == node && r->errs[i].kind == kind &&
            (!aux || (r->errs[i].aux && strcmp(r->errs[i].aux, aux) == 0)))
            return true;
    return false;
}

/* Lower is closer: right type first, then required keys present, then an
 * unknown key that looks like a missing one, then fewest errors. */
static long branch_score(const struct vres *r, const struct kc_node *node)
{
    long score = (long)r->n;

    for (size_t i = 0; i < r->n; i++) {
        const struct verr *e = &r->errs[i];

        if (e->node != node)
            continue;
        if (e->kind == VERR_TYPE)
            score += 100000;
        else if (e->kind == VERR_MISSING)
            score += 100;
        else if (e->kind == VERR_MISSING_TYPO)
            score += 60;
        else if (e->kind == VERR_UNKNOWN && e->aux &&
                 res_has(r, node, VERR_MISSING, e->aux))
            score -= 50;
    }
    return score;
}

static void check_combinator(struct vctx *cx, struct json_object *sch,
                             const char *name, const struct kc_node *node,
                             const char *path, const struct kc_pos *keypos,
                             struct vres *res)
{
    struct json_object *arr = kw(sch, name);
    size_t n = json_object_array_length(arr), nvalid = 0, best = 0;
    struct vres *br = kc_xcalloc(n ? n : 1, sizeof(*br));
    bool all_required = true;
    long best_score = 0;

    for (size_t i = 0; i < n; i++) {
        struct json_object *b = json_object_array_get_idx(arr, i);

        validate(cx, b, node, path, keypos, &br[i]);
        if (br[i].n == 0)
            nvalid++;
        if (!required_only(b))
            all_required = false;
    }
    if (strcmp(name, "allOf") == 0) {
        for (size_t i = 0; i < n; i++)
            res_take(res, &br[i]);
        goto out;
    }
    if (nvalid == 1 || (nvalid > 1 && strcmp(name, "anyOf") == 0)) {
        for (size_t i = 0; i < n; i++)
            if (br[i].n == 0)
                res_take(res, &br[i]);
        goto out;
    }
    if (nvalid > 1) {
        struct kc_buf b = { 0 };

        if (all_required && node && node->type == KC_NODE_MAP) {
            size_t k = 0;

            for (size_t i = 0; i < n; i++) {
                struct json_object *req =
                    kw(json_object_array_get_idx(arr, i), "required");

                if (br[i].n)
                    continue;
                kc_buf_addf(
                    &b, "%s'%s'", k++ ? " and " : "",
                    json_object_get_string(json_object_array_get_idx(req, 0)));
            }
            res_add(res, node, keypos, path, VERR_OTHER, NULL,
                    "%s cannot be used together", kc_buf_str(&b));
        } else {
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "matches more than one of the allowed forms");
        }
        kc_buf_release(&b);
        goto out;
    }
    /* Nothing matched. */
    if (all_required && node && node->type == KC_NODE_MAP) {
        struct kc_buf b = { 0 };

        for (size_t i = 0; i < n; i++) {
            struct json_object *req =
                kw(json_object_array_get_idx(arr, i), "required");

            kc_buf_addf(
                &b, "%s'%s'",
                i == 0       ? ""
                : i + 1 == n ? " or "
                             : ", ",
                json_object_get_string(json_object_array_get_idx(req, 0)));
        }
        res_add(res, node, keypos, path, VERR_MISSING, NULL,
                "missing one of %s", kc_buf_str(&b));
        kc_buf_release(&b);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        long s = branch_score(&br[i], node);

        if (i == 0 || s < best_score) {
            best = i;
            best_score = s;
        }
    }
    if (best_score >= 100000) {
        /* No branch has the right type: one message naming them all. */
        struct kc_buf b = { 0 };
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < br[i].n; j++) {
                const struct verr *e = &br[i].errs[j];

                if (e->node != node || e->kind != VERR_TYPE || !e->aux)
                    continue;
                if (strstr(kc_buf_str(&b), e->aux))
                    break;
                if (k++)
                    kc_buf_addstr(&b, " or ");
                kc_buf_addstr(&b, e->aux);
                break;
            }
        }
        res_add(res, node, NULL, path, VERR_TYPE, kc_buf_str(&b),
                "expected %s, got %s", kc_buf_str(&b), describe(node));
        kc_buf_release(&b);
        goto out;
    }
    res_take(res, &br[best]);
out:
    for (size_t i = 0; i < n; i++)
        res_release(&br[i]);
    free(br);
}

/* ---- the walk --------------------------------------------------------- */

static void validate(struct vctx *cx, struct json_object *sch,
                     const struct kc_node *node, const char *path,
                     const struct kc_pos *keypos, struct vres *res)
{
    const char *ref;
    struct json_object *nt;
    size_t before;

    if (json_object_is_type(sch, json_type_boolean)) {
        if (!json_object_get_boolean(sch))
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "no value is allowed here");
        return;
    }
    if (++cx->depth > SCHEMA_MAX_DEPTH) {
        res_add(res, node, NULL, path, VERR_OTHER, NULL,
                "schema nesting too deep");
        cx->depth--;
        return;
    }
    if (kw_true(sch, "writeOnly"))
        res_secret(res, node, path);
    ref = kw_str(sch, "$ref");
    if (ref) {
        before = res->n;
        validate(cx, resolve_ref(cx->schema, ref), node, path, keypos, res);
        /* A type error under $ref makes the rest of this level noise. */
        if (res->n > before && res->errs[res->n - 1].node == node &&
            res->errs[res->n - 1].kind == VERR_TYPE)
            goto out;
    }
    if (!check_type(cx, sch, node, path, res))
        goto out;
    check_enum_const(cx, sch, node, path, res);
    before = res->n;
    check_string(cx, sch, node, path, res);
    /* One complaint per value: a bad string is not also out of range. */
    if (res->n == before)
        check_number(cx, sch, node, path, res);
    if (node && node->type == KC_NODE_MAP)
        check_object(cx, sch, node, path, keypos, res);
    if (node && node->type == KC_NODE_SEQ)
        check_array(cx, sch, node, path, keypos, res);
    if (kw(sch, "allOf"))
        check_combinator(cx, sch, "allOf", node, path, keypos, res);
    if (kw(sch, "anyOf"))
        check_combinator(cx, sch, "anyOf", node, path, keypos, res);
    if (kw(sch, "oneOf"))
        check_combinator(cx, sch, "oneOf", node, path, keypos, res);
    nt = kw(sch, "not");
    if (nt) {
        struct vres tmp = { 0 };

        validate(cx, nt, node, path, keypos, &tmp);
        if (tmp.n == 0)
            res_add(res, node, NULL, path, VERR_OTHER, NULL,
                    "this value is not allowed here");
        res_release(&tmp);
    }
out:
    cx->depth--;
}

/* ---- loading ---------------------------------------------------------- */

static const char *const known_keywords[] = {
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "$ref",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    NULL,
};

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static int add_pattern(struct kc_schema *s, struct json_object *owner,
                       const char *pat, const char *where, struct kc_err *err)
{
    struct schema_pattern *p;
    int rc;

    kc_xgrow(&s->pats, &s->cap, s->npats + 1, sizeof(*s->pats));
    p = &s->pats[s->npats];
    rc = regcomp(&p->re, pat, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];

        regerror(rc, &p->re, msg, sizeof(msg));
        return kc_err_set(err, KC_EINVAL, "%s: bad pattern '%s': %s", where,
                          pat, msg);
    }
    p->owner = owner;
    s->npats++;
    return 0;
}

static int check_schema(struct kc_schema *s, struct json_object *sch,
                        const char *where, int depth, struct kc_err *err);

static int check_schema_map(struct kc_schema *s, struct json_object *map,
                            const char *where, const char *what, int depth,
                            struct kc_err *err)
{
    int ret = 0;

    if (!json_object_is_type(map, json_type_object))
        return kc_err_set(err, KC_EINVAL, "%s/%s: expected an object", where,
                          what);
    json_object_object_foreach (map, k, sub) {
        char *w = kc_xasprintf("%s/%s/%s", where, what, k);

        ret = check_schema(s, sub, w, depth + 1, err);
        free(w);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int check_schema_list(struct kc_schema *s, struct json_object *arr,
                             const char *where, const char *what, int depth,
                             struct kc_err *err)
{
    if (!json_object_is_type(arr, json_type_array))
        return kc_err_set(err, KC_EINVAL, "%s/%s: expected an array", where,
                          what);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        char *w = kc_xasprintf("%s/%s/%zu", where, what, i);
        int ret = check_schema(s, json_object_array_get_idx(arr, i), w,
                               depth + 1, err);

        free(w);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int check_schema(struct kc_schema *s, struct json_object *sch,
                        const char *where, int depth, struct kc_err *err)
{
    static const char *const sub_one[] = {
        "additionalProperties", "propertyNames", "items", "not", NULL,
    };
    static const char *const sub_map[] = {
        "properties",
        "patternProperties",
        "$defs",
        NULL,
    };
    static const char *const sub_list[] = {
        "prefixItems", "oneOf", "anyOf", "allOf", NULL,
    };
    int ret;

    if (depth > SCHEMA_MAX_DEPTH)
        return kc_err_set(err, KC_EINVAL, "%s: schema nested too deep", where);
    if (json_object_is_type(sch, json_type_boolean))
        return 0;
    if (!json_object_is_type(sch, json_type_object))
        return kc_err_set(err, KC_EINVAL, "%s: a schema must be an object",
                          where);
    json_object_object_foreach (sch, k, v) {
        if (!in_list(known_keywords, k))
            return kc_err_set(err, KC_EINVAL, "%s: unsupported keyword '%s'",
                              where, k);
        if (in_list(sub_one, k)) {
            char *w = kc_xasprintf("%s/%s", where, k);

            ret = check_schema(s, v, w, depth + 1, err);
            free(w);
            if (ret < 0)
                return ret;
        } else if (in_list(sub_map, k)) {
            ret = check_schema_map(s, v, where, k, depth, err);
            if (ret < 0)
                return ret;
        } else if (in_list(sub_list, k)) {
            ret = check_schema_list(s, v, where, k, depth, err);
            if (ret < 0)
                return ret;
        } else if (strcmp(k, "type") == 0) {
            size_t n = json_object_is_type(v, json_type_array)
                           ? json_object_array_length(v)
                           : 1;

            for (size_t i = 0; i < n; i++) {
                struct json_object *t = json_object_is_type(v, json_type_array)
                                            ? json_object_array_get_idx(v, i)
                                            : v;

                if (!json_object_is_type(t, json_type_string) ||
                    !type_bit(json_object_get_string(t)))
                    return kc_err_set(err, KC_EINVAL, "%s: bad type '%s'",
                                      where, json_object_get_string(t));
            }
        } else if (strcmp(k, "pattern") == 0) {
            if (!json_object_is_type(v, json_type_string))
                return kc_err_set(err, KC_EINVAL,
                                  "%s: pattern must be a string", where);
            ret = add_pattern(s, sch, json_object_get_string(v), where, err);
            if (ret < 0)
                return ret;
        } else if (strcmp(k, "format") == 0) {
            if (!in_list(known_formats, json_object_get_string(v)))
                return kc_err_set(err, KC_EINVAL, "%s: unsupported format '%s'",
                                  where, json_object_get_string(v));
        } else if (strcmp(k, "$ref") == 0) {
            if (!json_object_is_type(v, json_type_string) ||
                !resolve_ref(s, json_object_get_string(v)))
                return kc_err_set(err, KC_EINVAL, "%s: dangling $ref '%s'",
                                  where, json_object_get_string(v));
        } else if (strcmp(k, "required") == 0 || strcmp(k, "enum") == 0) {
            if (!json_object_is_type(v, json_type_array))
                return kc_err_set(err, KC_EINVAL, "%s: %s must be an array",
                                  where, k);
        }
    }
    /* patternProperties keys are patterns: compile them, owned by the
     * sub-schema they select. */
    if (kw(sch, "patternProperties")) {
        json_object_object_foreach (kw(sch, "patternProperties"), pat, psch) {
            ret = add_pattern(s, psch, pat, where, err);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

int kc_schema_parse(const char *text, size_t len, const char *what,
                    struct kc_schema **out, struct kc_err *err)
{
    struct kc_schema *s = kc_xcalloc(1, sizeof(*s));
    int ret;

    *out = NULL;
    ret = kc_json_parse(text, len, what, &s->root, err);
    if (ret == 0)
        ret = check_schema(s, s->root, "#", 0, err);
    if (ret < 0) {
        kc_err_prefix(err, "schema '%s'", what);
        kc_schema_free(s);
        return ret;
    }
    *out = s;
    return 0;
}

int kc_schema_load(const char *name, struct kc_schema **out, struct kc_err *err)
{
    const char *text = kc_schema_text(name);

    *out = NULL;
    if (!text)
        return kc_err_set(err, KC_ENOENT, "no embedded schema '%s'", name);
    return kc_schema_parse(text, strlen(text), name, out, err);
}

void kc_schema_free(struct kc_schema *schema)
{
    if (!schema)
        return;
    for (size_t i = 0; i < schema->npats; i++)
        regfree(&schema->pats[i].re);
    free(schema->pats);
    json_object_put(schema->root);
    free(schema);
}

/* ---- entry points ----------------------------------------------------- */

static size_t run(const struct kc_schema *schema, const struct kc_node *root,
                  struct kc_diags *diags, struct kc_schema_secrets *secrets)
{
    struct vctx cx = { .schema = schema };
    struct vres res = { 0 };
    size_t n = 0;

    validate(&cx, schema->root, root, "", NULL, &res);
    for (size_t i = 0; i < res.n; i++) {
        if (res.errs[i].kind == VERR_MISSING_TYPO)
            continue;
        kc_diags_add(diags, &res.errs[i].pos, res.errs[i].path, "%s",
                     res.errs[i].msg);
        n++;
    }
    if (secrets) {
        /* In document order, each node once (allOf may match it twice). */
        size_t m = 0;

        for (size_t i = 0; i < res.nsec; i++)
            if (res.sec[i].node)
                res.sec[m++] = res.sec[i];
            else
                free(res.sec[i].path);
        res.nsec = m;
        if (res.nsec > 1)
            qsort(res.sec, res.nsec, sizeof(*res.sec), sec_cmp);
        for (size_t i = 0; i < res.nsec; i++) {
            if (i > 0 && res.sec[i].node == res.sec[i - 1].node)
                continue;
            size_t cap = secrets->cap;

            kc_xgrow(&secrets->nodes, &secrets->cap, secrets->n + 1,
                     sizeof(*secrets->nodes));
            if (secrets->cap != cap || !secrets->paths)
                secrets->paths = kc_xrealloc(
                    secrets->paths, secrets->cap * sizeof(*secrets->paths));
            secrets->nodes[secrets->n] = res.sec[i].node;
            secrets->paths[secrets->n] = res.sec[i].path;
            res.sec[i].path = NULL;
            secrets->n++;
        }
    }
    res_release(&res);
    kc_diags_sort(diags);
    return n;
}

size_t kc_schema_validate_node(const struct kc_schema *schema,
                               const struct kc_node *root,
                               struct kc_diags *diags,
                               struct kc_schema_secrets *secrets)
{
    return run(schema, root, diags, secrets);
}

void kc_schema_secrets_release(struct kc_schema_secrets *secrets)
{
    for (size_t i = 0; i < secrets->n; i++)
        free(secrets->paths[i]);
    free(secrets->paths);
    free(secrets->nodes);
    memset(secrets, 0, sizeof(*secrets));
}

/* json-c values become a temporary node tree (positions: WHAT, line 0), so
 * that one validator serves both. */
static struct kc_node *json_to_node(struct json_object *v, const char *what)
{
    struct kc_node *n = kc_xcalloc(1, sizeof(*n));
    const char *text = NULL;

    n->pos.file = what;
    switch (json_object_get_type(v)) {
    case json_type_object: {
        size_t i = 0;

        n->type = KC_NODE_MAP;
        n->n = (size_t)json_object_object_length(v);
        n->pairs = kc_xcalloc(n->n ? n->n : 1, sizeof(*n->pairs));
        json_object_object_foreach (v, k, m) {
            struct kc_node *key = kc_xcalloc(1, sizeof(*key));

            key->type = KC_NODE_SCALAR;
            key->pos.file = what;
            key->str = kc_xstrdup(k);
            key->len = strlen(k);
            key->quoted = true;
            n->pairs[i].key = key;
            n->pairs[i].val = json_to_node(m, what);
            i++;
        }
        return n;
    }
    case json_type_array:
        n->type = KC_NODE_SEQ;
        n->n = json_object_array_length(v);
        n->items = kc_xcalloc(n->n ? n->n : 1, sizeof(*n->items));
        for (size_t i = 0; i < n->n; i++)
            n->items[i] = json_to_node(json_object_array_get_idx(v, i), what);
        return n;
    case json_type_string:
        n->type = KC_NODE_SCALAR;
        n->len = (size_t)json_object_get_string_len(v);
        n->str = kc_xstrndup(json_object_get_string(v), n->len);
        n->quoted = true;
        return n;
    case json_type_null:
        text = "null";
        break;
    case json_type_boolean:
        text = json_object_get_boolean(v) ? "true" : "false";
        break;
    case json_type_int:
        n->type = KC_NODE_SCALAR;
        n->str = kc_xasprintf("%lld", (long long)json_object_get_int64(v));
        n->len = strlen(n->str);
        return n;
    case json_type_double:
        n->type = KC_NODE_SCALAR;
        n->str = kc_xasprintf("%.17g", json_object_get_double(v));
        if (!strpbrk(n->str, ".eEn")) {
            char *f = kc_xasprintf("%s.0", n->str);

            free(n->str);
            n->str = f;
        }
        n->len = strlen(n->str);
        return n;
    }
    n->type = KC_NODE_SCALAR;
    n->str = kc_xstrdup(text ? text : "null");
    n->len = strlen(n->str);
    return n;
}

static void node_free(struct kc_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; n->type == KC_NODE_MAP && i < n->n; i++) {
        node_free(n->pairs[i].key);
        node_free(n->pairs[i].val);
    }
    for (size_t i = 0; n->type == KC_NODE_SEQ && i < n->n; i++)
        node_free(n->items[i]);
    free(n->pairs);
    free(n->items);
    free(n->str);
    free(n);
}

size_t kc_schema_validate_json(const struct kc_schema *schema,
                               struct json_object *obj, const char *what,
                               struct kc_diags *diags)
{
    struct kc_node *root = obj ? json_to_node(obj, what) : NULL;
    size_t n = run(schema, root, diags, NULL);

    node_free(root);
    return n;
}

int kc_schema_check_json(const char *name, struct json_object *obj,
                         struct kc_err *err)
{
    struct kc_schema *schema = NULL;
    struct kc_diags diags = { 0 };
    int ret = kc_schema_load(name, &schema, err);

    if (ret < 0)
        return ret;
    if (kc_schema_validate_json(schema, obj, name, &diags) > 0) {
        const struct kc_diag *d = &diags.items[0];

        ret = kc_err_set(err, KC_EINVAL, "%s: %zu error%s, first: %s%s%s", name,
                         diags.n, diags.n == 1 ? "" : "s", d->path,
                         d->path[0] ? ": " : "", d->msg);
    }
    kc_diags_release(&diags);
    kc_schema_free(schema);
    return ret;
}
