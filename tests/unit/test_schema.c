/* tests/unit/test_schema.c: the validator on each keyword it supports, its
 * messages and positions, schema loading errors, and json-c validation. */
#include "reconcile/schema.h"

#include <criterion/criterion.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"

struct run {
    struct kc_doc *doc;
    struct kc_schema *schema;
    struct kc_diags diags;
    struct kc_schema_secrets secrets;
};

/* Validates YAML against the schema SCHEMA_JSON; keeps everything in R. */
static size_t run(struct run *r, const char *schema_json, const char *yaml)
{
    struct kc_err err = { 0 };

    memset(r, 0, sizeof(*r));
    cr_assert_eq(kc_schema_parse(schema_json, strlen(schema_json), "t",
                                 &r->schema, &err),
                 0, "schema: %s", err.msg);
    cr_assert_eq(
        kc_manifest_parse("m.yaml", ".", yaml, strlen(yaml), &r->doc, &err), 0,
        "yaml: %s", err.msg);
    return kc_schema_validate_node(r->schema, r->doc->root, &r->diags,
                                   &r->secrets);
}

static void done(struct run *r)
{
    kc_diags_release(&r->diags);
    kc_schema_secrets_release(&r->secrets);
    kc_schema_free(r->schema);
    kc_doc_free(r->doc);
}

/* Asserts exactly the diagnostics LINES (NULL-terminated), formatted as
 * kmsctl prints them. */
static void expect(struct run *r, const char *const *lines)
{
    size_t n = 0;

    while (lines[n])
        n++;
    for (size_t i = 0; i < r->diags.n && i < n; i++) {
        char *got = kc_diags_format(&r->diags, i);

        cr_expect(strcmp(got, lines[i]) == 0,
                  "diagnostic %zu:\n got: %s\nwant: %s", i, got, lines[i]);
        free(got);
    }
    if (r->diags.n != n) {
        for (size_t i = 0; i < r->diags.n; i++) {
            char *got = kc_diags_format(&r->diags, i);

            cr_log_error("got: %s", got);
            free(got);
        }
    }
    cr_assert_eq(r->diags.n, n, "%zu diagnostics, want %zu", r->diags.n, n);
}

#define EXPECT(r, ...)                                      \
    do {                                                    \
        const char *const lines_[] = { __VA_ARGS__, NULL }; \
        expect((r), lines_);                                \
    } while (0)
#define EXPECT_VALID(r)                        \
    do {                                       \
        const char *const lines_[] = { NULL }; \
        expect((r), lines_);                   \
    } while (0)

Test(schema, type_names_expected_and_actual_kinds)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
        "\"b\":{\"type\":\"integer\"},\"c\":{\"type\":\"boolean\"},"
        "\"d\":{\"type\":[\"string\",\"null\"]},\"e\":{\"type\":"
        "\"number\"},\"f\":{\"type\":\"array\"},\"g\":{\"type\":"
        "\"null\"}}}",
        "a: [x]\nb: '12'\nc: yes\nd: {}\ne: 1.5\nf: x\ng: ~\n");
    EXPECT(&r, "m.yaml:1:4: a: expected a string, got a list",
           "m.yaml:2:4: b: expected an integer, got a string",
           "m.yaml:3:4: c: expected a boolean (true or false), got a string",
           "m.yaml:4:4: d: expected a string or null, got a map",
           "m.yaml:6:4: f: expected a list, got a string");
    done(&r);
}

Test(schema, integer_accepts_integral_float_and_string_accepts_plain_numbers)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"i\":{\"type\":\"integer\"},"
        "\"j\":{\"type\":\"integer\"},\"h\":{\"type\":\"string\"}}}",
        "i: 2.0\nj: 2.5\nh: 0xAbC\n");
    EXPECT(&r, "m.yaml:2:4: j: expected an integer, got a number");
    done(&r);
}

