/* resources/chain/abi.c: Solidity ABI types, head/tail encoding, strict
 * decoding, contract ABIs and revert reasons (Solidity docs, "Contract ABI
 * Specification"). */
#include "resources/chain/abi.h"

#include <ctype.h>

#include "reconcile/json.h"
#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"

/* Bounds on what a type may describe and what a decode may allocate. */
#define ABI_MAX_FARRAY     4096
#define ABI_MAX_TYPE_LEN   1024
#define ABI_DECODE_BUDGET  (1u << 20) /* values + 32-byte chunks of bytes */
#define ABI_FORMAT_MAX_STR 256

/* ---- types ---------------------------------------------------------- */

struct type_parser {
    const char *s;
    size_t pos;
    struct kc_err *err;
};

static int parse_type(struct type_parser *tp, unsigned depth,
                      struct chain_abi_type **out);

static struct chain_abi_type *type_new(enum chain_abi_kind kind, size_t size)
{
    struct chain_abi_type *t = kc_xcalloc(1, sizeof(*t));

    t->kind = kind;
    t->size = size;
    return t;
}

void chain_abi_type_free(struct chain_abi_type *t)
{
    if (!t)
        return;
    chain_abi_type_free(t->elem);
    if (t->kind == CHAIN_ABI_TUPLE && t->members) {
        for (size_t i = 0; i < t->size; i++)
            chain_abi_type_free(t->members[i]);
    }
    free(t->members);
    free(t);
}

static int parse_fail(struct type_parser *tp, const char *what)
{
    return kc_err_set(tp->err, KC_EINVAL, "abi type '%.100s': %s at offset %zu",
                      tp->s, what, tp->pos);
}

/* Reads decimal digits at the cursor; -1 when there are none. */
static long parse_number(struct type_parser *tp)
{
    long v = 0;
    size_t start = tp->pos;

    while (isdigit((unsigned char)tp->s[tp->pos])) {
        v = v * 10 + (tp->s[tp->pos] - '0');
        if (v > 1000000)
            return -1;
        tp->pos++;
    }
    if (tp->pos == start || (tp->s[start] == '0' && tp->pos - start > 1))
        return -1;
    return v;
}

static int parse_elementary(struct type_parser *tp, struct chain_abi_type **out)
{
    static const struct {
        const char *name;
        enum chain_abi_kind kind;
    } names[] = {
        { "address", CHAIN_ABI_ADDRESS }, { "bool", CHAIN_ABI_BOOL },
        { "string", CHAIN_ABI_STRING },   { "uint", CHAIN_ABI_UINT },
        { "int", CHAIN_ABI_INT },         { "bytes", CHAIN_ABI_BYTES },
    };
    size_t start = tp->pos;
    size_t n;
    long num = -1;

    while (isalpha((unsigned char)tp->s[tp->pos]))
        tp->pos++;
    n = tp->pos - start;
    for (size_t i = 0; i < KC_ARRAY_SIZE(names); i++) {
        if (strlen(names[i].name) != n ||
            strncmp(tp->s + start, names[i].name, n) != 0)
            continue;
        if (isdigit((unsigned char)tp->s[tp->pos])) {
            num = parse_number(tp);
            if (num < 0)
                return parse_fail(tp, "bad size");
        }
        switch (names[i].kind) {
        case CHAIN_ABI_UINT:
        case CHAIN_ABI_INT:
            if (num < 0)
                num = 256;
            if (num < 8 || num > 256 || num % 8)
                return parse_fail(tp, "integer size must be 8..256 in 8s");
            *out = type_new(names[i].kind, (size_t)num);
            return 0;
        case CHAIN_ABI_BYTES:
            if (num < 0) {
                *out = type_new(CHAIN_ABI_BYTES, 0);
                return 0;
            }
            if (num < 1 || num > 32)
                return parse_fail(tp, "bytesN size must be 1..32");
            *out = type_new(CHAIN_ABI_FIXED_BYTES, (size_t)num);
            return 0;
        default:
            if (num >= 0)
                return parse_fail(tp, "unexpected size");
            *out = type_new(names[i].kind, 0);
            return 0;
        }
    }
    tp->pos = start;
    return parse_fail(tp, "unknown type");
}

static int parse_tuple(struct type_parser *tp, unsigned depth,
                       struct chain_abi_type **out)
{
    struct chain_abi_type *t = type_new(CHAIN_ABI_TUPLE, 0);
    size_t cap = 0;
    int ret;

    tp->pos++; /* '(' */
    if (tp->s[tp->pos] == ')') {
        tp->pos++;
        *out = t;
        return 0;
    }
    for (;;) {
        struct chain_abi_type *m = NULL;
        if (t->size >= CHAIN_ABI_MAX_PARAMS) {
            ret = parse_fail(tp, "too many tuple members");
            goto fail;
        }
        ret = parse_type(tp, depth + 1, &m);
        if (ret < 0)
            goto fail;
        kc_xgrow(&t->members, &cap, t->size + 1, sizeof(*t->members));
        t->members[t->size++] = m;
        if (tp->s[tp->pos] == ',') {
            tp->pos++;
            continue;
        }
        if (tp->s[tp->pos] == ')') {
            tp->pos++;
            break;
        }
        ret = parse_fail(tp, "expected ',' or ')'");
        goto fail;
    }
    *out = t;
    return 0;
fail:
    chain_abi_type_free(t);
    return ret;
}

static int parse_type(struct type_parser *tp, unsigned depth,
                      struct chain_abi_type **out)
{
    struct chain_abi_type *t = NULL;
    int ret;

