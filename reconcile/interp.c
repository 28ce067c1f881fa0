/* reconcile/interp.c: ${env:}, ${file:}, references and $${ in manifest
 * values, with sensitivity kept. */
#include "reconcile/interp.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"

/* What a reference can point at: the path to a thing ("*" is a name that
 * must be a key at that place in the document), then one of its attributes.
 * The single table of referenceable things. */
struct ref_form {
    const char *path[3];
    size_t npath;
    const char *const *attrs;
};

static const char *const kms_vm_attrs[] = {
    "external_ip", "internal_ip", "self_link", "compose_hash",
    "instance_id", "app_id",      NULL,
};
static const char *const nitro_host_attrs[] = {
    "instance_id", "public_ip", "private_ip", "ami", NULL,
};
static const char *const kms_contract_attrs[] = {
    "address",
    "app_implementation",
    "deploy_block",
    NULL,
};
static const char *const app_attrs[] = {
    "app_id",
    NULL,
};

static const struct ref_form ref_forms[] = {
    { { "kms_vms", "*" }, 2, kms_vm_attrs },
    { { "nitro_hosts", "*" }, 2, nitro_host_attrs },
    { { "contracts", "kms" }, 2, kms_contract_attrs },
    { { "contracts", "apps", "*" }, 3, app_attrs },
};

#define REF_MAX_PARTS 8

enum seg_kind {
    SEG_TEXT,
    SEG_ENV,
    SEG_FILE,
    SEG_REF,
};

/* One piece of a scalar's value: literal text or one ${…}. */
struct seg {
    enum seg_kind kind;
    size_t off;      /* in the value: the '$' of "${", or the text's start */
    const char *arg; /* TEXT: the text; else what follows the scheme */
    size_t len;
};

/* The next piece of S (LEN bytes) from *I. Returns 1 with *SEG, 0 at the
 * end, or KC_EINVAL with *ERR_OFF and ERR set (a message without position).
 */
