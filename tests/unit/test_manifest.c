/* tests/unit/test_manifest.c: the YAML loader's positions, typing and every
 * bound and refusal, each with its exact message and line:col. */
#include "reconcile/manifest.h"

#include <criterion/criterion.h>
#include <unistd.h>

#include "reconcile/buf.h"
#include "reconcile/interp.h"

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

Test(manifest, positions_in_flow_style_and_sequences_of_maps)
{
    struct kc_doc *doc = parse_ok("- {a: [1, 2], b: {c: d}}\n"
                                  "- - x\n"
                                  "  - y: z\n"
                                  "    w: [ ]\n");
    const struct kc_node *r = doc->root, *m = r->items[0];

    cr_assert_eq(r->type, KC_NODE_SEQ);
    assert_pos(r, 1, 1);
    assert_pos(m, 1, 3);
    assert_pos(kc_node_get(m, "a"), 1, 7);
    assert_pos(kc_node_get(m, "a")->items[1], 1, 11);
    assert_pos(kc_node_get(kc_node_get(m, "b"), "c"), 1, 22);
    assert_pos(r->items[1], 2, 3);
    assert_pos(r->items[1]->items[0], 2, 5);
    assert_pos(r->items[1]->items[1], 3, 5);
    assert_pos(kc_node_pair(r->items[1]->items[1], "w")->key, 4, 5);
    cr_assert_eq(kc_node_get(r->items[1]->items[1], "w")->n, 0);
    kc_doc_free(doc);
}

Test(manifest, columns_count_characters_and_crlf_is_one_break)
{
    struct kc_doc *doc = parse_ok("\xEF\xBB\xBF"
                                  "n\xC3\xA4me: \xE2\x82\xAC x\r\n"
                                  "b: [\xF0\x9F\x94\x91, k]\r\n");

    assert_pos(kc_node_get(doc->root, "n\xC3\xA4me"), 1, 7);
    assert_pos(kc_node_pair(doc->root, "b")->key, 2, 1);
    assert_pos(kc_node_get(doc->root, "b")->items[1], 2, 8);
    cr_assert_str_eq(kc_node_get(doc->root, "n\xC3\xA4me")->str,
                     "\xE2\x82\xAC x");
    kc_doc_free(doc);
}

Test(manifest, scalar_text_length_and_quoting)
{
    struct kc_doc *doc = parse_ok("a: plain text\n"
                                  "b: 'single ''q'''\n"
                                  "c: \"nul\\0in\"\n"
                                  "d: |\n  lit\n  eral\n"
                                  "e: >-\n  fol\n  ded\n");

    cr_assert_str_eq(kc_node_get(doc->root, "a")->str, "plain text");
    cr_assert(!kc_node_get(doc->root, "a")->quoted);
    cr_assert_str_eq(kc_node_get(doc->root, "b")->str, "single 'q'");
    cr_assert(kc_node_get(doc->root, "b")->quoted);
    cr_assert_eq(kc_node_get(doc->root, "c")->len, 6);
    cr_assert_eq(memcmp(kc_node_get(doc->root, "c")->str, "nul\0in", 7), 0);
    cr_assert_str_eq(kc_node_get(doc->root, "d")->str, "lit\neral\n");
    cr_assert(kc_node_get(doc->root, "d")->quoted);
    cr_assert_str_eq(kc_node_get(doc->root, "e")->str, "fol ded");
    kc_doc_free(doc);
}

Test(manifest, empty_file_and_comment_only_file_are_empty_documents)
{
    struct kc_doc *doc = parse_ok("");

    cr_assert_null(doc->root);
    cr_assert_str_eq(doc->file, "m.yaml");
    cr_assert_str_eq(doc->dir, ".");
    kc_doc_free(doc);
    doc = parse_ok("# nothing here\n\n   \n");
    cr_assert_null(doc->root);
    kc_doc_free(doc);
    doc = parse_ok("---\n");
    cr_assert_not_null(doc->root);
    cr_assert_eq(kc_node_scalar_type(doc->root), KC_SCALAR_NULL);
    kc_doc_free(doc);
}

Test(manifest, one_document_with_explicit_markers_is_fine)
{
    struct kc_doc *doc = parse_ok("%YAML 1.2\n---\na: 1\n...\n");

    cr_assert_eq(kc_node_get(doc->root, "a")->pos.line, 3);
    kc_doc_free(doc);
}

Test(manifest, second_document_is_refused)
{
    parse_fails("a: 1\n---\nb: 2\n", KC_EPARSE,
                "m.yaml:2:1: a second YAML document; a manifest is one "
                "document");
    parse_fails("---\na: 1\n...\n---\n", KC_EPARSE,
                "m.yaml:4:1: a second YAML document; a manifest is one "
                "document");
}