    *out = NULL;
    if (depth > CHAIN_ABI_MAX_DEPTH)
        return parse_fail(tp, "nested too deeply");
    if (tp->s[tp->pos] == '(')
        ret = parse_tuple(tp, depth, &t);
    else
        ret = parse_elementary(tp, &t);
    if (ret < 0)
        return ret;
    while (tp->s[tp->pos] == '[') {
        struct chain_abi_type *a;
        long k = -1;
        if (++depth > CHAIN_ABI_MAX_DEPTH) {
            chain_abi_type_free(t);
            return parse_fail(tp, "nested too deeply");
        }
        tp->pos++;
        if (tp->s[tp->pos] != ']') {
            k = parse_number(tp);
            if (k < 1 || k > ABI_MAX_FARRAY) {
                chain_abi_type_free(t);
                return parse_fail(tp, "fixed array size must be 1..4096");
            }
        }
        if (tp->s[tp->pos] != ']') {
            chain_abi_type_free(t);
            return parse_fail(tp, "expected ']'");
        }
        tp->pos++;
        a = type_new(k < 0 ? CHAIN_ABI_ARRAY : CHAIN_ABI_FARRAY,
                     k < 0 ? 0 : (size_t)k);
        a->elem = t;
        t = a;
    }
    *out = t;
    return 0;
}

int chain_abi_type_parse(const char *s, struct chain_abi_type **out,
                         struct kc_err *err)
{
    struct type_parser tp = { s, 0, err };
    int ret;

    *out = NULL;
    if (strlen(s) > ABI_MAX_TYPE_LEN)
        return kc_err_set(err, KC_ERANGE, "abi type over %d bytes",
                          ABI_MAX_TYPE_LEN);
    ret = parse_type(&tp, 0, out);
    if (ret == 0 && s[tp.pos] != '\0') {
        chain_abi_type_free(*out);
        *out = NULL;
        return parse_fail(&tp, "trailing characters");
    }
    return ret;
}

/* Appends the canonical type of a JSON ABI parameter ("tuple" expanded). */
static int json_param_canonical(struct json_object *param, unsigned depth,
                                struct kc_buf *b, struct kc_err *err)
{
    const char *type;
    struct json_object *comps;
    int ret;

    if (depth > CHAIN_ABI_MAX_DEPTH)
        return kc_err_set(err, KC_EINVAL, "abi parameter nested too deeply");
    ret = kc_json_get_str(param, "type", &type, err);
    if (ret < 0)
        return ret;
    if (strncmp(type, "tuple", 5) != 0)
        return kc_buf_addstr(b, type) < 0
                   ? kc_err_set(err, KC_ERANGE, "abi type too long")
                   : 0;
    ret = kc_json_get(param, "components", &comps, err);
    if (ret < 0)
        return ret;
    if (!json_object_is_type(comps, json_type_array))
        return kc_err_set(err, KC_EINVAL, "abi: components is not an array");
    ret = kc_buf_addch(b, '(');
    for (size_t i = 0; ret == 0 && i < json_object_array_length(comps); i++) {
        if (i > 0)
            ret = kc_buf_addch(b, ',');
        if (ret == 0)
            ret = json_param_canonical(json_object_array_get_idx(comps, i),
                                       depth + 1, b, err);
    }
    if (ret == 0)
        ret = kc_buf_addch(b, ')');
    if (ret == 0)
        ret = kc_buf_addstr(b, type + 5); /* the array suffixes */
    if (ret == KC_ERANGE)
        return kc_err_set(err, KC_ERANGE, "abi type too long");
    return ret;
}

int chain_abi_type_from_json(struct json_object *param,
                             struct chain_abi_type **out, struct kc_err *err)
{
    struct kc_buf b;
    int ret;

    kc_buf_init(&b, ABI_MAX_TYPE_LEN);
    *out = NULL;
    ret = json_param_canonical(param, 0, &b, err);
    if (ret == 0)
        ret = chain_abi_type_parse(kc_buf_str(&b), out, err);
    kc_buf_release(&b);
    return ret;
}

int chain_abi_type_canonical(const struct chain_abi_type *t, struct kc_buf *b)
{
    int ret = 0;

    switch (t->kind) {
    case CHAIN_ABI_UINT:
        return kc_buf_addf(b, "uint%zu", t->size);
    case CHAIN_ABI_INT:
        return kc_buf_addf(b, "int%zu", t->size);
    case CHAIN_ABI_ADDRESS:
        return kc_buf_addstr(b, "address");
    case CHAIN_ABI_BOOL:
        return kc_buf_addstr(b, "bool");
    case CHAIN_ABI_FIXED_BYTES:
        return kc_buf_addf(b, "bytes%zu", t->size);
    case CHAIN_ABI_BYTES:
        return kc_buf_addstr(b, "bytes");
    case CHAIN_ABI_STRING:
        return kc_buf_addstr(b, "string");
    case CHAIN_ABI_TUPLE:
        ret = kc_buf_addch(b, '(');
        for (size_t i = 0; ret == 0 && i < t->size; i++) {
            if (i > 0)
                ret = kc_buf_addch(b, ',');
            if (ret == 0)
                ret = chain_abi_type_canonical(t->members[i], b);
        }
        return ret ? ret : kc_buf_addch(b, ')');
    case CHAIN_ABI_ARRAY:
        ret = chain_abi_type_canonical(t->elem, b);
        return ret ? ret : kc_buf_addstr(b, "[]");
    case CHAIN_ABI_FARRAY:
        ret = chain_abi_type_canonical(t->elem, b);
        return ret ? ret : kc_buf_addf(b, "[%zu]", t->size);
    }
    KC_BUG("abi kind %d", (int)t->kind);
}

bool chain_abi_type_is_dynamic(const struct chain_abi_type *t)
{
    switch (t->kind) {
    case CHAIN_ABI_BYTES:
    case CHAIN_ABI_STRING:
    case CHAIN_ABI_ARRAY:
        return true;
    case CHAIN_ABI_FARRAY:
        return chain_abi_type_is_dynamic(t->elem);
    case CHAIN_ABI_TUPLE:
        for (size_t i = 0; i < t->size; i++)
            if (chain_abi_type_is_dynamic(t->members[i]))
                return true;
        return false;
    default:
        return false;
    }
}