Test(schema, interpolated_scalars_are_checked_for_type_only)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"integer\","
        "\"maximum\":3},\"u\":{\"type\":\"string\",\"pattern\":\"^https:"
        "\"},\"l\":{\"type\":\"array\"},\"e\":{\"type\":\"string\","
        "\"pattern\":\"^x$\"}}}",
        "p: ${env:PORT}\nu: \"${env:U}/x\"\nl: ${env:L}\ne: $${literal}\n");
    EXPECT(&r, "m.yaml:3:4: l: expected a list, got a string",
           "m.yaml:4:4: e: '$${literal}' does not match the pattern ^x$");
    done(&r);
}

Test(schema, properties_required_and_unknown_with_suggestion)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"additionalProperties\":false,"
        "\"required\":[\"name\",\"zone\"],\"properties\":{\"name\":{},"
        "\"zone\":{},\"machine_type\":{}}}",
        "name: a\nmachine_typ: b\nflavour: c\n");
    EXPECT(&r, "m.yaml:1:1: missing required property 'zone'",
           "m.yaml:2:1: unknown property 'machine_typ' (did you mean "
           "'machine_type'?)",
           "m.yaml:3:1: unknown property 'flavour'");
    done(&r);
}

Test(schema, missing_property_of_a_nested_map_points_at_its_key)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"enclave\":{\"type\":"
        "\"object\",\"required\":[\"memory_mib\"]}}}",
        "x: 1\nenclave:\n  cpu_count: 2\n");
    EXPECT(&r, "m.yaml:2:1: enclave: missing required property 'memory_mib'");
    done(&r);
}

Test(schema, misspelt_required_key_is_reported_once)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"additionalProperties\":false,"
        "\"required\":[\"image\"],\"properties\":{\"image\":{}}}",
        "imag: x\n");
    EXPECT(&r, "m.yaml:1:1: unknown property 'imag' (did you mean 'image'?)");
    done(&r);
}

Test(schema, additional_and_pattern_properties_and_property_names)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"propertyNames\":{\"title\":\"a lowercase "
        "name\",\"pattern\":\"^[a-z]+$\"},\"patternProperties\":{\"^x\":"
        "{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":"
        "\"string\"}}",
        "xa: 1\nxb: s\nab: [2]\nCd: ok\n");
    EXPECT(&r, "m.yaml:2:5: xb: expected an integer, got a string",
           "m.yaml:3:5: ab: expected a string, got a list",
           "m.yaml:4:1: 'Cd' is not a lowercase name");
    done(&r);
}

Test(schema, items_prefix_items_and_counts)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\","
        "\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":"
        "\"integer\"},\"minItems\":2,\"maxItems\":3},\"b\":{\"type\":"
        "\"array\",\"minItems\":1},\"c\":{\"type\":\"array\","
        "\"maxItems\":1}}}",
        "a: [true, x, 3]\nb: []\nc: [1, 2]\n");
    EXPECT(&r, "m.yaml:1:5: a[0]: expected a string, got a boolean",
           "m.yaml:1:11: a[1]: expected an integer, got a string",
           "m.yaml:2:1: b: expected at least 1 item, got 0",
           "m.yaml:3:8: c: expected at most 1 item, got 2");
    done(&r);
}

Test(schema, unique_items_names_the_first_copy)
{
    struct run r;

    run(&r, "{\"type\":\"array\",\"uniqueItems\":true}",
        "- a\n- {k: 1}\n- b\n- {k: 1}\n- a\n- '1'\n- 1\n");
    EXPECT(&r, "m.yaml:4:3: [3]: duplicate of item 1 (line 2)",
           "m.yaml:5:3: [4]: duplicate of item 0 (line 1)");
    done(&r);
}

Test(schema, enum_and_const)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"m\":{\"enum\":[\"direct\","
        "\"light\"]},\"v\":{\"const\":1},\"s\":{\"enum\":[\"only\"]},"
        "\"n\":{\"enum\":[1,2]}}}",
        "m: fast\nv: 2\ns: other\nn: 2\n");
    EXPECT(&r, "m.yaml:1:4: m: 'fast' is not one of \"direct\" or \"light\"",
           "m.yaml:2:4: v: expected 1, got '2'",
           "m.yaml:3:4: s: 'other' is not \"only\"");
    done(&r);
}