Test(manifest, duplicate_keys_in_flow_maps_and_quoted_spellings)
{
    parse_fails("x: {k: 1, j: 2, k: 3}\n", KC_EPARSE,
                "m.yaml:1:17: duplicate key 'k' (first defined at 1:5)");
    parse_fails("name: a\n\"name\": b\n", KC_EPARSE,
                "m.yaml:2:1: duplicate key 'name' (first defined at 1:1)");
}

Test(manifest, many_keys_are_checked_for_duplicates_quickly, .timeout = 20)
{
    struct kc_buf b = { 0 };
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };

    for (int i = 0; i < 40000; i++)
        kc_buf_addf(&b, "k%d: %d\n", i, i);
    kc_buf_addstr(&b, "k123: again\n");
    cr_assert_eq(kc_manifest_parse("m.yaml", NULL, b.data, b.len, &doc, &err),
                 KC_EPARSE);
    cr_assert_str_eq(err.msg,
                     "m.yaml:40001:1: duplicate key 'k123' (first defined at "
                     "124:1)");
    kc_buf_release(&b);
}

Test(manifest, key_with_control_bytes_is_quoted_safely_in_messages)
{
    parse_fails("\"a\\tb\": 1\n\"a\\tb\": 2\n", KC_EPARSE,
                "m.yaml:2:1: duplicate key 'a\\x09b' (first defined at 1:1)");
}

Test(manifest, non_scalar_keys_are_refused)
{
    parse_fails("? [a, b]\n: 1\n", KC_EPARSE,
                "m.yaml:1:3: a map key must be a scalar, not a list");
    parse_fails("x: {{a: 1}: 2}\n", KC_EPARSE,
                "m.yaml:1:5: a map key must be a scalar, not a map");
    parse_fails("a: &m {b: 1}\n*m : 2\n", KC_EPARSE,
                "m.yaml:2:1: a map key must be a scalar, not a map (alias "
                "'*m')");
}

Test(manifest, scalar_alias_may_be_a_key)
{
    struct kc_doc *doc = parse_ok("a: &k name\n*k : 2\n");

    cr_assert_eq(kc_node_pair(doc->root, "name")->key->pos.line, 2);
    kc_doc_free(doc);
}

Test(manifest, merge_keys_are_refused_clearly)
{
    struct kc_doc *doc;

    parse_fails("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", KC_ENOTSUP,
                "m.yaml:3:3: merge keys ('<<') are not supported; write the "
                "keys out (an alias '*name' may still stand for a whole "
                "value)");
    doc = parse_ok("\"<<\": literal\n");
    cr_assert_str_eq(kc_node_get(doc->root, "<<")->str, "literal");
    kc_doc_free(doc);
}

Test(manifest, tags_other_than_core_str_seq_map_are_refused)
{
    struct kc_doc *doc = parse_ok("a: !!str 12\nb: ! true\nc: !!map {}\n"
                                  "d: !!seq []\n");

    cr_assert(kc_node_get(doc->root, "a")->quoted);
    cr_assert_eq(kc_node_scalar_type(kc_node_get(doc->root, "a")),
                 KC_SCALAR_STRING);
    cr_assert_eq(kc_node_scalar_type(kc_node_get(doc->root, "b")),
                 KC_SCALAR_STRING);
    kc_doc_free(doc);
    parse_fails("a: !!int \"12\"\n", KC_ENOTSUP,
                "m.yaml:1:4: tag '!!int' is not supported here (quote a value "
                "to make it a string)");
    parse_fails("a:\n  - !vault x\n", KC_ENOTSUP,
                "m.yaml:2:5: tag '!vault' is not supported here (quote a value "
                "to make it a string)");
    parse_fails("a: !!seq {b: 1}\n", KC_ENOTSUP,
                "m.yaml:1:4: tag '!!seq' is not supported here (quote a value "
                "to make it a string)");
}

Test(manifest, aliases_are_copies_positioned_at_the_alias)
{
    struct kc_doc *doc = parse_ok("base: &b\n"
                                  "  x: 1\n"
                                  "  l: [p, q]\n"
                                  "one: *b\n"
                                  "two: *b\n");
    const struct kc_node *base = kc_node_get(doc->root, "base");
    const struct kc_node *one = kc_node_get(doc->root, "one");
    const struct kc_node *two = kc_node_get(doc->root, "two");

    cr_assert_neq(one, base);
    cr_assert_neq(one, two);
    cr_assert_eq(one->type, KC_NODE_MAP);
    assert_pos(one, 4, 6);
    assert_pos(two, 5, 6);
    /* The insides keep the anchored text's positions. */
    assert_pos(kc_node_get(two, "x"), 2, 6);
    cr_assert_str_eq(kc_node_get(two, "l")->items[1]->str, "q");
    cr_assert_neq(kc_node_get(two, "l")->items[1]->str,
                  kc_node_get(base, "l")->items[1]->str);
    kc_doc_free(doc);
}