/* Bytes T takes in the head of its enclosing tuple. Bounded by the type
 * limits (depth 16, arrays of at most 4096): saturates instead of
 * overflowing. */
static size_t head_size(const struct chain_abi_type *t)
{
    size_t s = 0;

    if (chain_abi_type_is_dynamic(t))
        return 32;
    if (t->kind == CHAIN_ABI_TUPLE) {
        for (size_t i = 0; i < t->size; i++) {
            size_t m = head_size(t->members[i]);
            s = s > SIZE_MAX - m ? SIZE_MAX : s + m;
        }
        return s;
    }
    if (t->kind == CHAIN_ABI_FARRAY) {
        size_t e = head_size(t->elem);
        return e > SIZE_MAX / t->size ? SIZE_MAX : e * t->size;
    }
    return 32;
}

/* ---- values --------------------------------------------------------- */

void chain_abi_val_uint(struct chain_abi_value *v, uint64_t x)
{
    memset(v, 0, sizeof(*v));
    v->kind = CHAIN_ABI_UINT;
    chain_u256_from_u64(x, v->word);
}

void chain_abi_val_address(struct chain_abi_value *v, const uint8_t a[20])
{
    memset(v, 0, sizeof(*v));
    v->kind = CHAIN_ABI_ADDRESS;
    memcpy(v->word + 12, a, 20);
}

void chain_abi_val_bool(struct chain_abi_value *v, bool b)
{
    memset(v, 0, sizeof(*v));
    v->kind = CHAIN_ABI_BOOL;
    v->word[31] = b ? 1 : 0;
}

void chain_abi_val_bytes32(struct chain_abi_value *v, const uint8_t b[32])
{
    memset(v, 0, sizeof(*v));
    v->kind = CHAIN_ABI_FIXED_BYTES;
    memcpy(v->word, b, 32);
}

void chain_abi_val_bytes(struct chain_abi_value *v, const void *p, size_t len)
{
    memset(v, 0, sizeof(*v));
    v->kind = CHAIN_ABI_BYTES;
    v->bytes = kc_xmalloc(len + 1);
    if (len)
        memcpy(v->bytes, p, len);
    v->bytes[len] = 0;
    v->len = len;
}

void chain_abi_val_string(struct chain_abi_value *v, const char *s)
{
    chain_abi_val_bytes(v, s, strlen(s));
    v->kind = CHAIN_ABI_STRING;
}

void chain_abi_val_list(struct chain_abi_value *v, enum chain_abi_kind kind,
                        size_t n)
{
    memset(v, 0, sizeof(*v));
    v->kind = kind;
    v->n = n;
    v->items = n ? kc_xcalloc(n, sizeof(*v->items)) : NULL;
}

void chain_abi_value_release(struct chain_abi_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n && v->items; i++)
        chain_abi_value_release(&v->items[i]);
    free(v->items);
    free(v->bytes);
    memset(v, 0, sizeof(*v));
}

void chain_abi_values_free(struct chain_abi_value *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        chain_abi_value_release(&v[i]);
    free(v);
}

/* ---- encoding ------------------------------------------------------- */

/* The position of the value being encoded or decoded ("args[1][3]"), for
 * errors; truncated quietly when deeper than it can hold. */
struct abi_path {
    char s[160];
    size_t len;
};

static size_t path_push(struct abi_path *p, size_t i)
{
    size_t mark = p->len;
    int n = snprintf(p->s + p->len, sizeof(p->s) - p->len, "[%zu]", i);

    if (n > 0 && (size_t)n < sizeof(p->s) - p->len)
        p->len += (size_t)n;
    else
        p->s[mark] = '\0';
    return mark;
}

static void path_pop(struct abi_path *p, size_t mark)
{
    p->len = mark;
    p->s[mark] = '\0';
}

static int encode_value(const struct chain_abi_type *t,
                        const struct chain_abi_value *v, struct kc_buf *out,
                        struct abi_path *path, struct kc_err *err);

static int value_mismatch(struct abi_path *path, const struct chain_abi_type *t,
                          const char *why, struct kc_err *err)
{
    struct kc_buf tb = { 0 };
    int ret;

    chain_abi_type_canonical(t, &tb);
    ret = kc_err_set(err, KC_EINVAL, "abi: %s: value for %s: %s", path->s,
                     kc_buf_str(&tb), why);
    kc_buf_release(&tb);
    return ret;
}

static bool kind_matches(const struct chain_abi_type *t,
                         const struct chain_abi_value *v)
{
    if (t->kind == v->kind)
        return true;
    /* A uint value may be given for an int type, bytes32 for bytesN. */
    return (t->kind == CHAIN_ABI_INT && v->kind == CHAIN_ABI_UINT);
}

static int check_word(const struct chain_abi_type *t, const uint8_t *w)
{
    size_t nbytes;

    switch (t->kind) {
    case CHAIN_ABI_UINT:
        nbytes = t->size / 8;
        return chain_is_zero(w, 32 - nbytes) ? 0 : -1;
    case CHAIN_ABI_INT: {
        /* Sign extension: the top bytes repeat the sign bit. */
        nbytes = t->size / 8;
        uint8_t fill = (w[32 - nbytes] & 0x80) ? 0xff : 0x00;
        for (size_t i = 0; i < 32 - nbytes; i++)
            if (w[i] != fill)
                return -1;
        return 0;
    }
    case CHAIN_ABI_ADDRESS:
        return chain_is_zero(w, 12) ? 0 : -1;
    case CHAIN_ABI_BOOL:
        return chain_is_zero(w, 31) && w[31] <= 1 ? 0 : -1;
    case CHAIN_ABI_FIXED_BYTES:
        return chain_is_zero(w + t->size, 32 - t->size) ? 0 : -1;
    default:
        return -1;
    }
}