static int next_seg(const char *s, size_t len, size_t *i, struct seg *seg,
                    size_t *err_off, struct kc_err *err)
{
    size_t at = *i, end;
    const char *body;
    size_t blen;

    if (at >= len)
        return 0;
    seg->off = at;
    if (s[at] == '$' && at + 2 < len && s[at + 1] == '$' && s[at + 2] == '{') {
        seg->kind = SEG_TEXT;
        seg->arg = s + at + 1;
        seg->len = 2;
        *i = at + 3;
        return 1;
    }
    if (!(s[at] == '$' && at + 1 < len && s[at + 1] == '{')) {
        /* Literal text up to the next "${" or "$${". */
        end = at + 1;
        while (end < len &&
               !(s[end] == '$' && end + 1 < len &&
                 (s[end + 1] == '{' ||
                  (s[end + 1] == '$' && end + 2 < len && s[end + 2] == '{'))))
            end++;
        seg->kind = SEG_TEXT;
        seg->arg = s + at;
        seg->len = end - at;
        *i = end;
        return 1;
    }
    *err_off = at;
    body = s + at + 2;
    end = at + 2;
    while (end < len && s[end] != '}')
        end++;
    if (end >= len)
        return kc_err_set(err, KC_EINVAL,
                          "unterminated '${' (no closing '}'; write '$${' for "
                          "a literal '${')");
    blen = end - (at + 2);
    *i = end + 1;
    if (blen == 0)
        return kc_err_set(err, KC_EINVAL, "empty '${}'");
    if (memchr(body, '$', blen) && memchr(body, '{', blen))
        return kc_err_set(err, KC_EINVAL,
                          "nested '${' inside '${…}' is not supported");
    for (size_t k = 0; k < blen; k++)
        if ((unsigned char)body[k] < 0x20 || body[k] == 0x7F)
            return kc_err_set(err, KC_EINVAL,
                              "'${…}' holds a line break or control "
                              "character (byte 0x%02x)",
                              (unsigned char)body[k]);
    if (blen >= 4 && memcmp(body, "env:", 4) == 0) {
        seg->kind = SEG_ENV;
        seg->arg = body + 4;
        seg->len = blen - 4;
        if (seg->len == 0)
            return kc_err_set(err, KC_EINVAL,
                              "'${env:}' names no environment variable");
        for (size_t k = 0; k < seg->len; k++) {
            char c = seg->arg[k];
            bool ok = c == '_' || (c >= 'A' && c <= 'Z') ||
                      (c >= 'a' && c <= 'z') || (k > 0 && c >= '0' && c <= '9');

            if (!ok)
                return kc_err_set(err, KC_EINVAL,
                                  "'${env:%.*s}': not a variable name "
                                  "([A-Za-z_][A-Za-z0-9_]*)",
                                  (int)seg->len, seg->arg);
        }
        return 1;
    }
    if (blen >= 5 && memcmp(body, "file:", 5) == 0) {
        seg->kind = SEG_FILE;
        seg->arg = body + 5;
        seg->len = blen - 5;
        if (seg->len == 0)
            return kc_err_set(err, KC_EINVAL, "'${file:}' names no file");
        return 1;
    }
    {
        const char *colon = memchr(body, ':', blen);

        if (colon)
            return kc_err_set(err, KC_EINVAL,
                              "unknown interpolation '${%.*s}': '%.*s:' is "
                              "not a scheme (use env:, file: or a reference "
                              "such as kms_vms.NAME.external_ip)",
                              (int)blen, body, (int)(colon - body), body);
    }
    for (size_t k = 0; k < blen; k++) {
        char c = body[k];

        if (c == '.' || c == '-' || c == '_' || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c > 0x20 && c < 0x7F)
            return kc_err_set(err, KC_EINVAL,
                              "'${%.*s}' is not a reference: character '%c' "
                              "(a reference is SECTION.NAME.ATTR of letters, "
                              "digits, '-' and '_')",
                              (int)blen, body, c);
        return kc_err_set(err, KC_EINVAL,
                          "'${%.*s}' is not a reference: byte 0x%02x (a "
                          "reference is SECTION.NAME.ATTR of letters, digits, "
                          "'-' and '_')",
                          (int)blen, body, (unsigned char)c);
    }
    if (!memchr(body, '.', blen))
        return kc_err_set(err, KC_EINVAL,
                          "'${%.*s}' is neither ${env:NAME}, ${file:PATH} nor "
                          "a reference such as kms_vms.NAME.external_ip (for "
                          "an environment variable write ${env:%.*s})",
                          (int)blen, body, (int)blen, body);
    seg->kind = SEG_REF;
    seg->arg = body;
    seg->len = blen;
    return 1;
}

static void add_form_list(struct kc_buf *b)
{
    for (size_t f = 0; f < KC_ARRAY_SIZE(ref_forms); f++) {
        const struct ref_form *rf = &ref_forms[f];

        if (f)
            kc_buf_addstr(b, ", ");
        for (size_t k = 0; k < rf->npath; k++)
            kc_buf_addf(b, "%s.",
                        strcmp(rf->path[k], "*") ? rf->path[k] : "NAME");
        kc_buf_addstr(b, "ATTR");
    }
}

static void add_path(struct kc_buf *b, const struct ref_form *rf)
{
    for (size_t k = 0; k < rf->npath; k++)
        kc_buf_addf(b, "%s%s", k ? "." : "",
                    strcmp(rf->path[k], "*") ? rf->path[k] : "NAME");
}

int kc_interp_check_ref(const struct kc_doc *doc, const char *ref,
                        struct kc_err *err)
{
    char *copy = kc_xstrdup(ref), *parts[REF_MAX_PARTS], *p = copy;
    size_t n = 0;
    const struct ref_form *rf = NULL;
    struct kc_buf b = { 0 };
    int ret = 0;

