/* tests/unit/test_manifest.c: the YAML loader's positions, typing and every
 * bound and refusal, each with its exact message and line:col. */
#include "reconcile/manifest.h"

#include <criterion/criterion.h>

static struct kc_doc *parse_ok(const char *text)
{
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    int ret = kc_manifest_parse("m.yaml", ".", text, strlen(text), &doc, &err);

    cr_assert_eq(ret, 0, "parse failed: %s", err.msg);
    cr_assert_not_null(doc);
    return doc;
}

/* Parses TEXT (LEN bytes), expects code CODE and message MSG exactly. */
static void parse_fails_n(const char *text, size_t len, int code,
                          const char *msg)
{
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    int ret = kc_manifest_parse("m.yaml", ".", text, len, &doc, &err);

    cr_assert_eq(ret, code, "got %d (%s) for <%s>", ret, err.msg, text);
    cr_assert_null(doc);
    cr_assert_str_eq(err.msg, msg);
}

static void parse_fails(const char *text, int code, const char *msg)
{
    parse_fails_n(text, strlen(text), code, msg);
}

#define assert_pos(n, l, c)                                                    \
    do {                                                                       \
        cr_assert_not_null(n);                                                 \
        cr_assert_eq((n)->pos.line, (l), "line %d, want %d", (n)->pos.line,    \
                     (l));                                                     \
        cr_assert_eq((n)->pos.col, (c), "col %d, want %d", (n)->pos.col, (c)); \
        cr_assert_str_eq((n)->pos.file, "m.yaml");                             \
    } while (0)

Test(manifest, positions_in_nested_block_maps_and_lists)
{
    struct kc_doc *doc = parse_ok("version: 1\n"
                                  "kms_vms:\n"
                                  "  dstack-kms:\n"
                                  "    firewall:\n"
                                  "      - port: 12001\n"
                                  "      - {port: 18000, from: [a, b]}\n");
    const struct kc_node *vms = kc_node_get(doc->root, "kms_vms");
    const struct kc_node *kms = kc_node_get(vms, "dstack-kms");
    const struct kc_node *fw = kc_node_get(kms, "firewall");
    const struct kc_node *second;

    assert_pos(doc->root, 1, 1);
    assert_pos(kc_node_get(doc->root, "version"), 1, 10);
    assert_pos(kc_node_pair(doc->root, "kms_vms")->key, 2, 1);
    assert_pos(vms, 3, 3);
    assert_pos(kms, 4, 5);
    cr_assert_eq(fw->type, KC_NODE_SEQ);
    cr_assert_eq(fw->n, 2);
    assert_pos(fw, 5, 7);
    assert_pos(fw->items[0], 5, 9);
    assert_pos(kc_node_get(fw->items[0], "port"), 5, 15);
    second = fw->items[1];
    assert_pos(second, 6, 9);
    assert_pos(kc_node_pair(second, "port")->key, 6, 10);
    assert_pos(kc_node_get(second, "port"), 6, 16);
    assert_pos(kc_node_get(second, "from"), 6, 29);
    assert_pos(kc_node_get(second, "from")->items[1], 6, 33);
    kc_doc_free(doc);
}

Test(manifest, duplicate_key_names_both_places)
{
    parse_fails("a: 1\nb:\n  c: 2\n  c: 3\n", KC_EPARSE,
                "m.yaml:4:3: duplicate key 'c' (first defined at 3:3)");
}

Test(manifest, empty_file_is_an_empty_document)
{
    struct kc_doc *doc = parse_ok("");

    cr_assert_null(doc->root);
    kc_doc_free(doc);
}