static int add_word_len(struct kc_buf *out, size_t len)
{
    uint8_t w[32];

    chain_u256_from_u64((uint64_t)len, w);
    return kc_buf_add(out, w, 32);
}

/* Encodes N values as a tuple; with STRIDE 0 every value has TYPES[0]. */
static int encode_seq(struct chain_abi_type *const *types, size_t stride,
                      const struct chain_abi_value *vals, size_t n,
                      struct kc_buf *out, struct abi_path *path,
                      struct kc_err *err)
{
    struct kc_buf tail = { 0 };
    size_t heads = 0;
    int ret = 0;

    for (size_t i = 0; i < n; i++)
        heads += head_size(types[i * stride]);
    for (size_t i = 0; i < n && ret == 0; i++) {
        const struct chain_abi_type *t = types[i * stride];
        size_t mark = path_push(path, i);
        if (chain_abi_type_is_dynamic(t)) {
            ret = add_word_len(out, heads + tail.len);
            if (ret == 0)
                ret = encode_value(t, &vals[i], &tail, path, err);
        } else {
            ret = encode_value(t, &vals[i], out, path, err);
        }
        path_pop(path, mark);
    }
    if (ret == 0)
        ret = kc_buf_add(out, tail.data, tail.len);
    kc_buf_release(&tail);
    return ret;
}

static int encode_value(const struct chain_abi_type *t,
                        const struct chain_abi_value *v, struct kc_buf *out,
                        struct abi_path *path, struct kc_err *err)
{
    static const uint8_t zeros[32];
    int ret;

    if (!kind_matches(t, v))
        return value_mismatch(path, t, "wrong kind of value", err);
    switch (t->kind) {
    case CHAIN_ABI_UINT:
    case CHAIN_ABI_INT:
    case CHAIN_ABI_ADDRESS:
    case CHAIN_ABI_BOOL:
    case CHAIN_ABI_FIXED_BYTES:
        if (check_word(t, v->word) < 0)
            return value_mismatch(path, t, "out of range", err);
        return kc_buf_add(out, v->word, 32);
    case CHAIN_ABI_BYTES:
    case CHAIN_ABI_STRING:
        ret = add_word_len(out, v->len);
        if (ret == 0 && v->len)
            ret = kc_buf_add(out, v->bytes, v->len);
        if (ret == 0 && v->len % 32)
            ret = kc_buf_add(out, zeros, 32 - v->len % 32);
        return ret;
    case CHAIN_ABI_TUPLE:
        if (v->n != t->size)
            return value_mismatch(path, t, "wrong number of members", err);
        return encode_seq(t->members, 1, v->items, v->n, out, path, err);
    case CHAIN_ABI_FARRAY:
        if (v->n != t->size)
            return value_mismatch(path, t, "wrong number of elements", err);
        return encode_seq(&t->elem, 0, v->items, v->n, out, path, err);
    case CHAIN_ABI_ARRAY:
        ret = add_word_len(out, v->n);
        if (ret == 0)
            ret = encode_seq(&t->elem, 0, v->items, v->n, out, path, err);
        return ret;
    }
    KC_BUG("abi kind %d", (int)t->kind);
}

int chain_abi_encode(struct chain_abi_type *const *types,
                     const struct chain_abi_value *vals, size_t n,
                     struct kc_buf *out, struct kc_err *err)
{
    struct abi_path path = { "args", 4 };
    int ret;

    ret = encode_seq(types, 1, vals, n, out, &path, err);
    if (ret < 0 && (!err || err->code == 0))
        ret = kc_err_set(err, ret, "abi: encoding: %s", kc_strerror(ret));
    return ret;
}

/* ---- decoding ------------------------------------------------------- */

struct decoder {
    size_t budget;
    struct abi_path path;
    struct kc_err *err;
};

static int decode_fail(struct decoder *d, const char *why)
{
    return kc_err_set(d->err, KC_EPARSE, "abi: %s: %s", d->path.s, why);
}

static int spend(struct decoder *d, size_t units)
{
    if (units > d->budget)
        return decode_fail(d, "decoded value too large");
    d->budget -= units;
    return 0;
}

/* Reads a 32-byte word as a length or offset that must fit in LIMIT. */
static int read_size(struct decoder *d, const uint8_t *p, size_t limit,
                     size_t *out)
{
    uint64_t v;

    if (chain_u256_to_u64(p, &v) < 0 || v > limit)
        return decode_fail(d, "offset or length out of range");
    *out = (size_t)v;
    return 0;
}

static int decode_value(struct decoder *d, const struct chain_abi_type *t,
                        const uint8_t *p, size_t len,
                        struct chain_abi_value *v);

static int decode_seq(struct decoder *d, struct chain_abi_type *const *types,
                      size_t stride, size_t n, const uint8_t *p, size_t len,
                      struct chain_abi_value *vals)
{
    size_t pos = 0;
    int ret = 0;

    for (size_t i = 0; i < n && ret == 0; i++) {
        const struct chain_abi_type *t = types[i * stride];
        size_t hs = head_size(t);
        size_t mark = path_push(&d->path, i);
        if (hs > len - pos) {
            ret = decode_fail(d, "data too short");
        } else if (chain_abi_type_is_dynamic(t)) {
            size_t off = 0;
            ret = read_size(d, p + pos, len, &off);
            if (ret == 0)
                ret = decode_value(d, t, p + off, len - off, &vals[i]);
        } else {
            ret = decode_value(d, t, p + pos, len - pos, &vals[i]);
        }
        pos += hs;
        path_pop(&d->path, mark);
    }
    return ret;
}