    for (;;) {
        char *dot = strchr(p, '.');

        if (n == REF_MAX_PARTS) {
            ret = kc_err_set(err, KC_EINVAL,
                             "reference '%s' has too many parts", ref);
            goto out;
        }
        parts[n++] = p;
        if (!dot)
            break;
        *dot = '\0';
        p = dot + 1;
    }
    for (size_t k = 0; k < n; k++) {
        if (!parts[k][0]) {
            ret = kc_err_set(err, KC_EINVAL, "reference '%s' has an empty part",
                             ref);
            goto out;
        }
    }
    for (size_t f = 0; f < KC_ARRAY_SIZE(ref_forms) && !rf; f++) {
        const struct ref_form *c = &ref_forms[f];
        bool match = true;

        for (size_t k = 0; k < c->npath && k < n; k++)
            if (strcmp(c->path[k], "*") && strcmp(c->path[k], parts[k]))
                match = false;
        if (match)
            rf = c;
    }
    if (!rf) {
        add_form_list(&b);
        ret = kc_err_set(err, KC_EINVAL,
                         "reference '%s' names nothing that can be referenced "
                         "(one of %s)",
                         ref, kc_buf_str(&b));
        goto out;
    }
    if (n != rf->npath + 1) {
        add_path(&b, rf);
        ret = kc_err_set(err, KC_EINVAL,
                         "reference '%s' must have the form %s.ATTR", ref,
                         kc_buf_str(&b));
        goto out;
    }
    {
        const char *attr = parts[rf->npath];
        bool known = false;

        for (size_t k = 0; rf->attrs[k]; k++)
            known = known || !strcmp(rf->attrs[k], attr);
        if (!known) {
            add_path(&b, rf);
            kc_buf_addstr(&b, " has ");
            for (size_t k = 0; rf->attrs[k]; k++)
                kc_buf_addf(&b, "%s%s", k ? ", " : "", rf->attrs[k]);
            ret = kc_err_set(err, KC_EINVAL,
                             "reference '%s': unknown attribute '%s' (%s)", ref,
                             attr, kc_buf_str(&b));
            goto out;
        }
    }
    if (doc) {
        const struct kc_node *at = doc->root;

        for (size_t k = 0; k < rf->npath; k++) {
            at = kc_node_get(at, parts[k]);
            if (at)
                continue;
            if (!strcmp(rf->path[k], "*"))
                ret = kc_err_set(err, KC_EINVAL,
                                 "reference '%s': no %s named '%s' in the "
                                 "manifest",
                                 ref, parts[k - 1], parts[k]);
            else
                ret = kc_err_set(err, KC_EINVAL,
                                 "reference '%s': '%s' is not in the manifest",
                                 ref, parts[k]);
            goto out;
        }
    }
out:
    kc_buf_release(&b);
    free(copy);
    return ret;
}

static int fail_at(const struct kc_doc *doc, const struct kc_node *n,
                   size_t off, struct kc_err *err)
{
    struct kc_pos p = kc_doc_text_pos(doc, n, off);

    return kc_err_prefix(err, "%s:%d:%d", p.file ? p.file : "-", p.line, p.col);
}

static const char *default_getenv(const char *name)
{
    return getenv(name);
}

/* Reads a secret file: regular files only (a FIFO would block), bounded,
 * the buffer wiped whatever happens. */
static int read_secret_file(const char *path, struct kc_value **out,
                            struct kc_err *err)
{
    int fd, ret = 0;
    struct stat st;
    char *buf = NULL;
    size_t have = 0, cap = KC_INTERP_MAX_FILE_BYTES + 1;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return kc_err_from_errno(err, errno, "cannot read '%s'", path);
    if (fstat(fd, &st) < 0) {
        ret = kc_err_from_errno(err, errno, "cannot read '%s'", path);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        ret = kc_err_set(err, KC_EINVAL, "cannot read '%s': is a directory",
                         path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = kc_err_set(err, KC_EINVAL, "cannot read '%s': not a regular file",
                         path);
        goto out;
    }
    if ((uint64_t)st.st_size > KC_INTERP_MAX_FILE_BYTES) {
        ret = kc_err_set(err, KC_ERANGE,
                         "'%s' is larger than the limit of %u bytes", path,
                         KC_INTERP_MAX_FILE_BYTES);
        goto out;
    }
    buf = kc_xmalloc(cap);
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = kc_err_from_errno(err, errno, "cannot read '%s'", path);
            goto out;
        }
        if (r == 0)
            break;
        have += (size_t)r;
        if (have == cap) {
            ret = kc_err_set(err, KC_ERANGE,
                             "'%s' is larger than the limit of %u bytes", path,
                             KC_INTERP_MAX_FILE_BYTES);
            goto out;
        }
    }
    while (have > 0 && (buf[have - 1] == '\n' || buf[have - 1] == '\r'))
        have--;
    if (memchr(buf, '\0', have)) {
        ret = kc_err_set(err, KC_EINVAL,
                         "'%s' holds a NUL byte (binary files cannot be "
                         "interpolated)",
                         path);
        goto out;
    }
    *out = kc_value_new_secret(buf, have);