Test(schema, string_lengths_pattern_and_title)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"a\":{\"minLength\":1},"
        "\"b\":{\"minLength\":3},\"c\":{\"maxLength\":2},\"d\":{"
        "\"pattern\":\"^0x[0-9a-f]{4}$\"},\"e\":{\"title\":\"a short "
        "hash\",\"pattern\":\"^0x[0-9a-f]{4}$\"},\"f\":{\"maxLength\":2}}}",
        "a: ''\nb: ab\nc: abc\nd: 0x12\ne: 0x12345\nf: \"\xc3\xa9\xc3\xa9\"\n");
    EXPECT(&r, "m.yaml:1:4: a: must not be empty",
           "m.yaml:2:4: b: too short: 2 characters, at least 3",
           "m.yaml:3:4: c: too long: 3 characters, at most 2",
           "m.yaml:4:4: d: '0x12' does not match the pattern ^0x[0-9a-f]{4}$",
           "m.yaml:5:4: e: '0x12345' is not a short hash");
    done(&r);
}

Test(schema, formats)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"array\","
        "\"items\":{}},\"properties\":{\"cidr\":{\"items\":{\"format\":"
        "\"cidr\"}},\"uri\":{\"items\":{\"format\":\"uri\"}},\"host\":{"
        "\"items\":{\"format\":\"hostname\"}},\"mail\":{\"items\":{"
        "\"format\":\"email\"}},\"v4\":{\"items\":{\"format\":\"ipv4\"}},"
        "\"v6\":{\"items\":{\"format\":\"ipv6\"}},\"dt\":{\"items\":{"
        "\"format\":\"date-time\"}}}}",
        "cidr: [10.0.0.0/8, '::/0', 2001:db8::/32, 1.2.3.4/33, 1.2.3.4, "
        "1.2.3.4/08, '2001:db8::/129']\n"
        "uri: ['https://a.example:8545/x?y', 'http://[::1]:1', 'not a url', "
        "'https://']\n"
        "host: [kms.example.com, a-b.c, -a.com, a..b, a_b.com]\n"
        "mail: [sa@p.iam.gserviceaccount.com, nope, a@b]\n"
        "v4: [127.0.0.1, 256.0.0.1]\n"
        "v6: ['::1', '1::2::3']\n"
        "dt: [2026-11-25T09:39:34Z, 2026-11-25T09:39:34.5+01:00, "
        "2026-13-01T00:00:00Z, 2026-11-25 09:39]\n");
    EXPECT(&r,
           "m.yaml:1:43: cidr[3]: '1.2.3.4/33' is not an IPv4 or IPv6 network "
           "in CIDR notation (e.g. 203.0.113.7/32)",
           "m.yaml:1:55: cidr[4]: '1.2.3.4' is not an IPv4 or IPv6 network in "
           "CIDR notation (e.g. 203.0.113.7/32)",
           "m.yaml:1:64: cidr[5]: '1.2.3.4/08' is not an IPv4 or IPv6 network "
           "in CIDR notation (e.g. 203.0.113.7/32)",
           "m.yaml:1:76: cidr[6]: '2001:db8::/129' is not an IPv4 or IPv6 "
           "network in CIDR notation (e.g. 203.0.113.7/32)",
           "m.yaml:2:55: uri[2]: 'not a url' is not a URL",
           "m.yaml:2:68: uri[3]: 'https://' is not a URL",
           "m.yaml:3:32: host[2]: '-a.com' is not a hostname",
           "m.yaml:3:40: host[3]: 'a..b' is not a hostname",
           "m.yaml:3:46: host[4]: 'a_b.com' is not a hostname",
           "m.yaml:4:38: mail[1]: 'nope' is not an email address",
           "m.yaml:4:44: mail[2]: 'a@b' is not an email address",
           "m.yaml:5:17: v4[1]: '256.0.0.1' is not an IPv4 address",
           "m.yaml:6:13: v6[1]: '1::2::3' is not an IPv6 address",
           "m.yaml:7:57: dt[2]: '2026-13-01T00:00:00Z' is not an RFC 3339 "
           "date-time (e.g. 2026-11-25T09:39:34Z)",
           "m.yaml:7:79: dt[3]: '2026-11-25 09:39' is not an RFC 3339 "
           "date-time (e.g. 2026-11-25T09:39:34Z)");
    done(&r);
}