static int decode_value(struct decoder *d, const struct chain_abi_type *t,
                        const uint8_t *p, size_t len, struct chain_abi_value *v)
{
    size_t n =
        0; /* set by every branch; gcc -O2 cannot see read_size() fail < 0 */
    int ret;

    memset(v, 0, sizeof(*v));
    v->kind = t->kind;
    ret = spend(d, 1);
    if (ret < 0)
        return ret;
    switch (t->kind) {
    case CHAIN_ABI_UINT:
    case CHAIN_ABI_INT:
    case CHAIN_ABI_ADDRESS:
    case CHAIN_ABI_BOOL:
    case CHAIN_ABI_FIXED_BYTES:
        if (len < 32)
            return decode_fail(d, "data too short");
        if (check_word(t, p) < 0)
            return decode_fail(d, "value has dirty high bits");
        memcpy(v->word, p, 32);
        return 0;
    case CHAIN_ABI_BYTES:
    case CHAIN_ABI_STRING:
        if (len < 32)
            return decode_fail(d, "data too short");
        ret = read_size(d, p, len - 32, &n);
        if (ret == 0)
            ret = spend(d, n / 32);
        if (ret < 0)
            return ret;
        v->bytes = kc_xmalloc(n + 1);
        if (n)
            memcpy(v->bytes, p + 32, n);
        v->bytes[n] = 0;
        v->len = n;
        return 0;
    case CHAIN_ABI_TUPLE:
        v->n = t->size;
        v->items = t->size ? kc_xcalloc(t->size, sizeof(*v->items)) : NULL;
        return decode_seq(d, t->members, 1, t->size, p, len, v->items);
    case CHAIN_ABI_FARRAY:
    case CHAIN_ABI_ARRAY:
        if (t->kind == CHAIN_ABI_FARRAY) {
            n = t->size;
        } else {
            if (len < 32)
                return decode_fail(d, "data too short");
            size_t hs = head_size(t->elem);
            ret = read_size(d, p, (len - 32) / (hs ? hs : 1), &n);
            if (ret < 0)
                return ret;
            p += 32;
            len -= 32;
        }
        ret = spend(d, n);
        if (ret < 0)
            return ret;
        v->n = n;
        v->items = n ? kc_xcalloc(n, sizeof(*v->items)) : NULL;
        return decode_seq(d, &t->elem, 0, n, p, len, v->items);
    }
    KC_BUG("abi kind %d", (int)t->kind);
}

int chain_abi_decode(struct chain_abi_type *const *types, size_t n,
                     const uint8_t *data, size_t len,
                     struct chain_abi_value **out, struct kc_err *err)
{
    struct decoder d = { ABI_DECODE_BUDGET, { "args", 4 }, err };
    struct chain_abi_value *vals;
    int ret;

    *out = NULL;
    vals = kc_xcalloc(n ? n : 1, sizeof(*vals));
    ret = decode_seq(&d, types, 1, n, data ? data : (const uint8_t *)"", len,
                     vals);
    if (ret < 0) {
        chain_abi_values_free(vals, n);
        return ret;
    }
    *out = vals;
    return 0;
}

/* ---- formatting ----------------------------------------------------- */

/* Appends the decimal digits of the big-endian 256-bit W. */
static int add_decimal(struct kc_buf *b, const uint8_t w[32])
{
    uint8_t n[32];
    char digits[80];
    size_t nd = 0;

    memcpy(n, w, 32);
    do {
        unsigned rem = 0;
        for (int i = 0; i < 32; i++) {
            unsigned cur = rem << 8 | n[i];
            n[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
        }
        digits[nd++] = (char)('0' + rem);
    } while (!chain_is_zero(n, 32));
    for (size_t i = 0; i < nd / 2; i++) {
        char c = digits[i];
        digits[i] = digits[nd - 1 - i];
        digits[nd - 1 - i] = c;
    }
    return kc_buf_add(b, digits, nd);
}

/* Appends S quoted, escaping what is not printable ASCII. */
static int add_quoted(struct kc_buf *b, const uint8_t *s, size_t len)
{
    int ret = kc_buf_addch(b, '"');
    size_t n = len > ABI_FORMAT_MAX_STR ? ABI_FORMAT_MAX_STR : len;

    for (size_t i = 0; i < n && ret == 0; i++) {
        if (s[i] == '"' || s[i] == '\\')
            ret = kc_buf_addf(b, "\\%c", s[i]);
        else if (s[i] >= 0x20 && s[i] < 0x7f)
            ret = kc_buf_addch(b, (char)s[i]);
        else
            ret = kc_buf_addf(b, "\\x%02x", s[i]);
    }
    if (ret == 0 && n < len)
        ret = kc_buf_addf(b, "...(%zu bytes)", len);
    return ret ? ret : kc_buf_addch(b, '"');
}

int chain_abi_value_format(const struct chain_abi_type *t,
                           const struct chain_abi_value *v, struct kc_buf *b)
{
    char addr[43];
    int ret = 0;

    switch (t->kind) {
    case CHAIN_ABI_UINT:
        return add_decimal(b, v->word);
    case CHAIN_ABI_INT:
        if (v->word[0] & 0x80) {
            uint8_t neg[32];
            unsigned carry = 1;
            for (int i = 31; i >= 0; i--) {
                unsigned x = (uint8_t)~v->word[i] + carry;
                neg[i] = (uint8_t)x;
                carry = x >> 8;
            }
            ret = kc_buf_addch(b, '-');
            return ret ? ret : add_decimal(b, neg);
        }
        return add_decimal(b, v->word);
    case CHAIN_ABI_ADDRESS:
        chain_address_format(v->word + 12, addr);
        return kc_buf_addstr(b, addr);
    case CHAIN_ABI_BOOL:
        return kc_buf_addstr(b, v->word[31] ? "true" : "false");
    case CHAIN_ABI_FIXED_BYTES:
        return chain_hex_add(b, v->word, t->size);
    case CHAIN_ABI_BYTES:
        return chain_hex_add(b, v->bytes, v->len);
    case CHAIN_ABI_STRING:
        return add_quoted(b, v->bytes, v->len);
    case CHAIN_ABI_TUPLE:
    case CHAIN_ABI_ARRAY:
    case CHAIN_ABI_FARRAY:
        ret = kc_buf_addch(b, t->kind == CHAIN_ABI_TUPLE ? '(' : '[');
        for (size_t i = 0; i < v->n && ret == 0; i++) {
            if (i > 0)
                ret = kc_buf_addstr(b, ", ");
            if (ret == 0)
                ret = chain_abi_value_format(
                    t->kind == CHAIN_ABI_TUPLE ? t->members[i] : t->elem,
                    &v->items[i], b);
        }
        return ret ? ret
                   : kc_buf_addch(b, t->kind == CHAIN_ABI_TUPLE ? ')' : ']');
    }
    KC_BUG("abi kind %d", (int)t->kind);
}

/* ---- entries and contract ABIs -------------------------------------- */

void chain_abi_entry_free(struct chain_abi_entry *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nin; i++) {
        chain_abi_type_free(e->in[i]);
        if (e->in_names)
            free(e->in_names[i]);
    }
    for (size_t i = 0; i < e->nout; i++)
        chain_abi_type_free(e->out[i]);
    free(e->in);
    free(e->in_names);
    free(e->in_indexed);
    free(e->out);
    free(e->name);
    free(e->signature);
    free(e);
}