out:
    if (buf)
        kc_memzero(buf, cap);
    free(buf);
    close(fd);
    return ret;
}

/* A multi-line secret (a PEM key) may reach a log one line at a time, or
 * JSON-escaped with its line breaks changed: the logger learns each line
 * long enough not to redact ordinary words. */
static void log_secret_lines(struct kc_log *log, const char *bytes, size_t len)
{
    size_t start = 0;

    if (!memchr(bytes, '\n', len))
        return;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && bytes[i] != '\n' && bytes[i] != '\r')
            continue;
        if (i - start >= 8)
            kc_log_add_secret(log, bytes + start, i - start);
        start = i + 1;
    }
}

/* The value of one ${…} piece. */
static int seg_value(const struct kc_interp_opts *o, const struct kc_node *n,
                     const struct seg *sg, struct kc_value **out,
                     struct kc_err *err)
{
    char *arg = kc_xstrndup(sg->arg, sg->len);
    int ret = 0;

    *out = NULL;
    switch (sg->kind) {
    case SEG_TEXT:
        *out = kc_value_new_strn(sg->arg, sg->len);
        break;
    case SEG_ENV: {
        const char *v = (o->getenv_fn ? o->getenv_fn : default_getenv)(arg);

        if (!v) {
            ret = kc_err_set(err, KC_ENOENT,
                             "environment variable '%s' is not set (used as "
                             "${env:%s})",
                             arg, arg);
            break;
        }
        if (strlen(v) > KC_INTERP_MAX_FILE_BYTES) {
            ret = kc_err_set(err, KC_ERANGE,
                             "environment variable '%s' is longer than %u "
                             "bytes",
                             arg, KC_INTERP_MAX_FILE_BYTES);
            break;
        }
        *out = kc_value_new_secret(v, strlen(v));
        kc_log_add_secret(o->log, v, strlen(v));
        break;
    }
    case SEG_FILE: {
        char *path;
        const char *home = getenv("HOME");

        /* kc_file_resolve expands "~/" from HOME, and only that form. */
        if (arg[0] == '~' && arg[1] == '/' && (!home || !home[0])) {
            ret = kc_err_set(err, KC_EINVAL,
                             "${file:%s}: HOME is not set, so '~/' cannot be "
                             "expanded",
                             arg);
            break;
        }
        if (arg[0] == '~' && arg[1] != '/') {
            ret = kc_err_set(err, KC_EINVAL,
                             "${file:%s}: only '~/' is expanded, not '~user/'; "
                             "write the full path",
                             arg);
            break;
        }
        path = kc_file_resolve(o->doc ? o->doc->dir : NULL, arg);

        ret = read_secret_file(path, out, err);
        if (ret < 0) {
            kc_err_prefix(err, "${file:%s}", arg);
        } else {
            size_t len;
            const char *bytes = kc_value_reveal(*out, &len);

            kc_log_add_secret(o->log, bytes, len);
            log_secret_lines(o->log, bytes, len);
        }
        free(path);
        break;
    }
    case SEG_REF:
        ret = kc_interp_check_ref(o->doc, arg, err);
        if (ret < 0)
            break;
        if (o->resolve) {
            ret = o->resolve(o->resolve_ctx, arg, out, err);
            if (ret < 0) {
                kc_err_prefix(err, "${%s}", arg);
                break;
            }
        }
        if (!*out)
            *out = kc_value_new_unknown(arg);
        break;
    }
    free(arg);
    if (ret < 0)
        return fail_at(o->doc, n, sg->off, err);
    return 0;
}

/* V as a piece of a longer string: strings and unknowns as they are,
 * integers and booleans in decimal / true|false, sensitivity kept. */
static int as_string_piece(struct kc_value **v, const char *ref,
                           struct kc_err *err)
{
    struct kc_value *s;
    char tmp[32];