Test(schema, minimum_maximum_and_exclusive_bounds)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"additionalProperties\":{\"type\":"
        "\"number\",\"minimum\":1,\"maximum\":65535},\"properties\":{"
        "\"x\":{\"type\":\"number\",\"exclusiveMinimum\":0,"
        "\"exclusiveMaximum\":10}}}",
        "a: 0\nb: 65536\nc: 0x10\nd: 65535\nx: 0\ny: 1\nz: -.inf\nw: 10\n");
    EXPECT(&r, "m.yaml:1:4: a: 0 is out of range: must be at least 1",
           "m.yaml:2:4: b: 65536 is out of range: must be at most 65535",
           "m.yaml:5:4: x: 0 is out of range: must be more than 0",
           "m.yaml:7:4: z: -.inf is out of range: must be at least 1");
    done(&r);
}

Test(schema, ref_to_defs_and_all_of)
{
    struct run r;

    run(&r,
        "{\"$defs\":{\"port\":{\"type\":\"integer\",\"minimum\":1},"
        "\"even\":{\"title\":\"an even port\",\"type\":\"integer\"}},"
        "\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/$defs/"
        "port\"},\"q\":{\"allOf\":[{\"$ref\":\"#/$defs/port\"},{"
        "\"maximum\":5}]},\"r\":{\"$ref\":\"#/$defs/even\"}}}",
        "p: 0\nq: 9\nr: x\n");
    EXPECT(&r, "m.yaml:1:4: p: 0 is out of range: must be at least 1",
           "m.yaml:2:4: q: 9 is out of range: must be at most 5",
           "m.yaml:3:4: r: expected an even port, got a string");
    done(&r);
}

static const char *const hash_source_schema =
    "{\"$defs\":{\"h\":{\"title\":\"a hash\",\"type\":\"string\",\"pattern\":"
    "\"^0x[0-9a-f]{4}$\"}},\"type\":\"array\",\"items\":{\"oneOf\":[{\"$ref\":"
    "\"#/$defs/h\"},{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"image\"],\"properties\":{\"image\":{\"type\":\"string\"},"
    "\"allow_zero\":{\"type\":\"boolean\"}}},{\"type\":\"object\","
    "\"additionalProperties\":false,\"required\":[\"nitro\"],\"properties\":{"
    "\"nitro\":{\"type\":\"string\"},\"allow_zero\":{\"type\":\"boolean\"}}}]}}";

Test(schema, one_of_reports_the_closest_branch)
{
    struct run r;

    run(&r, hash_source_schema,
        "- 0x12ab\n- {image: a}\n- {nitro: b, allow_zero: true}\n- 0x12\n"
        "- {image: a, allow_zero: maybe}\n- {nitro: [b]}\n- [x]\n"
        "- {allow_zero: true}\n");
    EXPECT(&r, "m.yaml:4:3: [3]: '0x12' is not a hash",
           "m.yaml:5:26: [4].allow_zero: expected a boolean (true or false), "
           "got a string",
           "m.yaml:6:11: [5].nitro: expected a string, got a list",
           "m.yaml:7:3: [6]: expected a hash or a map, got a list",
           "m.yaml:8:3: [7]: missing required property 'image'");
    done(&r);
}

Test(schema, one_of_over_required_names_the_alternatives)
{
    struct run r;
    const char *sch = "{\"type\":\"object\",\"properties\":{\"chain\":{"
                      "\"type\":\"object\",\"oneOf\":[{\"required\":[\"key\"]},"
                      "{\"required\":[\"keystore\"]}]}}}";

    run(&r, sch, "chain: {url: x}\n");
    EXPECT(&r, "m.yaml:1:1: chain: missing one of 'key' or 'keystore'");
    done(&r);
    run(&r, sch, "chain: {key: x, keystore: y}\n");
    EXPECT(&r, "m.yaml:1:1: chain: 'key' and 'keystore' cannot be used "
               "together");
    done(&r);
    run(&r, sch, "chain: {keystore: y}\n");
    EXPECT_VALID(&r);
    done(&r);
}