/* Fills signature, selector and topic from name and inputs. */
static void entry_finish(struct chain_abi_entry *e)
{
    struct kc_buf b = { 0 };
    uint8_t h[32];

    kc_buf_addstr(&b, e->name ? e->name : "");
    kc_buf_addch(&b, '(');
    for (size_t i = 0; i < e->nin; i++) {
        if (i > 0)
            kc_buf_addch(&b, ',');
        chain_abi_type_canonical(e->in[i], &b);
    }
    kc_buf_addch(&b, ')');
    e->signature = kc_buf_detach(&b, NULL);
    chain_keccak256(e->signature, strlen(e->signature), h);
    memcpy(e->selector, h, 4);
    memcpy(e->topic, h, 32);
}

/* Moves the members of tuple type T into a parameter list. */
static void take_members(struct chain_abi_type *t, struct chain_abi_type ***out,
                         size_t *n)
{
    *out = t->members;
    *n = t->size;
    t->members = NULL;
    t->size = 0;
    chain_abi_type_free(t);
}

int chain_abi_entry_parse(const char *signature, const char *outputs,
                          enum chain_abi_entry_kind kind,
                          struct chain_abi_entry **out, struct kc_err *err)
{
    const char *paren = strchr(signature, '(');
    struct chain_abi_type *t = NULL;
    struct chain_abi_entry *e;
    int ret;

    *out = NULL;
    if (!paren || paren == signature)
        return kc_err_set(err, KC_EINVAL,
                          "abi signature '%.100s': expected name(types)",
                          signature);
    for (const char *c = signature; c < paren; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '$')
            return kc_err_set(err, KC_EINVAL,
                              "abi signature '%.100s': bad name", signature);
    ret = chain_abi_type_parse(paren, &t, err);
    if (ret < 0)
        return ret;
    if (t->kind != CHAIN_ABI_TUPLE) {
        chain_abi_type_free(t);
        return kc_err_set(err, KC_EINVAL,
                          "abi signature '%.100s': expected name(types)",
                          signature);
    }
    e = kc_xcalloc(1, sizeof(*e));
    e->kind = kind;
    e->name = kc_xstrndup(signature, (size_t)(paren - signature));
    take_members(t, &e->in, &e->nin);
    e->in_names = kc_xcalloc(e->nin ? e->nin : 1, sizeof(char *));
    e->in_indexed = kc_xcalloc(e->nin ? e->nin : 1, sizeof(bool));
    if (outputs) {
        ret = chain_abi_type_parse(outputs, &t, err);
        if (ret == 0 && t->kind != CHAIN_ABI_TUPLE) {
            chain_abi_type_free(t);
            ret = kc_err_set(err, KC_EINVAL,
                             "abi outputs '%.100s': expected (types)", outputs);
        }
        if (ret < 0) {
            chain_abi_entry_free(e);
            return ret;
        }
        take_members(t, &e->out, &e->nout);
    }
    entry_finish(e);
    *out = e;
    return 0;
}

int chain_abi_encode_call(const struct chain_abi_entry *fn,
                          const struct chain_abi_value *args, size_t nargs,
                          struct kc_buf *out, struct kc_err *err)
{
    int ret;

    if (nargs != fn->nin)
        return kc_err_set(err, KC_EINVAL,
                          "abi: %s takes %zu arguments, got %zu", fn->signature,
                          fn->nin, nargs);
    ret = kc_buf_add(out, fn->selector, 4);
    if (ret == 0)
        ret = chain_abi_encode(fn->in, args, nargs, out, err);
    if (ret < 0)
        kc_err_prefix(err, "%s", fn->signature);
    return ret;
}