    switch ((*v)->type) {
    case KC_VALUE_STRING:
    case KC_VALUE_UNKNOWN:
        return 0;
    case KC_VALUE_INT:
        kc_snprintf(tmp, sizeof(tmp), "%lld", (long long)kc_value_int(*v, 0));
        break;
    case KC_VALUE_BOOL:
        kc_snprintf(tmp, sizeof(tmp), "%s",
                    kc_value_bool(*v, false) ? "true" : "false");
        break;
    default:
        return kc_err_set(err, KC_EINVAL,
                          "${%s} is not a string, number or boolean and cannot "
                          "be part of a longer string",
                          ref);
    }
    s = kc_value_new_str(tmp);
    if ((*v)->flags & KC_VALUE_SENSITIVE)
        kc_value_set_sensitive(s);
    kc_value_free(*v);
    *v = s;
    return 0;
}

static bool has_dollar_brace(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '$' && s[i + 1] == '{')
            return true;
    return false;
}

static int fail_node(const struct kc_node *n, struct kc_err *err, int code,
                     const char *fmt, ...) KC_PRINTF(4, 5);

static int fail_node(const struct kc_node *n, struct kc_err *err, int code,
                     const char *fmt, ...)
{
    struct kc_buf b = { 0 };
    va_list ap;

    kc_buf_addf(&b, "%s:%d:%d: ", n->pos.file ? n->pos.file : "-", n->pos.line,
                n->pos.col);
    va_start(ap, fmt);
    kc_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    kc_err_set(err, code, "%s", kc_buf_str(&b));
    kc_buf_release(&b);
    return code;
}

/* The value of a scalar without ${…}. Values have no float type, and an
 * Ethereum address or hash written without quotes is, to YAML 1.2, an
 * integer of 160 or 256 bits: these keep their text, as strings, for the
 * consumer that expects them (the schema has checked their form). */
static void interp_typed(const struct kc_node *n, struct kc_value **out)
{
    int64_t i;
    bool bv;

    switch (kc_node_scalar_type(n)) {
    case KC_SCALAR_NULL:
        *out = kc_value_new_null();
        return;
    case KC_SCALAR_BOOL:
        kc_node_scalar_bool(n, &bv);
        *out = kc_value_new_bool(bv);
        return;
    case KC_SCALAR_INT:
        /* "0x" and more than 16 digits: an address, hash or id, even when
         * its value would fit (0x00…01). */
        if (!(n->str[0] == '0' && n->str[1] == 'x' && n->len > 2 + 16) &&
            kc_node_scalar_int(n, &i)) {
            *out = kc_value_new_int(i);
            return;
        }
        break;
    case KC_SCALAR_FLOAT:
    case KC_SCALAR_STRING:
        break;
    }
    *out = kc_value_new_strn(n->str, n->len);
}

/* One kc_interp_node call: its options and what it may still produce. */
struct run {
    const struct kc_interp_opts *o;
    size_t budget; /* bytes that ${…} may still add */
};

/* Charges V's bytes (a string from ${…}) to the run. */
static int charge(struct run *r, const struct kc_node *n, const struct seg *sg,
                  const struct kc_value *v, struct kc_err *err)
{
    size_t len = 0;

    if (v->type == KC_VALUE_STRING)
        kc_value_reveal(v, &len);
    if (len > r->budget) {
        kc_err_set(err, KC_ERANGE,
                   "interpolation would produce more than %u bytes in all",
                   KC_INTERP_MAX_TOTAL_BYTES);
        return fail_at(r->o->doc, n, sg->off, err);
    }
    r->budget -= len;
    return 0;
}

static int interp_scalar(struct run *r, const struct kc_node *n,
                         struct kc_value **out, struct kc_err *err)
{
    const struct kc_interp_opts *o = r->o;
    struct kc_value *v = NULL, *unknown = NULL;
    struct kc_buf acc = { 0 };
    bool sensitive = false;
    struct seg sg;
    size_t i = 0, err_off = 0, nseg = 0;
    int ret;

