/* tests/unit/test_schema_docs.c: docs/manifest.md documents every property
 * of schemas/manifest.schema.json (one table row "| `path` | ..." each), and
 * nothing that the schema does not have. Paths: "a.b", "<name>" for a key
 * of a map, "[]" for a list item; $ref and oneOf/anyOf/allOf are followed. */
#include <criterion/criterion.h>
#include <json-c/json.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"
#include "reconcile/schema.h"

struct paths {
    char **v;
    size_t n, cap;
};

static void add(struct paths *p, const char *s)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i], s) == 0)
            return;
    kc_xgrow(&p->v, &p->cap, p->n + 1, sizeof(*p->v));
    p->v[p->n++] = kc_xstrdup(s);
}

static bool has(const struct paths *p, const char *s)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i], s) == 0)
            return true;
    return false;
}

static void release(struct paths *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
}

static struct json_object *get(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;

    return json_object_is_type(o, json_type_object) &&
                   json_object_object_get_ex(o, k, &v)
               ? v
               : NULL;
}

static void walk(struct json_object *root, struct json_object *s,
                 const char *path, struct paths *out, int depth)
{
    static const char *const comb[] = { "oneOf", "anyOf", "allOf" };
    struct json_object *ref = get(s, "$ref"), *props = get(s, "properties");
    struct json_object *addl = get(s, "additionalProperties");

    cr_assert_lt(depth, 50, "schema too deep at %s", path);
    if (ref) {
        const char *r = json_object_get_string(ref);

        cr_assert(strncmp(r, "#/$defs/", 8) == 0, "ref %s", r);
        walk(root, get(get(root, "$defs"), r + 8), path, out, depth + 1);
    }
    if (props) {
        json_object_object_foreach (props, name, sub) {
            char *p =
                path[0] ? kc_xasprintf("%s.%s", path, name) : kc_xstrdup(name);

            add(out, p);
            walk(root, sub, p, out, depth + 1);
            free(p);
        }
    }
    if (json_object_is_type(addl, json_type_object)) {
        char *p = kc_xasprintf("%s.<name>", path);

        walk(root, addl, p, out, depth + 1);
        free(p);
    }
    if (json_object_is_type(get(s, "items"), json_type_object)) {
        char *p = kc_xasprintf("%s[]", path);

        walk(root, get(s, "items"), p, out, depth + 1);
        free(p);
    }
    for (size_t i = 0; i < KC_ARRAY_SIZE(comb); i++) {
        struct json_object *arr = get(s, comb[i]);

        for (size_t j = 0; arr && j < json_object_array_length(arr); j++)
            walk(root, json_object_array_get_idx(arr, j), path, out, depth + 1);
    }
}

/* Every "| `path` |" row of the markdown TEXT. */
static void doc_paths(const char *text, struct paths *out)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');

        if (strncmp(line, "| `", 3) == 0) {
            const char *s = line + 3, *e = strchr(s, '`');

            cr_assert(e && (!end || e < end), "bad row: %.40s", line);
            {
                char *p = kc_xstrndup(s, (size_t)(e - s));

                cr_expect_not(has(out, p), "documented twice: %s", p);
                add(out, p);
                free(p);
            }
        }
        line = end ? end + 1 : NULL;
    }
}

Test(schema_docs, every_schema_property_is_documented_and_nothing_else)
{
    const char *src = getenv("KC_SRC_DIR") ? getenv("KC_SRC_DIR") : ".";
    char *md_path = kc_xasprintf("%s/docs/manifest.md", src);
    struct json_object *root = NULL;
    struct paths schema = { 0 }, doc = { 0 };
    struct kc_err err = { 0 };
    struct kc_buf md = { 0 };
    const char *text = kc_schema_text("manifest");
    FILE *f = fopen(md_path, "r");
    char chunk[4096];
    size_t n, missing = 0, extra = 0;

    cr_assert_not_null(text);
    cr_assert_not_null(f, "cannot open %s", md_path);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        kc_buf_add(&md, chunk, n);
    fclose(f);
    cr_assert_eq(kc_json_parse(text, strlen(text), "schema", &root, &err), 0);
    walk(root, root, "", &schema, 0);
    doc_paths(kc_buf_str(&md), &doc);
    cr_assert_gt(schema.n, 100, "only %zu schema properties", schema.n);
    for (size_t i = 0; i < schema.n; i++) {
        if (!has(&doc, schema.v[i])) {
            cr_log_error("not documented in docs/manifest.md: %s", schema.v[i]);
            missing++;
        }
    }
    for (size_t i = 0; i < doc.n; i++) {
        if (!has(&schema, doc.v[i])) {
            cr_log_error("documented but not in the schema: %s", doc.v[i]);
            extra++;
        }
    }
    cr_expect_eq(missing, 0, "%zu properties not documented", missing);
    cr_expect_eq(extra, 0, "%zu documented properties not in the schema",
                 extra);
    release(&schema);
    release(&doc);
    kc_buf_release(&md);
    json_object_put(root);
    free(md_path);
}

Test(schema_docs, every_property_is_described_and_every_object_closed)
{
    /* Every entry of every "properties" carries a description, and every
     * object schema with properties says additionalProperties: false. */
    const char *text = kc_schema_text("manifest");
    struct json_object *root = NULL;
    struct kc_err err = { 0 };
    struct json_object *stack[256];
    size_t sp = 0, bad = 0;

    cr_assert_eq(kc_json_parse(text, strlen(text), "schema", &root, &err), 0);
    stack[sp++] = root;
    while (sp > 0) {
        struct json_object *o = stack[--sp];

        if (json_object_is_type(o, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(o); i++) {
                cr_assert_lt(sp, KC_ARRAY_SIZE(stack));
                stack[sp++] = json_object_array_get_idx(o, i);
            }
            continue;
        }
        if (!json_object_is_type(o, json_type_object))
            continue;
        json_object_object_foreach (o, k, v) {
            if (strcmp(k, "properties") == 0 &&
                json_object_is_type(v, json_type_object)) {
                struct json_object *ap = get(o, "additionalProperties");

                /* Closed maps only: a misspelt key is always an error. */
                if (!json_object_is_type(ap, json_type_boolean) ||
                    json_object_get_boolean(ap)) {
                    cr_log_error("an object with properties lacks "
                                 "additionalProperties: false (%s)",
                                 json_object_to_json_string(v));
                    bad++;
                }
                json_object_object_foreach (v, name, sub) {
                    if (!get(sub, "description")) {
                        cr_log_error("property '%s' has no description", name);
                        bad++;
                    }
                }
            }
            cr_assert_lt(sp, KC_ARRAY_SIZE(stack));
            stack[sp++] = v;
        }
    }
    cr_expect_eq(bad, 0);
    json_object_put(root);
}