static int params_from_json(struct json_object *arr, const char *what,
                            struct chain_abi_type ***types, char ***names,
                            bool **indexed, size_t *n, struct kc_err *err)
{
    size_t len;
    int ret = 0;

    *n = 0;
    if (!arr)
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return kc_err_set(err, KC_EINVAL, "abi: %s is not an array", what);
    len = json_object_array_length(arr);
    if (len > CHAIN_ABI_MAX_PARAMS)
        return kc_err_set(err, KC_ERANGE, "abi: %s: too many parameters", what);
    *types = kc_xcalloc(len ? len : 1, sizeof(**types));
    if (names)
        *names = kc_xcalloc(len ? len : 1, sizeof(**names));
    if (indexed)
        *indexed = kc_xcalloc(len ? len : 1, sizeof(**indexed));
    for (size_t i = 0; i < len && ret == 0; i++) {
        struct json_object *p = json_object_array_get_idx(arr, i);
        ret = chain_abi_type_from_json(p, &(*types)[i], err);
        if (ret < 0) {
            kc_err_prefix(err, "abi: %s[%zu]", what, i);
            break;
        }
        *n = i + 1;
        if (names)
            (*names)[i] = kc_xstrdup(
                kc_json_opt_str(p, "name") ? kc_json_opt_str(p, "name") : "");
        if (indexed) {
            bool b = false;
            if (kc_json_get_bool(p, "indexed", &b, NULL) == 0)
                (*indexed)[i] = b;
        }
    }
    return ret;
}

static int entry_from_json(struct json_object *j, size_t idx,
                           struct chain_abi_entry **out, struct kc_err *err)
{
    static const struct {
        const char *type;
        enum chain_abi_entry_kind kind;
    } kinds[] = {
        { "function", CHAIN_ABI_FUNCTION },
        { "event", CHAIN_ABI_EVENT },
        { "error", CHAIN_ABI_ERROR },
        { "constructor", CHAIN_ABI_CONSTRUCTOR },
    };
    const char *type = kc_json_opt_str(j, "type");
    const char *name = kc_json_opt_str(j, "name");
    struct json_object *in = NULL, *outs = NULL;
    struct chain_abi_entry *e;
    enum chain_abi_entry_kind kind = 0;
    int ret;

    *out = NULL;
    if (!type)
        type = "function"; /* the type defaults to function (ABI spec) */
    for (size_t i = 0; i < KC_ARRAY_SIZE(kinds); i++)
        if (strcmp(type, kinds[i].type) == 0)
            kind = kinds[i].kind;
    if (kind == 0)
        return 0; /* fallback, receive */
    if (kind != CHAIN_ABI_CONSTRUCTOR && !name)
        return kc_err_set(err, KC_EINVAL, "abi[%zu]: %s without a name", idx,
                          type);
    e = kc_xcalloc(1, sizeof(*e));
    e->kind = kind;
    e->name = kc_xstrdup(name ? name : "");
    json_object_object_get_ex(j, "inputs", &in);
    json_object_object_get_ex(j, "outputs", &outs);
    ret = params_from_json(in, "inputs", &e->in, &e->in_names, &e->in_indexed,
                           &e->nin, err);
    if (ret == 0)
        ret = params_from_json(outs, "outputs", &e->out, NULL, NULL, &e->nout,
                               err);
    if (ret < 0) {
        kc_err_prefix(err, "abi[%zu] '%.100s'", idx, e->name);
        chain_abi_entry_free(e);
        return ret;
    }
    entry_finish(e);
    *out = e;
    return 0;
}

int chain_abi_from_json(struct json_object *arr, struct chain_abi **out,
                        struct kc_err *err)
{
    struct chain_abi *abi;
    size_t len, cap = 0;

    *out = NULL;
    if (!arr || !json_object_is_type(arr, json_type_array))
        return kc_err_set(err, KC_EINVAL, "abi: expected a JSON array");
    len = json_object_array_length(arr);
    abi = kc_xcalloc(1, sizeof(*abi));
    for (size_t i = 0; i < len; i++) {
        struct chain_abi_entry *e = NULL;
        struct json_object *j = json_object_array_get_idx(arr, i);
        int ret;
        if (!json_object_is_type(j, json_type_object)) {
            chain_abi_free(abi);
            return kc_err_set(err, KC_EINVAL, "abi[%zu]: not an object", i);
        }
        ret = entry_from_json(j, i, &e, err);
        if (ret < 0) {
            chain_abi_free(abi);
            return ret;
        }
        if (!e)
            continue;
        kc_xgrow(&abi->entries, &cap, abi->n + 1, sizeof(*abi->entries));
        abi->entries[abi->n++] = e;
    }
    *out = abi;
    return 0;
}

void chain_abi_free(struct chain_abi *abi)
{
    if (!abi)
        return;
    for (size_t i = 0; i < abi->n; i++)
        chain_abi_entry_free(abi->entries[i]);
    free(abi->entries);
    free(abi);
}

const struct chain_abi_entry *chain_abi_find(const struct chain_abi *abi,
                                             enum chain_abi_entry_kind kind,
                                             const char *name)
{
    for (size_t i = 0; abi && i < abi->n; i++) {
        const struct chain_abi_entry *e = abi->entries[i];
        if (e->kind == kind &&
            (strcmp(e->name, name) == 0 || strcmp(e->signature, name) == 0))
            return e;
    }
    return NULL;
}

const struct chain_abi_entry *chain_abi_find_error(const struct chain_abi *abi,
                                                   const uint8_t selector[4])
{
    for (size_t i = 0; abi && i < abi->n; i++)
        if (abi->entries[i]->kind == CHAIN_ABI_ERROR &&
            memcmp(abi->entries[i]->selector, selector, 4) == 0)
            return abi->entries[i];
    return NULL;
}

const struct chain_abi_entry *chain_abi_find_event(const struct chain_abi *abi,
                                                   const uint8_t topic[32])
{
    for (size_t i = 0; abi && i < abi->n; i++)
        if (abi->entries[i]->kind == CHAIN_ABI_EVENT &&
            memcmp(abi->entries[i]->topic, topic, 32) == 0)
            return abi->entries[i];
    return NULL;
}

/* ---- reverts and logs ----------------------------------------------- */