    *out = NULL;
    if (memchr(n->str, '\0', n->len))
        return fail_node(n, err, KC_EINVAL, "value holds a NUL character");
    if (!has_dollar_brace(n->str, n->len)) {
        interp_typed(n, out);
        return 0;
    }
    /* The pieces are joined in one buffer (wiped after), not with
     * kc_value_concat one by one, which would copy a long value once per
     * piece; the result follows kc_value_concat's rules: sensitive if any
     * piece is, UNKNOWN (the first unknown's reference) if any piece is. */
    for (;;) {
        ret = next_seg(n->str, n->len, &i, &sg, &err_off, err);
        if (ret < 0) {
            ret = fail_at(o->doc, n, err_off, err);
            goto out;
        }
        if (ret == 0)
            break;
        nseg++;
        ret = seg_value(o, n, &sg, &v, err);
        if (ret == 0 && sg.kind != SEG_TEXT)
            ret = charge(r, n, &sg, v, err);
        if (ret < 0)
            goto out;
        if (nseg == 1 && i >= n->len && sg.kind != SEG_TEXT) {
            /* Exactly one ${…}: its value as it is (a reference may be an
             * integer, a list...). */
            *out = v;
            v = NULL;
            goto out;
        }
        if (sg.kind == SEG_REF) {
            char *ref = kc_xstrndup(sg.arg, sg.len);

            ret = as_string_piece(&v, ref, err);
            free(ref);
            if (ret < 0) {
                ret = fail_at(o->doc, n, sg.off, err);
                goto out;
            }
        }
        sensitive = sensitive || kc_value_is_sensitive(v);
        if (v->type == KC_VALUE_UNKNOWN) {
            if (!unknown) {
                unknown = v;
                v = NULL;
            }
        } else {
            size_t len;
            const char *bytes = kc_value_reveal(v, &len);

            kc_buf_add(&acc, bytes, len);
        }
        kc_value_free(v);
        v = NULL;
    }
    if (unknown) {
        *out = unknown;
        unknown = NULL;
    } else if (sensitive) {
        *out = kc_value_new_secret(kc_buf_str(&acc), acc.len);
    } else {
        *out = kc_value_new_strn(kc_buf_str(&acc), acc.len);
    }
    if (sensitive)
        kc_value_set_sensitive(*out);
    ret = 0;
out:
    kc_value_free(v);
    kc_value_free(unknown);
    kc_buf_release_wipe(&acc);
    return ret;
}

static int interp_node(struct run *r, const struct kc_node *node,
                       struct kc_value **out, struct kc_err *err)
{
    struct kc_value *c = NULL, *v;
    int ret;

    *out = NULL;
    if (!node) {
        *out = kc_value_new_null();
        return 0;
    }
    if (node->type == KC_NODE_SCALAR)
        return interp_scalar(r, node, out, err);
    if (node->type == KC_NODE_SEQ) {
        c = kc_value_new_list();
        for (size_t i = 0; i < node->n; i++) {
            ret = interp_node(r, node->items[i], &v, err);
            if (ret < 0)
                goto fail;
            kc_value_list_push(c, v);
        }
    } else {
        c = kc_value_new_map();
        for (size_t i = 0; i < node->n; i++) {
            const struct kc_node *k = node->pairs[i].key;

            if (memchr(k->str, '\0', k->len)) {
                ret = fail_node(k, err, KC_EINVAL, "key holds a NUL character");
                goto fail;
            }
            ret = interp_node(r, node->pairs[i].val, &v, err);
            if (ret < 0)
                goto fail;
            kc_value_map_set(c, k->str, v);
        }
    }
    *out = c;
    return 0;
fail:
    kc_value_free(c);
    return ret;
}

int kc_interp_node(const struct kc_interp_opts *o, const struct kc_node *node,
                   struct kc_value **out, struct kc_err *err)
{
    struct run r = { o, KC_INTERP_MAX_TOTAL_BYTES };

    return interp_node(&r, node, out, err);
}

struct check {
    const struct kc_doc *doc;
    struct kc_diags *d;
    size_t problems;
};

static bool check_room(struct check *c, const struct kc_pos *p)
{
    if (c->problems == KC_INTERP_MAX_DIAGS)
        kc_diags_add(c->d, p, "",
                     "more than %d interpolation problems; stopped checking",
                     KC_INTERP_MAX_DIAGS);
    return c->problems++ < KC_INTERP_MAX_DIAGS;
}