Test(schema, one_of_more_than_one_and_any_of_and_not)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"a\":{\"oneOf\":[{"
        "\"type\":\"integer\"},{\"type\":\"number\"}]},\"b\":{\"anyOf\":[{"
        "\"type\":\"integer\"},{\"type\":\"number\"}]},\"c\":{\"anyOf\":[{"
        "\"type\":\"integer\"},{\"type\":\"boolean\"}]},\"d\":{\"not\":{"
        "\"type\":\"string\"}}}}",
        "a: 1\nb: 1\nc: x\nd: x\n");
    EXPECT(&r, "m.yaml:1:4: a: matches more than one of the allowed forms",
           "m.yaml:3:4: c: expected an integer or a boolean (true or false), "
           "got a string",
           "m.yaml:4:4: d: this value is not allowed here");
    done(&r);
}

Test(schema, errors_come_sorted_by_position_and_all_are_reported)
{
    struct run r;
    size_t n;

    n = run(&r,
            "{\"type\":\"object\",\"additionalProperties\":{\"type\":"
            "\"integer\"}}",
            "c: x\na: y\nb: {z: 1}\n");
    cr_assert_eq(n, 3);
    EXPECT(&r, "m.yaml:1:4: c: expected an integer, got a string",
           "m.yaml:2:4: a: expected an integer, got a string",
           "m.yaml:3:4: b: expected an integer, got a map");
    done(&r);
}

Test(schema, write_only_values_are_reported_as_secrets_and_never_quoted)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"string\","
        "\"writeOnly\":true,\"pattern\":\"^0x\"},\"m\":{\"type\":"
        "\"object\",\"additionalProperties\":{\"type\":\"string\","
        "\"writeOnly\":true}}}}",
        "k: hunter2\nm: {A: '${env:A}', B: b}\n");
    EXPECT(&r, "m.yaml:1:4: k: the value does not match the pattern ^0x");
    cr_assert_eq(r.secrets.n, 3);
    cr_assert_str_eq(r.secrets.nodes[0]->str, "hunter2");
    cr_assert_str_eq(r.secrets.nodes[1]->str, "${env:A}");
    cr_assert_str_eq(r.secrets.nodes[2]->str, "b");
    done(&r);
}

Test(schema, paths_quote_keys_that_are_not_plain)
{
    struct run r;

    run(&r,
        "{\"type\":\"object\",\"additionalProperties\":{\"type\":"
        "\"object\",\"additionalProperties\":{\"type\":\"integer\"}}}",
        "a.b: {c d: x}\n");
    EXPECT(&r, "m.yaml:1:12: [\"a.b\"][\"c d\"]: expected an integer, got a "
               "string");
    done(&r);
}

Test(schema, empty_document_is_null)
{
    struct run r;

    run(&r, "{\"type\":\"object\"}", "");
    cr_assert_eq(r.diags.n, 1);
    cr_assert_str_eq(r.diags.items[0].msg, "expected a map, got null");
    done(&r);
}

static void schema_fails(const char *json, const char *msg)
{
    struct kc_schema *s = NULL;
    struct kc_err err = { 0 };

    cr_assert_lt(kc_schema_parse(json, strlen(json), "t", &s, &err), 0);
    cr_assert_null(s);
    cr_assert_str_eq(err.msg, msg);
}

Test(schema, bad_schemas_are_refused_when_loaded)
{
    schema_fails("{\"type\":\"object\",\"propertys\":{}}",
                 "schema 't': #: unsupported keyword 'propertys'");
    schema_fails(
        "{\"properties\":{\"a\":{\"pattern\":\"(\"}}}",
        "schema 't': #/properties/a: bad pattern '(': Unmatched ( or \\(");
    schema_fails("{\"items\":{\"$ref\":\"#/$defs/nope\"}}",
                 "schema 't': #/items: dangling $ref '#/$defs/nope'");
    schema_fails("{\"format\":\"duration\"}",
                 "schema 't': #: unsupported format 'duration'");
    schema_fails("{\"type\":\"text\"}", "schema 't': #: bad type 'text'");
}