static const char *panic_reason(uint64_t code)
{
    switch (code) {
    case 0x00:
        return "generic panic";
    case 0x01:
        return "assertion failed";
    case 0x11:
        return "arithmetic overflow or underflow";
    case 0x12:
        return "division or modulo by zero";
    case 0x21:
        return "invalid enum value";
    case 0x22:
        return "invalid storage byte array";
    case 0x31:
        return "pop on an empty array";
    case 0x32:
        return "array index out of bounds";
    case 0x41:
        return "out of memory";
    case 0x51:
        return "call to a zero function pointer";
    default:
        return "unknown panic code";
    }
}

/* Decodes DATA (after the selector) with the inputs of E and appends
 * "Name(v1, v2)". */
static int describe_with(const struct chain_abi_entry *e, const uint8_t *data,
                         size_t len, struct kc_buf *out)
{
    struct chain_abi_value *vals = NULL;
    int ret = chain_abi_decode(e->in, e->nin, data, len, &vals, NULL);

    if (ret < 0)
        return ret;
    ret = kc_buf_addf(out, "%s(", e->name);
    for (size_t i = 0; i < e->nin && ret == 0; i++) {
        if (i > 0)
            ret = kc_buf_addstr(out, ", ");
        if (ret == 0)
            ret = chain_abi_value_format(e->in[i], &vals[i], out);
    }
    if (ret == 0)
        ret = kc_buf_addch(out, ')');
    chain_abi_values_free(vals, e->nin);
    return ret;
}

int chain_abi_describe_revert(const struct chain_abi *abi, const uint8_t *data,
                              size_t len, struct kc_buf *out)
{
    static const uint8_t sel_error[4] = { 0x08, 0xc3, 0x79, 0xa0 };
    static const uint8_t sel_panic[4] = { 0x4e, 0x48, 0x7b, 0x71 };
    const struct chain_abi_entry *e;
    struct chain_abi_entry *builtin = NULL;
    int ret;

    if (len == 0)
        return kc_buf_addstr(out, "reverted without a reason");
    if (len >= 4 && memcmp(data, sel_error, 4) == 0) {
        if (chain_abi_entry_parse("Error(string)", NULL, CHAIN_ABI_ERROR,
                                  &builtin, NULL) < 0)
            KC_BUG("Error(string)");
        struct kc_buf tmp = { 0 };
        ret = describe_with(builtin, data + 4, len - 4, &tmp);
        chain_abi_entry_free(builtin);
        if (ret == 0)
            ret = kc_buf_add(out, tmp.data, tmp.len);
        kc_buf_release(&tmp);
        if (ret == 0)
            return 0;
    } else if (len == 36 && memcmp(data, sel_panic, 4) == 0) {
        uint64_t code;
        char hex[19];
        if (chain_u256_to_u64(data + 4, &code) == 0) {
            chain_quantity_format(code, hex);
            return kc_buf_addf(out, "Panic(%s: %s)", hex, panic_reason(code));
        }
    } else if (len >= 4 && (e = chain_abi_find_error(abi, data)) != NULL) {
        struct kc_buf tmp = { 0 };
        ret = describe_with(e, data + 4, len - 4, &tmp);
        if (ret == 0)
            ret = kc_buf_add(out, tmp.data, tmp.len);
        kc_buf_release(&tmp);
        if (ret == 0)
            return 0;
        /* Undecodable arguments: fall back to the raw description. */
    }
    if (len < 4)
        return kc_buf_addf(out, "reverted with %zu bytes of data", len);
    return kc_buf_addf(out, "unknown error 0x%02x%02x%02x%02x (%zu bytes)",
                       data[0], data[1], data[2], data[3], len);
}

int chain_abi_decode_log(const struct chain_abi_entry *ev,
                         const uint8_t (*topics)[32], size_t ntopics,
                         const uint8_t *data, size_t len,
                         struct chain_abi_value **out, struct kc_err *err)
{
    struct chain_abi_type **plain = NULL;
    struct chain_abi_value *vals = NULL, *dec = NULL;
    size_t nplain = 0, nindexed = 0, ti = 1, di = 0;
    int ret;

    *out = NULL;
    for (size_t i = 0; i < ev->nin; i++)
        nindexed += ev->in_indexed[i] ? 1 : 0;
    if (ntopics != nindexed + 1 || memcmp(topics[0], ev->topic, 32) != 0)
        return kc_err_set(err, KC_EPARSE, "log is not a %s event (%zu topics)",
                          ev->signature, ntopics);
    plain = kc_xcalloc(ev->nin ? ev->nin : 1, sizeof(*plain));
    for (size_t i = 0; i < ev->nin; i++)
        if (!ev->in_indexed[i])
            plain[nplain++] = ev->in[i];
    ret = chain_abi_decode(plain, nplain, data, len, &dec, err);
    if (ret < 0)
        goto out;
    vals = kc_xcalloc(ev->nin ? ev->nin : 1, sizeof(*vals));
    for (size_t i = 0; i < ev->nin; i++) {
        const struct chain_abi_type *t = ev->in[i];
        if (!ev->in_indexed[i]) {
            vals[i] = dec[di];
            memset(&dec[di++], 0, sizeof(*dec));
            continue;
        }
        if (chain_abi_type_is_dynamic(t) || t->kind == CHAIN_ABI_TUPLE ||
            t->kind == CHAIN_ABI_FARRAY) {
            chain_abi_val_bytes32(&vals[i], topics[ti++]);
            continue;
        }
        if (check_word(t, topics[ti]) < 0) {
            ret = kc_err_set(err, KC_EPARSE, "%s: topic %zu out of range",
                             ev->signature, ti);
            goto out;
        }
        vals[i].kind = t->kind;
        memcpy(vals[i].word, topics[ti++], 32);
    }
    *out = vals;
    vals = NULL;
out:
    chain_abi_values_free(dec, nplain);
    chain_abi_values_free(vals, ev->nin);
    free(plain);
    return ret;
}