static void check_scalar(struct check *c, const struct kc_node *n,
                         const char *path)
{
    struct kc_err err = { 0 };
    struct seg sg;
    size_t i = 0, err_off = 0;
    int ret;

    while ((ret = next_seg(n->str, n->len, &i, &sg, &err_off, &err)) > 0) {
        char *ref;

        if (sg.kind != SEG_REF)
            continue;
        ref = kc_xstrndup(sg.arg, sg.len);
        if (kc_interp_check_ref(c->doc, ref, &err) < 0) {
            struct kc_pos p = kc_doc_text_pos(c->doc, n, sg.off);

            if (check_room(c, &p))
                kc_diags_add(c->d, &p, path, "%s", err.msg);
        }
        free(ref);
    }
    if (ret < 0) {
        struct kc_pos p = kc_doc_text_pos(c->doc, n, err_off);

        if (check_room(c, &p))
            kc_diags_add(c->d, &p, path, "%s", err.msg);
    }
}

/* PATH is the document path of N ("kms_vms.x.firewall[0].port"). */
static void check_node(struct check *c, const struct kc_node *n,
                       const char *path)
{
    if (c->problems > KC_INTERP_MAX_DIAGS)
        return;
    if (n->type == KC_NODE_SCALAR) {
        check_scalar(c, n, path);
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct kc_node *k, *child;
        char *sub;

        if (n->type == KC_NODE_SEQ) {
            sub = kc_xasprintf("%s[%zu]", path, i);
            child = n->items[i];
        } else {
            k = n->pairs[i].key;
            child = n->pairs[i].val;
            sub = kc_xasprintf("%s%s%.*s", path, *path ? "." : "",
                               (int)strnlen(k->str, k->len), k->str);
            if (has_dollar_brace(k->str, k->len)) {
                struct kc_pos p = kc_doc_text_pos(c->doc, k, 0);

                if (check_room(c, &p))
                    kc_diags_add(c->d, &p, sub,
                                 "keys are not interpolated: '${' in a key "
                                 "is not allowed");
            }
        }
        check_node(c, child, sub);
        free(sub);
    }
}

void kc_interp_check_doc(const struct kc_doc *doc, struct kc_diags *d)
{
    struct check c = { .doc = doc, .d = d };

    if (!doc || !doc->root)
        return;
    check_node(&c, doc->root, "");
}

struct refs {
    char **v;
    size_t n, cap;
};

static void collect_refs(const struct kc_node *n, struct refs *r)
{
    struct kc_err err = { 0 };
    struct seg sg;
    size_t i = 0, err_off;

    if (!n)
        return;
    if (n->type == KC_NODE_SEQ) {
        for (size_t k = 0; k < n->n; k++)
            collect_refs(n->items[k], r);
        return;
    }
    if (n->type == KC_NODE_MAP) {
        for (size_t k = 0; k < n->n; k++)
            collect_refs(n->pairs[k].val, r);
        return;
    }
    while (next_seg(n->str, n->len, &i, &sg, &err_off, &err) > 0) {
        if (sg.kind != SEG_REF)
            continue;
        kc_xgrow(&r->v, &r->cap, r->n + 1, sizeof(*r->v));
        r->v[r->n++] = kc_xstrndup(sg.arg, sg.len);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void kc_interp_refs(const struct kc_node *node, char ***refs, size_t *n)
{
    struct refs r = { 0 };
    size_t w = 0;

    collect_refs(node, &r);
    if (r.n > 1)
        qsort(r.v, r.n, sizeof(*r.v), cmp_str);
    for (size_t i = 0; i < r.n; i++) {
        if (w > 0 && strcmp(r.v[w - 1], r.v[i]) == 0)
            free(r.v[i]);
        else
            r.v[w++] = r.v[i];
    }
    *refs = w ? r.v : NULL;
    if (!w)
        free(r.v);
    *n = w;
}

void kc_interp_refs_free(char **refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(refs[i]);
    free(refs);
}

bool kc_interp_is_secret_source(const struct kc_node *node)
{
    struct kc_err err = { 0 };
    struct seg sg;
    size_t i = 0, err_off;

    if (!node || node->type != KC_NODE_SCALAR)
        return false;
    if (next_seg(node->str, node->len, &i, &sg, &err_off, &err) <= 0)
        return false;
    return i == node->len && (sg.kind == SEG_ENV || sg.kind == SEG_FILE);
}