Test(schema, embedded_schemas_load)
{
    const char *names[] = { "manifest", "state", "plan" };

    for (size_t i = 0; i < KC_ARRAY_SIZE(names); i++) {
        struct kc_schema *s = NULL;
        struct kc_err err = { 0 };

        cr_assert_eq(kc_schema_load(names[i], &s, &err), 0, "%s: %s", names[i],
                     err.msg);
        kc_schema_free(s);
    }
}

Test(schema, json_values_validate_against_the_state_schema)
{
    struct json_object *obj = NULL;
    struct kc_schema *s = NULL;
    struct kc_diags d = { 0 };
    struct kc_err err = { 0 };
    const char *bad = "{\"format_version\": 2, \"lineage\": \"x\", \"serial\":"
                      " -1, \"deployment\": null, \"salt\": \"00\","
                      " \"resources\": {}, \"intents\": {}, \"generated\": {},"
                      " \"extra\": true}";
    char *line;

    cr_assert_eq(kc_schema_load("state", &s, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_json_parse(bad, strlen(bad), "bad", &obj, &err), 0);
    cr_assert_eq(kc_schema_validate_json(s, obj, "state.json", &d), 5);
    line = kc_diags_format(&d, 0);
    cr_assert_str_eq(line, "state.json:0:0: format_version: expected 1, got "
                           "'2'");
    free(line);
    cr_assert_str_eq(d.items[4].msg, "unknown property 'extra'");
    kc_diags_release(&d);
    cr_assert_eq(kc_schema_check_json("state", obj, &err), KC_EINVAL);
    cr_assert_str_eq(err.msg, "state: 5 errors, first: format_version: "
                              "expected 1, got '2'");
    json_object_put(obj);
    kc_schema_free(s);
}

Test(schema, interpolation_detection_honours_the_escape)
{
    cr_assert(kc_schema_has_interp("${env:A}", 8));
    cr_assert(kc_schema_has_interp("x$${y}${z}", 10));
    cr_assert_not(kc_schema_has_interp("$${env:A}", 9));
    cr_assert_not(kc_schema_has_interp("$ {x} $", 7));
}

Test(schema, unique_items_scales_and_names_the_first_of_many_copies)
{
    struct kc_buf yaml = { 0 };
    struct run r;
    size_t n;

    /* 20000 items: a quadratic check would take minutes under ASan. */
    for (size_t i = 0; i < 20000; i++)
        kc_buf_addf(&yaml, "- {k: %zu}\n", i % 2 ? i : 0);
    n = run(&r, "{\"type\":\"array\",\"uniqueItems\":true}", kc_buf_str(&yaml));
    cr_assert_eq(n, 9999);
    cr_assert_str_eq(r.diags.items[0].path, "[2]");
    cr_assert_str_eq(r.diags.items[0].msg, "duplicate of item 0 (line 1)");
    cr_assert_str_eq(r.diags.items[9998].path, "[19998]");
    done(&r);
    kc_buf_release(&yaml);
}

Test(schema, map_order_does_not_matter_for_unique_items)
{
    struct run r;

    run(&r, "{\"type\":\"array\",\"uniqueItems\":true}",
        "- {a: 1, b: 2}\n- {b: 2, a: 1}\n- {a: 1, b: '2'}\n");
    EXPECT(&r, "m.yaml:2:3: [1]: duplicate of item 0 (line 1)");
    done(&r);
}

Test(schema, bad_urls_are_quoted_without_their_path_or_query)
{
    struct run r;

    run(&r,
        "{\"type\":\"array\",\"items\":{\"format\":\"uri\",\"pattern\":"
        "\"^https://\",\"title\":\"an https URL\"}}",
        "- http://rpc.example.com/v2/SECRETKEY\n- https//x.example/?key=S\n");
    EXPECT(&r,
           "m.yaml:1:3: [0]: 'http://rpc.example.com...' is not an https "
           "URL",
           "m.yaml:2:3: [1]: 'https...' is not an https URL");
    cr_assert_null(strstr(r.diags.items[0].msg, "SECRET"));
    done(&r);
}