Test(manifest, undefined_and_recursive_aliases_are_refused)
{
    parse_fails("a: *nope\n", KC_EPARSE,
                "m.yaml:1:4: alias '*nope' refers to no anchor defined before "
                "it (or to a node that contains the alias)");
    parse_fails("a: &r\n  b: *r\n", KC_EPARSE,
                "m.yaml:2:6: alias '*r' refers to no anchor defined before it "
                "(or to a node that contains the alias)");
}

/* Ten levels of ten-fold aliases: 10^10 nodes if expanded. */
static char *billion_laughs(void)
{
    struct kc_buf b = { 0 };

    kc_buf_addstr(&b, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        kc_buf_addf(&b, "a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++)
            kc_buf_addf(&b, "%s*a%d", k ? ", " : "", i - 1);
        kc_buf_addstr(&b, "]\n");
    }
    return kc_buf_detach(&b, NULL);
}

Test(manifest, billion_laughs_fails_at_the_first_alias_past_the_bound,
     .timeout = 10)
{
    char *text = billion_laughs();

    /* Nodes so far: a0..a3 hold 11+111+1111+11111 = 12344 (keys: 4 more);
     * a4's list and key add 2, each *a3 adds 11111: the 8th alias would
     * reach 12348 + 2 + 8 * 11111 = 101238 > 100000. It is at line 5,
     * column 10 + 7 * 5 = 45 ("a4: &a4 [" is 9 wide, each "*a3, " 5). */
    parse_fails(text, KC_ERANGE,
                "m.yaml:5:45: alias '*a3' would expand the document past "
                "100000 nodes (alias expansion bound)");
    free(text);
}

Test(manifest, node_bound_is_exact, .timeout = 30)
{
    struct kc_buf b = { 0 };
    struct kc_doc *doc;
    struct kc_err err = { 0 };

    /* The list itself plus 99999 items: 100000 nodes. */
    kc_buf_addstr(&b, "[0");
    for (int i = 1; i < 99999; i++)
        kc_buf_addstr(&b, ",0");
    kc_buf_addstr(&b, "]\n");
    cr_assert_eq(kc_manifest_parse("m.yaml", NULL, b.data, b.len, &doc, &err),
                 0, "%s", err.msg);
    cr_assert_eq(doc->root->n, 99999);
    kc_doc_free(doc);
    kc_buf_reset(&b);
    kc_buf_addstr(&b, "[0");
    for (int i = 1; i < 100000; i++)
        kc_buf_addstr(&b, ",0");
    kc_buf_addstr(&b, "]\n");
    parse_fails_n(b.data, b.len, KC_ERANGE,
                  "m.yaml:1:200000: document has more than 100000 nodes "
                  "(aliases count once per use)");
    kc_buf_release(&b);
}

static char *nested(int levels)
{
    struct kc_buf b = { 0 };

    for (int i = 0; i < levels; i++)
        kc_buf_addch(&b, '[');
    for (int i = 0; i < levels; i++)
        kc_buf_addch(&b, ']');
    kc_buf_addch(&b, '\n');
    return kc_buf_detach(&b, NULL);
}

Test(manifest, nesting_bound_is_exact)
{
    char *ok = nested(KC_MANIFEST_MAX_DEPTH);
    char *bad = nested(KC_MANIFEST_MAX_DEPTH + 1);
    char *huge = nested(100000);
    struct kc_doc *doc = parse_ok(ok);

    kc_doc_free(doc);
    parse_fails(bad, KC_ERANGE,
                "m.yaml:1:65: nesting is deeper than 64 levels");
    parse_fails(huge, KC_ERANGE,
                "m.yaml:1:65: nesting is deeper than 64 levels");
    free(ok);
    free(bad);
    free(huge);
}

Test(manifest, nesting_bound_in_block_style)
{
    struct kc_buf b = { 0 };

    for (int i = 0; i < 65; i++)
        kc_buf_addf(&b, "%*sk%d:\n", i, "", i);
    parse_fails(kc_buf_str(&b), KC_ERANGE,
                "m.yaml:65:65: nesting is deeper than 64 levels");
    kc_buf_release(&b);
}

Test(manifest, alias_cannot_nest_past_the_bound)
{
    struct kc_buf b = { 0 };

    kc_buf_addstr(&b, "a: &deep ");
    for (int i = 0; i < 60; i++)
        kc_buf_addch(&b, '[');
    for (int i = 0; i < 60; i++)
        kc_buf_addch(&b, ']');
    kc_buf_addstr(&b, "\nb: [[[*deep]]]\nc: [[[[*deep]]]]\n");
    parse_fails(kc_buf_str(&b), KC_ERANGE,
                "m.yaml:3:8: alias '*deep' nests the document deeper than 64 "
                "levels");
    kc_buf_release(&b);
}

Test(manifest, size_bound_is_exact)
{
    size_t max = KC_MANIFEST_MAX_BYTES;
    char *text = kc_xmalloc(max + 2);
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };

    memcpy(text, "a: ", 3);
    memset(text + 3, 'x', max - 4);
    text[max - 1] = '\n';
    cr_assert_eq(kc_manifest_parse("m.yaml", NULL, text, max, &doc, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(kc_node_get(doc->root, "a")->len, max - 4);
    kc_doc_free(doc);
    text[max] = '\n';
    parse_fails_n(text, max + 1, KC_ERANGE,
                  "m.yaml:1:1: file is 4194305 bytes, over the limit of 4 MiB "
                  "(4194304 bytes)");
    free(text);
}

Test(manifest, load_refuses_big_files_and_reports_missing_ones)
{
    char path[] = "/tmp/kc-manifest-XXXXXX";
    int fd = mkstemp(path);
    char *block = kc_xcalloc(1, 65536);
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    char *want;

    cr_assert_geq(fd, 0);
    memset(block, '#', 65535);
    block[65535] = '\n';
    for (int i = 0; i < 65; i++)
        cr_assert_eq(write(fd, block, 65536), 65536);
    close(fd);
    cr_assert_eq(kc_manifest_load(path, &doc, &err), KC_ERANGE);
    want = kc_xasprintf("%s:1:1: file is over the limit of 4 MiB (4194304 "
                        "bytes)",
                        path);
    cr_assert_str_eq(err.msg, want);
    free(want);
    cr_assert_null(doc);
    unlink(path);
    cr_assert_lt(kc_manifest_load(path, &doc, &err), 0);
    want = kc_xasprintf("cannot read '%s': No such file or directory", path);
    cr_assert_str_eq(err.msg, want);
    free(want);
    free(block);
}

Test(manifest, load_sets_file_and_folder)
{
    char dir[] = "/tmp/kc-manifest-XXXXXX";
    char *path;
    FILE *f;
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };

    cr_assert_not_null(mkdtemp(dir));
    path = kc_xasprintf("%s/kmsctl.yaml", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("name: kms-prod\n", f);
    fclose(f);
    cr_assert_eq(kc_manifest_load(path, &doc, &err), 0, "%s", err.msg);
    cr_assert_str_eq(doc->file, path);
    cr_assert_str_eq(doc->dir, dir);
    cr_assert_str_eq(kc_node_get(doc->root, "name")->pos.file, path);
    kc_doc_free(doc);
    unlink(path);
    rmdir(dir);
    free(path);
}

Test(manifest, invalid_utf8_names_line_column_and_offset)
{
    static const struct {
        const char *text;
        size_t len;
        const char *msg;
    } cases[] = {
        { "a: 1\nb: x\xFFy\n", 11,
          "m.yaml:2:5: invalid UTF-8 (byte 0xff at byte offset 9); a "
          "manifest must be UTF-8 text" },
        { "a: \x80\n", 5,
          "m.yaml:1:4: invalid UTF-8 (byte 0x80 at byte offset 3); a "
          "manifest must be UTF-8 text" },
        /* overlong '/' */
        { "a: \xC0\xAF\n", 6,
          "m.yaml:1:4: invalid UTF-8 (byte 0xc0 at byte offset 3); a "
          "manifest must be UTF-8 text" },
        /* UTF-16 surrogate, after a two-byte character */
        { "\xC3\xA9: \xED\xA0\x80\n", 8,
          "m.yaml:1:4: invalid UTF-8 (byte 0xed at byte offset 4); a "
          "manifest must be UTF-8 text" },
        /* past U+10FFFF */
        { "a: \xF4\x90\x80\x80\n", 8,
          "m.yaml:1:4: invalid UTF-8 (byte 0xf4 at byte offset 3); a "
          "manifest must be UTF-8 text" },
        /* truncated at the end */
        { "a: \xE2\x82", 5,
          "m.yaml:1:4: invalid UTF-8 (byte 0xe2 at byte offset 3); a "
          "manifest must be UTF-8 text" },
        /* UTF-16 with its byte order mark */
        { "\xFF\xFE"
          "a\0:\0",
          6,
          "m.yaml:1:1: invalid UTF-8 (byte 0xff at byte offset 0); a "
          "manifest must be UTF-8 text" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++)
        parse_fails_n(cases[i].text, cases[i].len, KC_EPARSE, cases[i].msg);
}

Test(manifest, control_characters_are_refused)
{
    parse_fails_n("a: 1\nb: x\0y\n", 11, KC_EPARSE,
                  "m.yaml:2:5: control character U+0000 is not allowed (byte "
                  "offset 9)");
    parse_fails("a: \x1B[31m\n", KC_EPARSE,
                "m.yaml:1:4: control character U+001B is not allowed (byte "
                "offset 3)");
    parse_fails("a: \xC2\x9B\n", KC_EPARSE,
                "m.yaml:1:4: control character U+009B is not allowed (byte "
                "offset 3)");
}

Test(manifest, tabs_in_indentation_are_refused)
{
    parse_fails("a:\n\tb: 1\n", KC_EPARSE,
                "m.yaml:2:1: tab character in indentation (YAML indents with "
                "spaces only)");
    parse_fails("a:\n  - x\n  \t- y\n", KC_EPARSE,
                "m.yaml:3:3: tab character in indentation (YAML indents with "
                "spaces only)");
    parse_fails("a: 1\n\t# a comment\n", KC_EPARSE,
                "m.yaml:2:1: tab character in indentation (YAML indents with "
                "spaces only)");
    parse_fails("a: {\n\tb: 1}\n", KC_EPARSE,
                "m.yaml:2:1: tab character in indentation (YAML indents with "
                "spaces only)");
    /* Before a later error, the tab is named (libyaml's own message for it
     * says nothing of tabs). */
    /* A blank line holding a tab is libyaml's to judge. */
    parse_fails("a: 2\n\t\nb: 1\n", KC_EPARSE,
                "m.yaml:2:1: found a tab character that violates indentation "
                "(while scanning a plain scalar started at 1:4)");
    parse_fails("a:\n\tb: 1\nc: [\n", KC_EPARSE,
                "m.yaml:2:1: tab character in indentation (YAML indents with "
                "spaces only)");
}

Test(manifest, tabs_inside_values_are_content)
{
    struct kc_doc *doc = parse_ok("a:\t1\n"
                                  "b: |\n  x\n  \ty\n"
                                  "c: \"p\n\tq\"\n"
                                  "d: 'r\n\ts'\n"
                                  "f: [u,\tv]\n");

    cr_assert_str_eq(kc_node_get(doc->root, "b")->str, "x\n\ty\n");
    cr_assert_str_eq(kc_node_get(doc->root, "c")->str, "p q");
    cr_assert_str_eq(kc_node_get(doc->root, "d")->str, "r s");
    cr_assert_eq(kc_node_get(doc->root, "f")->n, 2);
    kc_doc_free(doc);
}

Test(manifest, syntax_errors_carry_libyaml_problem_and_position)
{
    parse_fails("a: b\n  c: d\n", KC_EPARSE,
                "m.yaml:2:4: mapping values are not allowed in this context");
    parse_fails("a: [1, 2\nb: 3\n", KC_EPARSE,
                "m.yaml:2:2: did not find expected ',' or ']' (while parsing "
                "a flow sequence started at 1:4)");
    parse_fails("a: \"open\n", KC_EPARSE,
                "m.yaml:2:1: found unexpected end of stream (while scanning a "
                "quoted scalar started at 1:4)");
}

Test(manifest, typing_follows_yaml_1_2_core_schema)
{
    static const struct {
        const char *text;
        enum kc_scalar_type type;
        const char *describe;
    } cases[] = {
        { "~", KC_SCALAR_NULL, "null" },
        { "null", KC_SCALAR_NULL, "null" },
        { "Null", KC_SCALAR_NULL, "null" },
        { "NULL", KC_SCALAR_NULL, "null" },
        { "", KC_SCALAR_NULL, "null" },
        { "nULL", KC_SCALAR_STRING, "a string" },
        { "true", KC_SCALAR_BOOL, "a boolean" },
        { "True", KC_SCALAR_BOOL, "a boolean" },
        { "FALSE", KC_SCALAR_BOOL, "a boolean" },
        { "tRUE", KC_SCALAR_STRING, "a string" },
        { "yes", KC_SCALAR_STRING, "a string" },
        { "no", KC_SCALAR_STRING, "a string" },
        { "on", KC_SCALAR_STRING, "a string" },
        { "off", KC_SCALAR_STRING, "a string" },
        { "y", KC_SCALAR_STRING, "a string" },
        { "0", KC_SCALAR_INT, "an integer" },
        { "-19", KC_SCALAR_INT, "an integer" },
        { "+12001", KC_SCALAR_INT, "an integer" },
        { "007", KC_SCALAR_INT, "an integer" },
        { "0o17", KC_SCALAR_INT, "an integer" },
        { "0x10", KC_SCALAR_INT, "an integer" },
        { "0xDeadBeef", KC_SCALAR_INT, "an integer" },
        { "0o18", KC_SCALAR_STRING, "a string" },
        { "0x", KC_SCALAR_STRING, "a string" },
        { "-0x10", KC_SCALAR_STRING, "a string" },
        { "1_000", KC_SCALAR_STRING, "a string" },
        { "0b101", KC_SCALAR_STRING, "a string" },
        { "1.5", KC_SCALAR_FLOAT, "a number" },
        { "-.5", KC_SCALAR_FLOAT, "a number" },
        { "1.", KC_SCALAR_FLOAT, "a number" },
        { "1e3", KC_SCALAR_FLOAT, "a number" },
        { "2.5E-3", KC_SCALAR_FLOAT, "a number" },
        { ".inf", KC_SCALAR_FLOAT, "a number" },
        { "-.Inf", KC_SCALAR_FLOAT, "a number" },
        { ".NaN", KC_SCALAR_FLOAT, "a number" },
        { "-.nan", KC_SCALAR_STRING, "a string" },
        { ".", KC_SCALAR_STRING, "a string" },
        { "1e", KC_SCALAR_STRING, "a string" },
        { "1.2.3", KC_SCALAR_STRING, "a string" },
        { "0x0000000000000000000000000000000000000000", KC_SCALAR_INT,
          "an integer" },
        { "c3-standard-4", KC_SCALAR_STRING, "a string" },
        { "203.0.113.7/32", KC_SCALAR_STRING, "a string" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        char *text =
            kc_xasprintf("v: %s\nq: \"%s\"\n", cases[i].text, cases[i].text);
        struct kc_doc *doc = parse_ok(text);
        const struct kc_node *v = kc_node_get(doc->root, "v");
        const struct kc_node *q = kc_node_get(doc->root, "q");

        cr_assert_eq(kc_node_scalar_type(v), cases[i].type, "'%s'",
                     cases[i].text);
        cr_assert_str_eq(kc_node_describe(v), cases[i].describe, "'%s'",
                         cases[i].text);
        cr_assert_eq(kc_node_scalar_type(q), KC_SCALAR_STRING, "'%s'",
                     cases[i].text);
        kc_doc_free(doc);
        free(text);
    }
}

Test(manifest, integer_values_and_their_range)
{
    static const struct {
        const char *text;
        bool ok;
        int64_t v;
    } cases[] = {
        { "12001", true, 12001 },
        { "-42", true, -42 },
        { "+7", true, 7 },
        { "0o17", true, 15 },
        { "0x10", true, 16 },
        { "0xff", true, 255 },
        { "9223372036854775807", true, INT64_MAX },
        { "-9223372036854775808", true, INT64_MIN },
        { "0x7fffffffffffffff", true, INT64_MAX },
        { "9223372036854775808", false, 0 },
        { "-9223372036854775809", false, 0 },
        { "0x8000000000000000", false, 0 },
        { "0o1000000000000000000000", false, 0 },
        { "abc", false, 0 },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        char *text = kc_xasprintf("v: %s\n", cases[i].text);
        struct kc_doc *doc = parse_ok(text);
        int64_t v = 0;

        cr_assert_eq(kc_node_scalar_int(kc_node_get(doc->root, "v"), &v),
                     cases[i].ok, "'%s'", cases[i].text);
        if (cases[i].ok)
            cr_assert_eq(v, cases[i].v, "'%s'", cases[i].text);
        kc_doc_free(doc);
        free(text);
    }
}

Test(manifest, describe_and_lookup_helpers)
{
    struct kc_doc *doc = parse_ok("m: {a: 1}\nl: [x]\nb: false\n");
    bool b = true;

    cr_assert_str_eq(kc_node_describe(kc_node_get(doc->root, "m")), "a map");
    cr_assert_str_eq(kc_node_describe(kc_node_get(doc->root, "l")), "a list");
    cr_assert_str_eq(kc_node_describe(NULL), "nothing");
    cr_assert(kc_node_scalar_bool(kc_node_get(doc->root, "b"), &b));
    cr_assert(!b);
    cr_assert_null(kc_node_get(doc->root, "missing"));
    cr_assert_null(kc_node_get(kc_node_get(doc->root, "l"), "x"));
    cr_assert_null(kc_node_get(NULL, "x"));
    cr_assert_str_eq(kc_node_pair(doc->root, "l")->key->str, "l");
    kc_doc_free(doc);
}

Test(manifest, text_positions_inside_scalars)
{
    struct kc_doc *doc = parse_ok("a: \"x ${env:A} ${env:B}\"\n"
                                  "b: >\n  one\n  two ${env:C}\n"
                                  "c: \"\\x24{env:D} ${env:E}\"\n");
    const struct kc_node *a = kc_node_get(doc->root, "a");
    const struct kc_node *b = kc_node_get(doc->root, "b");
    const struct kc_node *c = kc_node_get(doc->root, "c");
    struct kc_pos p;

    p = kc_doc_text_pos(doc, a, 2);
    cr_assert_eq(p.line, 1);
    cr_assert_eq(p.col, 7);
    p = kc_doc_text_pos(doc, a, 11);
    cr_assert_eq(p.col, 16);
    p = kc_doc_text_pos(doc, b, strlen("one two "));
    cr_assert_eq(p.line, 4);
    cr_assert_eq(p.col, 7);
    /* An escape that makes a '$': the node's own place, never a wrong one. */
    p = kc_doc_text_pos(doc, c, 12);
    cr_assert_eq(p.line, 5);
    cr_assert_eq(p.col, 4);
    p = kc_doc_text_pos(NULL, c, 12);
    cr_assert_eq(p.col, 4);
    kc_doc_free(doc);
}

Test(manifest, unquoted_interpolation_in_flow_style_gets_a_hint)
{
    parse_fails("a: 1\nb: [x, ${env:K}]\n", KC_EPARSE,
                "m.yaml:2:9: did not find expected ',' or ']' (while parsing "
                "a flow sequence started at 2:4); inside [ ] or { } quote a "
                "value holding '${'");
}

/* Random mutation of valid and nearly valid manifests: whatever the bytes,
 * the loader and the interpolation never crash (ASan and UBSan watch), and
 * what they return keeps its invariants. KC_FUZZ_ITERS sets the count. */
static const char *fuzz_seeds[] = {
    "version: 1\n"
    "name: kms-prod\n"
    "providers:\n"
    "  gcp:   {project: my-proj, zone: us-central1-a}\n"
    "  chain: {rpc_url: \"${env:RPC_URL}\", chain_id: 84532,\n"
    "          private_key: \"${env:PRIVATE_KEY}\"}\n"
    "contracts:\n"
    "  kms: {}\n"
    "  os_images:\n"
    "    - 0x1234\n"
    "    - {image: dstack-cloud-0.6.0}\n"
    "  apps:\n"
    "    nitro-keys: &app\n"
    "      allow_any_device: true\n"
    "      compose_hashes: ['${file:h.txt}']\n"
    "kms_vms:\n"
    "  dstack-kms:\n"
    "    url: https://${kms_vms.dstack-kms.external_ip}:8000/$${x}\n"
    "    firewall: [{port: 12001}, {port: 18000, source_ranges: "
    "[203.0.113.7/32]}]\n"
    "    user_config: |\n"
    "      EXECUTION_RPC=${env:RPC_URL}\n"
    "    copy: *app\n"
    "nitro_hosts:\n"
    "  enclave-host:\n"
    "    app: ${contracts.apps.nitro-keys.app_id}\n",
    "- &a [x, y, {k: 'v', \"q\": >-\n    folded\n    text}]\n- *a\n- *a\n"
    "- ? complex\n  : value\n- !!str 0x10\n",
    "%YAML 1.2\n---\na: \"\\u00e9\\x41\\0\"\nb: 'it''s'\nc: ~\n...\n",
};

static uint64_t fuzz_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fuzz_mutate(struct kc_buf *out, uint64_t *rng)
{
    static const char pieces[] = "{}[]:,-?&*!|>'\"#%@`\t\n \\$~.0x";
    const char *seed = fuzz_seeds[fuzz_rand(rng) % KC_ARRAY_SIZE(fuzz_seeds)];
    size_t len = strlen(seed);
    char *t = kc_xmalloc(len * 2 + 64);
    int rounds = 1 + (int)(fuzz_rand(rng) % 8);

    memcpy(t, seed, len);
    for (int r = 0; r < rounds; r++) {
        size_t at = len ? fuzz_rand(rng) % len : 0;
        size_t span = 1 + fuzz_rand(rng) % 16;

        switch (fuzz_rand(rng) % 6) {
        case 0: /* flip a byte */
            if (len)
                t[at] = (char)fuzz_rand(rng);
            break;
        case 1: /* insert a YAML-significant character */
            if (len + 1 < len * 2 + 64) {
                memmove(t + at + 1, t + at, len - at);
                t[at] = pieces[fuzz_rand(rng) % (sizeof(pieces) - 1)];
                len++;
            }
            break;
        case 2: /* delete a run */
            if (span > len - at)
                span = len - at;
            memmove(t + at, t + at + span, len - at - span);
            len -= span;
            break;
        case 3: /* duplicate a run, if there is room */
            if (span > len - at)
                span = len - at;
            if (len + span < len * 2 + 64 - span) {
                memmove(t + at + span, t + at, len - at);
                len += span;
            }
            break;
        case 4: /* a high byte: broken or valid UTF-8 */
            if (len)
                t[at] = (char)(0x80 | fuzz_rand(rng));
            break;
        default: /* truncate */
            len = at;
            break;
        }
    }
    kc_buf_reset(out);
    kc_buf_add(out, t, len);
    free(t);
}

static const char *fuzz_getenv(const char *name)
{
    return strcmp(name, "RPC_URL") == 0 ? "https://rpc.example/key" : NULL;
}

static void fuzz_check_node(const struct kc_doc *doc, const struct kc_node *n,
                            int depth)
{
    cr_assert_leq(depth, KC_MANIFEST_MAX_DEPTH + 1);
    cr_assert_geq(n->pos.line, 1);
    cr_assert_geq(n->pos.col, 1);
    cr_assert_leq(n->src_off, n->src_end);
    cr_assert_leq(n->src_end, doc->text_len);
    (void)kc_node_describe(n); /* any node can be described */
    if (n->type == KC_NODE_SCALAR) {
        for (size_t i = 0; i < n->len; i++) {
            if (n->str[i] == '$') {
                struct kc_pos p = kc_doc_text_pos(doc, n, i);

                cr_assert_geq(p.line, 1);
                cr_assert_geq(p.col, 1);
            }
        }
        cr_assert_eq(n->str[n->len], '\0');
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (n->type == KC_NODE_SEQ) {
            fuzz_check_node(doc, n->items[i], depth + 1);
        } else {
            cr_assert_eq(n->pairs[i].key->type, KC_NODE_SCALAR);
            fuzz_check_node(doc, n->pairs[i].key, depth + 1);
            fuzz_check_node(doc, n->pairs[i].val, depth + 1);
        }
    }
}

Test(manifest, random_mutations_never_crash, .timeout = 300)
{
    const char *env = getenv("KC_FUZZ_ITERS");
    long iters = env ? strtol(env, NULL, 10) : 100000;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    struct kc_buf text = { 0 };
    long ok = 0;

    for (long it = 0; it < iters; it++) {
        struct kc_doc *doc = NULL;
        struct kc_err err = { 0 };
        int ret;

        fuzz_mutate(&text, &rng);
        ret = kc_manifest_parse("m.yaml", "/nonexistent", kc_buf_str(&text),
                                text.len, &doc, &err);
        if (ret < 0) {
            cr_assert_null(doc);
            cr_assert_eq(strncmp(err.msg, "m.yaml:", 7), 0, "%s", err.msg);
            cr_assert_eq(ret, err.code);
            continue;
        }
        ok++;
        if (doc->root) {
            struct kc_interp_opts o = { .doc = doc, .getenv_fn = fuzz_getenv };
            struct kc_diags d = { 0 };
            struct kc_value *v = NULL;
            char **refs = NULL;
            size_t n = 0;

            fuzz_check_node(doc, doc->root, 1);
            kc_interp_check_doc(doc, &d);
            kc_diags_release(&d);
            kc_interp_refs(doc->root, &refs, &n);
            kc_interp_refs_free(refs, n);
            ret = kc_interp_node(&o, doc->root, &v, &err);
            if (ret < 0) {
                cr_assert_null(v);
                cr_assert_eq(strncmp(err.msg, "m.yaml:", 7), 0, "%s", err.msg);
            }
            kc_value_free(v);
        }
        kc_doc_free(doc);
    }
    /* The mutations must leave some documents valid, or this tests little. */
    cr_assert_gt(ok, iters / 20, "only %ld of %ld parsed", ok, iters);
    kc_buf_release(&text);
}

Test(manifest, aliases_of_a_big_scalar_are_bounded_by_bytes_too, .timeout = 10)
{
    struct kc_buf b = { 0 };

    /* 1 MiB of text, then four copies fit (4 MiB) and the fifth does not. */
    kc_buf_addstr(&b, "a: &big ");
    for (int i = 0; i < (1 << 20); i++)
        kc_buf_addch(&b, 'x');
    kc_buf_addstr(&b, "\nb: [*big, *big, *big, *big, *big, *big]\n");
    parse_fails(kc_buf_str(&b), KC_ERANGE,
                "m.yaml:2:29: alias '*big' would copy more than 4 MiB of text "
                "in all (alias expansion bound)");
    kc_buf_release(&b);
}
