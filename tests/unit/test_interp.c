/* tests/unit/test_interp.c: ${env:}, ${file:}, references, $${, sensitivity
 * and the errors, each with its line:col. */
#include "reconcile/interp.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/buf.h"

/* A fake environment: no test depends on the real one. */
static const char *fake_getenv(const char *name)
{
    static const struct {
        const char *name, *value;
    } vars[] = {
        { "RPC_URL", "https://rpc.example/v1/k3y-abcdef" },
        { "PRIVATE_KEY", "0x59c6995e998f97a5a0044966f0945389" },
        { "PORT", "12001" },
        { "EMPTY", "" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(vars); i++)
        if (!strcmp(vars[i].name, name))
            return vars[i].value;
    return NULL;
}

static char tmpdir[] = "/tmp/kc-interp-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    DIR *dir = opendir(tmpdir);
    struct dirent *e;

    cr_assert_not_null(dir);
    while ((e = readdir(dir))) {
        char *path;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        path = kc_xasprintf("%s/%s", tmpdir, e->d_name);
        cr_assert_eq(unlink(path), 0);
        free(path);
    }
    closedir(dir);
    cr_assert_eq(rmdir(tmpdir), 0);
}

TestSuite(interp, .init = setup, .fini = teardown);

static void write_file(const char *name, const char *text)
{
    char *path = kc_xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    free(path);
}

static struct kc_doc *parse(const char *text)
{
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(
        kc_manifest_parse("m.yaml", tmpdir, text, strlen(text), &doc, &err), 0,
        "%s", err.msg);
    return doc;
}

static struct kc_interp_opts opts_for(const struct kc_doc *doc)
{
    struct kc_interp_opts o = { 0 };

    o.doc = doc;
    o.getenv_fn = fake_getenv;
    return o;
}

/* Interpolates the value of top-level KEY; expects success. */
static struct kc_value *interp_ok(const struct kc_doc *doc, const char *key)
{
    struct kc_interp_opts o = opts_for(doc);
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_interp_node(&o, kc_node_get(doc->root, key), &v, &err), 0,
                 "%s", err.msg);
    cr_assert_not_null(v);
    return v;
}

/* Interpolates TEXT's top-level KEY; expects failure with MSG exactly. */
static void interp_fails(const char *text, const char *key, int code,
                         const char *msg)
{
    struct kc_doc *doc = parse(text);
    struct kc_interp_opts o = opts_for(doc);
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };
    int ret = kc_interp_node(&o, kc_node_get(doc->root, key), &v, &err);

    cr_assert_eq(ret, code, "got %d: %s", ret, err.msg);
    cr_assert_null(v);
    cr_assert_str_eq(err.msg, msg);
    kc_doc_free(doc);
}

Test(interp, env_value_is_sensitive_and_exact)
{
    struct kc_doc *doc = parse("rpc: ${env:RPC_URL}\n");
    struct kc_value *v = interp_ok(doc, "rpc");

    cr_assert_eq(v->type, KC_VALUE_STRING);
    cr_assert(kc_value_is_sensitive(v));
    cr_assert_null(kc_value_str(v));
    cr_assert_str_eq(kc_value_reveal(v, NULL),
                     "https://rpc.example/v1/k3y-abcdef");
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, env_in_a_longer_string_keeps_sensitivity)
{
    struct kc_doc *doc = parse("url: \"http://h:${env:PORT}/x\"\n");
    struct kc_value *v = interp_ok(doc, "url");
    struct kc_value *dup = kc_value_dup(v);
    struct kc_value *tail = kc_value_new_str("/more");
    struct kc_value *cat = kc_value_concat(dup, tail);
    struct json_object *j = kc_value_to_json(cat, "salt");

    cr_assert_eq(v->type, KC_VALUE_STRING);
    cr_assert_str_eq(kc_value_reveal(v, NULL), "http://h:12001/x");
    cr_assert(kc_value_is_sensitive(v));
    cr_assert(kc_value_is_sensitive(dup));
    cr_assert(kc_value_is_sensitive(cat));
    cr_assert_str_eq(kc_value_reveal(cat, NULL), "http://h:12001/x/more");
    cr_assert_null(strstr(json_object_to_json_string(j), "12001"));
    json_object_put(j);
    kc_value_free(v);
    kc_value_free(dup);
    kc_value_free(tail);
    kc_value_free(cat);
    kc_doc_free(doc);
}

Test(interp, sensitivity_survives_lists_and_maps)
{
    struct kc_doc *doc = parse("c:\n"
                               "  plain: abc\n"
                               "  list: [x, \"k=${env:PRIVATE_KEY}\"]\n");
    struct kc_value *v = interp_ok(doc, "c");
    const struct kc_value *list = kc_value_map_get(v, "list");
    struct kc_value *dup = kc_value_dup(v);

    cr_assert(kc_value_is_sensitive(v));
    cr_assert(kc_value_is_sensitive(dup));
    cr_assert(!kc_value_is_sensitive(kc_value_map_get(v, "plain")));
    cr_assert(!kc_value_is_sensitive(kc_value_list_get(list, 0)));
    cr_assert(kc_value_is_sensitive(kc_value_list_get(list, 1)));
    cr_assert_str_eq(kc_value_reveal(kc_value_list_get(list, 1), NULL),
                     "k=0x59c6995e998f97a5a0044966f0945389");
    kc_value_free(v);
    kc_value_free(dup);
    kc_doc_free(doc);
}

Test(interp, set_but_empty_env_is_an_empty_secret)
{
    struct kc_doc *doc = parse("e: ${env:EMPTY}\n");
    struct kc_value *v = interp_ok(doc, "e");

    cr_assert_str_eq(kc_value_reveal(v, NULL), "");
    cr_assert(kc_value_is_sensitive(v));
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, unset_env_names_variable_and_position)
{
    interp_fails("a: 1\nb: \"x-${env:NOPE_NOT_SET}\"\n", "b", KC_ENOENT,
                 "m.yaml:2:7: environment variable 'NOPE_NOT_SET' is not set "
                 "(used as ${env:NOPE_NOT_SET})");
}

Test(interp, unset_env_position_inside_a_block_scalar)
{
    interp_fails("a: 1\nb: |\n  line one\n  key=${env:NOPE}\n", "b", KC_ENOENT,
                 "m.yaml:4:7: environment variable 'NOPE' is not set (used as "
                 "${env:NOPE})");
}

Test(interp, file_is_read_relative_to_the_manifest_and_trimmed)
{
    struct kc_doc *doc =
        parse("k: ${file:key.txt}\nm: \"a-${file:key.txt}-b\"\n");
    struct kc_value *k, *m;

    write_file("key.txt", "s3cret-file-value\r\n\n");
    k = interp_ok(doc, "k");
    m = interp_ok(doc, "m");
    cr_assert(kc_value_is_sensitive(k));
    cr_assert_str_eq(kc_value_reveal(k, NULL), "s3cret-file-value");
    cr_assert(kc_value_is_sensitive(m));
    cr_assert_str_eq(kc_value_reveal(m, NULL), "a-s3cret-file-value-b");
    kc_value_free(k);
    kc_value_free(m);
    kc_doc_free(doc);
}

Test(interp, missing_file_names_it_and_position)
{
    char *want = kc_xasprintf("m.yaml:2:9: ${file:nope.txt}: cannot read "
                              "'%s/nope.txt': No such file or directory",
                              tmpdir);

    interp_fails("a: 1\nb: [x, \"${file:nope.txt}\"]\n", "b", KC_ENOENT, want);
    free(want);
}

Test(interp, directory_is_not_a_secret_file)
{
    char *want = kc_xasprintf("m.yaml:1:4: ${file:.}: cannot read '%s/.': is "
                              "a directory",
                              tmpdir);

    interp_fails("b: ${file:.}\n", "b", KC_EINVAL, want);
    free(want);
}

Test(interp, oversized_file_is_refused)
{
    char *path = kc_xasprintf("%s/big", tmpdir);
    FILE *f = fopen(path, "w");
    char *want = kc_xasprintf("m.yaml:1:4: ${file:big}: '%s' is larger than "
                              "the limit of 1048576 bytes",
                              path);

    cr_assert_not_null(f);
    for (int i = 0; i < (1 << 20) + 1; i++)
        fputc('a', f);
    fclose(f);
    interp_fails("b: ${file:big}\n", "b", KC_ERANGE, want);
    free(want);
    free(path);
}

Test(interp, escape_gives_a_literal_dollar_brace)
{
    struct kc_doc *doc = parse("a: \"$${env:X} and $$ and $x and $${\"\n");
    struct kc_value *v = interp_ok(doc, "a");

    cr_assert_str_eq(kc_value_str(v), "${env:X} and $$ and $x and ${");
    cr_assert(!kc_value_is_sensitive(v));
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, scalars_are_typed_per_yaml_1_2)
{
    struct kc_doc *doc = parse("m: {i: 0x10, o: 0o17, d: -42, b: true, "
                               "y: yes, n: ~, q: \"12\", s: on}\n");
    struct kc_value *v = interp_ok(doc, "m");

    cr_assert_eq(kc_value_int(kc_value_map_get(v, "i"), 0), 16);
    cr_assert_eq(kc_value_int(kc_value_map_get(v, "o"), 0), 15);
    cr_assert_eq(kc_value_int(kc_value_map_get(v, "d"), 0), -42);
    cr_assert_eq(kc_value_map_get(v, "b")->type, KC_VALUE_BOOL);
    cr_assert_str_eq(kc_value_str(kc_value_map_get(v, "y")), "yes");
    cr_assert_eq(kc_value_map_get(v, "n")->type, KC_VALUE_NULL);
    cr_assert_str_eq(kc_value_str(kc_value_map_get(v, "q")), "12");
    cr_assert_str_eq(kc_value_str(kc_value_map_get(v, "s")), "on");
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, interpolated_number_is_a_string)
{
    struct kc_doc *doc = parse("p: ${env:PORT}\n");
    struct kc_value *v = interp_ok(doc, "p");

    cr_assert_eq(v->type, KC_VALUE_STRING);
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, floats_huge_ints_and_long_hex_keep_their_text)
{
    struct kc_doc *doc =
        parse("m:\n"
              "  fee: 0.5\n"
              "  inf: -.inf\n"
              "  big: 99999999999999999999\n"
              "  addr: 0x59E4a36B01a87fD9D1A4C12377253FE9a7b018Ba\n"
              "  one: 0x0000000000000000000000000000000000000001\n"
              "  hash: 0x1078aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaa407d\n"
              "  id16: 0x7fffffffffffffff\n"
              "  max: 9223372036854775807\n");
    struct kc_value *v = interp_ok(doc, "m");
    static const char *strings[][2] = {
        { "fee", "0.5" },
        { "inf", "-.inf" },
        { "big", "99999999999999999999" },
        { "addr", "0x59E4a36B01a87fD9D1A4C12377253FE9a7b018Ba" },
        { "one", "0x0000000000000000000000000000000000000001" },
        { "hash", "0x1078aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                  "aa407d" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(strings); i++) {
        const struct kc_value *f = kc_value_map_get(v, strings[i][0]);

        cr_assert_eq(f->type, KC_VALUE_STRING, "%s", strings[i][0]);
        cr_assert_str_eq(kc_value_str(f), strings[i][1]);
    }
    cr_assert_eq(kc_value_map_get(v, "id16")->type, KC_VALUE_INT);
    cr_assert_eq(kc_value_int(kc_value_map_get(v, "id16"), 0), INT64_MAX);
    cr_assert_eq(kc_value_int(kc_value_map_get(v, "max"), 0), INT64_MAX);
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, syntax_errors_have_positions)
{
    interp_fails("a: x\nb: \"abc ${env:X\"\n", "b", KC_EINVAL,
                 "m.yaml:2:9: unterminated '${' (no closing '}'; write '$${' "
                 "for a literal '${')");
    interp_fails("b: pre-${vault:x/y}\n", "b", KC_EINVAL,
                 "m.yaml:1:8: unknown interpolation '${vault:x/y}': 'vault:' "
                 "is not a scheme (use env:, file: or a reference such as "
                 "kms_vms.NAME.external_ip)");
    interp_fails("b: ${RPC_URL}\n", "b", KC_EINVAL,
                 "m.yaml:1:4: '${RPC_URL}' is neither ${env:NAME}, "
                 "${file:PATH} nor a reference such as "
                 "kms_vms.NAME.external_ip (for an environment variable write "
                 "${env:RPC_URL})");
    interp_fails("b: ${env:1BAD}\n", "b", KC_EINVAL,
                 "m.yaml:1:4: '${env:1BAD}': not a variable name "
                 "([A-Za-z_][A-Za-z0-9_]*)");
    interp_fails("b: x${}\n", "b", KC_EINVAL, "m.yaml:1:5: empty '${}'");
    interp_fails("b: ${env:${X}}\n", "b", KC_EINVAL,
                 "m.yaml:1:4: nested '${' inside '${…}' is not supported");
}

struct fake_resolver {
    int calls;
};

static int resolve(void *ctx, const char *ref, struct kc_value **out,
                   struct kc_err *err)
{
    struct fake_resolver *r = ctx;

    r->calls++;
    if (!strcmp(ref, "kms_vms.dstack-kms.external_ip"))
        *out = kc_value_new_str("203.0.113.9");
    else if (!strcmp(ref, "contracts.kms.deploy_block"))
        *out = kc_value_new_int(1234);
    else if (!strcmp(ref, "nitro_hosts.h1.ami"))
        return kc_err_set(err, KC_EIO, "state unreadable");
    else
        *out = NULL;
    return 0;
}

static const char *refs_doc =
    "contracts:\n"
    "  kms: {}\n"
    "  apps:\n"
    "    nitro-keys: {}\n"
    "kms_vms:\n"
    "  dstack-kms:\n"
    "    url: \"https://${kms_vms.dstack-kms.external_ip}:8000\"\n"
    "    block: ${contracts.kms.deploy_block}\n"
    "    at: \"from ${contracts.kms.deploy_block}\"\n"
    "    app: ${contracts.apps.nitro-keys.app_id}\n"
    "    both: \"${contracts.apps.nitro-keys.app_id}/${env:PRIVATE_KEY}\"\n"
    "nitro_hosts:\n"
    "  h1:\n"
    "    ami: ${nitro_hosts.h1.ami}\n";

Test(interp, references_resolve_known_and_stay_unknown_otherwise)
{
    struct kc_doc *doc = parse(refs_doc);
    struct fake_resolver r = { 0 };
    struct kc_interp_opts o = opts_for(doc);
    const struct kc_node *vm =
        kc_node_get(kc_node_get(doc->root, "kms_vms"), "dstack-kms");
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };
    const struct kc_value *f;

    o.resolve = resolve;
    o.resolve_ctx = &r;
    cr_assert_eq(kc_interp_node(&o, vm, &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(kc_value_str(kc_value_map_get(v, "url")),
                     "https://203.0.113.9:8000");
    f = kc_value_map_get(v, "block");
    cr_assert_eq(f->type, KC_VALUE_INT);
    cr_assert_eq(kc_value_int(f, 0), 1234);
    cr_assert_str_eq(kc_value_str(kc_value_map_get(v, "at")), "from 1234");
    f = kc_value_map_get(v, "app");
    cr_assert_eq(f->type, KC_VALUE_UNKNOWN);
    cr_assert_str_eq(f->u.ref, "contracts.apps.nitro-keys.app_id");
    f = kc_value_map_get(v, "both");
    cr_assert_eq(f->type, KC_VALUE_UNKNOWN);
    cr_assert_str_eq(f->u.ref, "contracts.apps.nitro-keys.app_id");
    cr_assert(kc_value_is_sensitive(f));
    cr_assert_eq(r.calls, 5);
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, without_resolver_every_reference_is_unknown)
{
    struct kc_doc *doc = parse(refs_doc);
    struct kc_interp_opts o = opts_for(doc);
    const struct kc_node *vm =
        kc_node_get(kc_node_get(doc->root, "kms_vms"), "dstack-kms");
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_interp_node(&o, kc_node_get(vm, "url"), &v, &err), 0);
    cr_assert_eq(v->type, KC_VALUE_UNKNOWN);
    cr_assert_str_eq(v->u.ref, "kms_vms.dstack-kms.external_ip");
    cr_assert(kc_value_has_unknown(v));
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, resolver_error_gets_the_position)
{
    struct kc_doc *doc = parse(refs_doc);
    struct fake_resolver r = { 0 };
    struct kc_interp_opts o = opts_for(doc);
    const struct kc_node *h =
        kc_node_get(kc_node_get(doc->root, "nitro_hosts"), "h1");
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    o.resolve = resolve;
    o.resolve_ctx = &r;
    cr_assert_eq(kc_interp_node(&o, h, &v, &err), KC_EIO);
    cr_assert_null(v);
    cr_assert_str_eq(err.msg,
                     "m.yaml:14:10: ${nitro_hosts.h1.ami}: state unreadable");
    kc_doc_free(doc);
}

Test(interp, reference_to_missing_name_or_attribute_fails_interp)
{
    interp_fails("kms_vms: {a: {}}\nx: \"${kms_vms.b.external_ip}\"\n", "x",
                 KC_EINVAL,
                 "m.yaml:2:5: reference 'kms_vms.b.external_ip': no kms_vms "
                 "named 'b' in the manifest");
}

Test(interp, log_learns_every_secret)
{
    struct kc_doc *doc = parse("a: ${env:PRIVATE_KEY}\nb: x${file:k}\n");
    struct kc_log log;
    struct kc_interp_opts o = opts_for(doc);
    struct kc_buf out = { 0 };
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };
    const char *line = "key 0x59c6995e998f97a5a0044966f0945389 and "
                       "file-secret-9876 end";

    write_file("k", "file-secret-9876\n");
    kc_log_init(&log, KC_LOG_INFO);
    o.log = &log;
    cr_assert_eq(kc_interp_node(&o, doc->root, &v, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_log_redact(&log, line, strlen(line), &out), 0);
    cr_assert_str_eq(kc_buf_str(&out), "key [redacted] and [redacted] end");
    kc_buf_release(&out);
    kc_value_free(v);
    kc_log_release(&log);
    kc_doc_free(doc);
}

Test(interp, check_doc_reports_every_problem_with_path_and_position)
{
    struct kc_doc *doc = parse(
        "contracts:\n"
        "  kms: {}\n"
        "kms_vms:\n"
        "  dstack-kms:\n"
        "    a: ${kms_vms.dstack-kms.external_ip}\n"
        "    b: ${kms_vms.other.external_ip}\n"
        "    c: ${kms_vms.dstack-kms.colour}\n"
        "    d: [ok, \"${contracts.apps.x.app_id}\"]\n"
        "    e: ${gcp.x.y}\n"
        "    f: ${kms_vms.dstack-kms}\n"
        "    g: \"${env:UNSET_IS_FINE_HERE} ${file:/nonexistent} ${bad\"\n"
        "    ${k}: 1\n");
    struct kc_diags d = { 0 };
    static const char *want[] = {
        "m.yaml:6:8: kms_vms.dstack-kms.b: reference "
        "'kms_vms.other.external_ip': no kms_vms named 'other' in the "
        "manifest",
        "m.yaml:7:8: kms_vms.dstack-kms.c: reference "
        "'kms_vms.dstack-kms.colour': unknown attribute 'colour' "
        "(kms_vms.NAME has external_ip, internal_ip, self_link, "
        "compose_hash, instance_id, app_id)",
        "m.yaml:8:14: kms_vms.dstack-kms.d[1]: reference "
        "'contracts.apps.x.app_id': 'apps' is not in the manifest",
        "m.yaml:9:8: kms_vms.dstack-kms.e: reference 'gcp.x.y' names "
        "nothing that can be referenced (one of kms_vms.NAME.ATTR, "
        "nitro_hosts.NAME.ATTR, contracts.kms.ATTR, "
        "contracts.apps.NAME.ATTR)",
        "m.yaml:10:8: kms_vms.dstack-kms.f: reference 'kms_vms.dstack-kms' "
        "must have the form kms_vms.NAME.ATTR",
        "m.yaml:11:56: kms_vms.dstack-kms.g: unterminated '${' (no closing "
        "'}'; write '$${' for a literal '${')",
        "m.yaml:12:5: kms_vms.dstack-kms.${k}: keys are not interpolated: "
        "'${' in a key is not allowed",
    };

    kc_interp_check_doc(doc, &d);
    kc_diags_sort(&d);
    cr_assert_eq(d.n, KC_ARRAY_SIZE(want));
    for (size_t i = 0; i < d.n; i++) {
        char *line = kc_diags_format(&d, i);

        cr_assert_str_eq(line, want[i]);
        free(line);
    }
    kc_diags_release(&d);
    kc_doc_free(doc);
}

Test(interp, check_doc_caps_the_number_of_diagnostics)
{
    struct kc_buf text = { 0 };
    struct kc_doc *doc;
    struct kc_diags d = { 0 };

    kc_buf_addstr(&text, "l:\n");
    for (int i = 0; i < 150; i++)
        kc_buf_addstr(&text, "  - ${nope.x.y}\n");
    doc = parse(kc_buf_str(&text));
    kc_interp_check_doc(doc, &d);
    cr_assert_eq(d.n, KC_INTERP_MAX_DIAGS + 1);
    cr_assert_str_eq(d.items[KC_INTERP_MAX_DIAGS].msg,
                     "more than 100 interpolation problems; stopped checking");
    kc_diags_release(&d);
    kc_doc_free(doc);
    kc_buf_release(&text);
}

Test(interp, refs_lists_each_reference_once_sorted)
{
    struct kc_doc *doc = parse(refs_doc);
    char **refs = NULL;
    size_t n = 0;

    kc_interp_refs(kc_node_get(doc->root, "kms_vms"), &refs, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(refs[0], "contracts.apps.nitro-keys.app_id");
    cr_assert_str_eq(refs[1], "contracts.kms.deploy_block");
    cr_assert_str_eq(refs[2], "kms_vms.dstack-kms.external_ip");
    kc_interp_refs_free(refs, n);
    kc_interp_refs(kc_node_get(doc->root, "contracts"), &refs, &n);
    cr_assert_eq(n, 0);
    cr_assert_null(refs);
    kc_doc_free(doc);
}

Test(interp, secret_source_is_exactly_one_env_or_file)
{
    struct kc_doc *doc = parse("a: ${env:K}\nb: '${file:~/k}'\n"
                               "c: x${env:K}\nd: ${env:K}${env:K}\n"
                               "e: 0xabc\nf: ${kms_vms.a.app_id}\n"
                               "g: $${env:K}\nh: [\"${env:K}\"]\n");

    cr_assert(kc_interp_is_secret_source(kc_node_get(doc->root, "a")));
    cr_assert(kc_interp_is_secret_source(kc_node_get(doc->root, "b")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "c")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "d")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "e")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "f")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "g")));
    cr_assert(!kc_interp_is_secret_source(kc_node_get(doc->root, "h")));
    kc_doc_free(doc);
}

Test(interp, file_from_home_is_expanded)
{
    char *home = kc_xstrdup(getenv("HOME") ? getenv("HOME") : "");
    struct kc_doc *doc = parse("k: ${file:~/tok}\n");
    struct kc_value *v;

    write_file("tok", "home-token\n");
    cr_assert_eq(setenv("HOME", tmpdir, 1), 0);
    v = interp_ok(doc, "k");
    cr_assert_str_eq(kc_value_reveal(v, NULL), "home-token");
    cr_assert_eq(setenv("HOME", home, 1), 0);
    kc_value_free(v);
    kc_doc_free(doc);
    free(home);
}

static int resolve_shapes(void *ctx, const char *ref, struct kc_value **out,
                          struct kc_err *err)
{
    (void)ctx;
    (void)err;
    if (!strcmp(ref, "nitro_hosts.h1.instance_id")) {
        *out = kc_value_new_list();
        kc_value_list_push(*out, kc_value_new_str("i-1"));
    } else if (!strcmp(ref, "nitro_hosts.h1.private_ip")) {
        *out = kc_value_new_secret("10.0.0.7", 8);
    } else if (!strcmp(ref, "nitro_hosts.h1.public_ip")) {
        *out = kc_value_new_bool(true);
    }
    return 0;
}

Test(interp, resolved_values_keep_their_shape_alone_and_must_be_scalars_inside)
{
    struct kc_doc *doc =
        parse("nitro_hosts:\n"
              "  h1:\n"
              "    list: ${nitro_hosts.h1.instance_id}\n"
              "    secret: \"ip=${nitro_hosts.h1.private_ip}\"\n"
              "    flag: \"up=${nitro_hosts.h1.public_ip}\"\n"
              "    bad: \"ids=${nitro_hosts.h1.instance_id}\"\n");
    const struct kc_node *h =
        kc_node_get(kc_node_get(doc->root, "nitro_hosts"), "h1");
    struct kc_interp_opts o = opts_for(doc);
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    o.resolve = resolve_shapes;
    cr_assert_eq(kc_interp_node(&o, kc_node_get(h, "list"), &v, &err), 0);
    cr_assert_eq(v->type, KC_VALUE_LIST);
    cr_assert_str_eq(kc_value_str(kc_value_list_get(v, 0)), "i-1");
    kc_value_free(v);
    cr_assert_eq(kc_interp_node(&o, kc_node_get(h, "secret"), &v, &err), 0);
    cr_assert(kc_value_is_sensitive(v));
    cr_assert_str_eq(kc_value_reveal(v, NULL), "ip=10.0.0.7");
    kc_value_free(v);
    cr_assert_eq(kc_interp_node(&o, kc_node_get(h, "flag"), &v, &err), 0);
    cr_assert_str_eq(kc_value_str(v), "up=true");
    kc_value_free(v);
    cr_assert_eq(kc_interp_node(&o, kc_node_get(h, "bad"), &v, &err),
                 KC_EINVAL);
    cr_assert_null(v);
    cr_assert_str_eq(err.msg, "m.yaml:6:15: ${nitro_hosts.h1.instance_id} is "
                              "not a string, number or boolean and cannot be "
                              "part of a longer string");
    kc_doc_free(doc);
}

Test(interp, nul_in_a_value_is_refused_and_keys_stay_literal)
{
    struct kc_doc *doc = parse("m: {\"${env:PORT}\": 1}\n");
    struct kc_value *v = interp_ok(doc, "m");

    cr_assert_eq(kc_value_int(kc_value_map_get(v, "${env:PORT}"), 0), 1);
    kc_value_free(v);
    kc_doc_free(doc);
    interp_fails("a: 1\nb: \"x\\0y\"\n", "b", KC_EINVAL,
                 "m.yaml:2:4: value holds a NUL character");
}

Test(interp, null_node_is_null_and_no_doc_skips_name_checks)
{
    struct kc_doc *doc = parse("x: ${kms_vms.not-in-doc.external_ip}\n");
    struct kc_interp_opts o = { .getenv_fn = fake_getenv };
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_interp_node(&o, NULL, &v, &err), 0);
    cr_assert_eq(v->type, KC_VALUE_NULL);
    kc_value_free(v);
    cr_assert_eq(kc_interp_node(&o, kc_node_get(doc->root, "x"), &v, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(v->type, KC_VALUE_UNKNOWN);
    kc_value_free(v);
    kc_doc_free(doc);
}

Test(interp, check_ref_accepts_every_form_in_the_table)
{
    static const char *good[] = {
        "kms_vms.a.external_ip",      "kms_vms.a.internal_ip",
        "kms_vms.a.self_link",        "kms_vms.a.compose_hash",
        "kms_vms.a.instance_id",      "kms_vms.a.app_id",
        "nitro_hosts.h.instance_id",  "nitro_hosts.h.public_ip",
        "nitro_hosts.h.private_ip",   "nitro_hosts.h.ami",
        "contracts.kms.address",      "contracts.kms.app_implementation",
        "contracts.kms.deploy_block", "contracts.apps.app-1.app_id",
    };
    static const char *bad[] = {
        "kms_vms.a",
        "kms_vms.a.external_ip.x",
        "contracts.kms",
        "contracts.apps.x",
        "contracts.apps.x.address",
        "nitro_hosts..ami",
        "contracts.other.address",
        "x.y",
    };
    struct kc_err err = { 0 };

    for (size_t i = 0; i < KC_ARRAY_SIZE(good); i++)
        cr_assert_eq(kc_interp_check_ref(NULL, good[i], &err), 0, "%s: %s",
                     good[i], err.msg);
    for (size_t i = 0; i < KC_ARRAY_SIZE(bad); i++)
        cr_assert_eq(kc_interp_check_ref(NULL, bad[i], &err), KC_EINVAL, "%s",
                     bad[i]);
}

Test(interp, log_learns_each_line_of_a_multi_line_secret_file)
{
    struct kc_doc *doc = parse("k: ${file:pem}\n");
    struct kc_log log;
    struct kc_interp_opts o = opts_for(doc);
    struct kc_buf out = { 0 };
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };
    const char *line = "got MIIEvQIBADANBgkqhkiG9w0B and short ab\n";

    write_file("pem", "-----BEGIN PRIVATE KEY-----\r\n"
                      "MIIEvQIBADANBgkqhkiG9w0B\r\n"
                      "ab\r\n"
                      "-----END PRIVATE KEY-----\r\n");
    kc_log_init(&log, KC_LOG_INFO);
    o.log = &log;
    cr_assert_eq(kc_interp_node(&o, kc_node_get(doc->root, "k"), &v, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(kc_log_redact(&log, line, strlen(line), &out), 0);
    cr_assert_str_eq(kc_buf_str(&out), "got [redacted] and short ab\n");
    kc_buf_release(&out);
    kc_value_free(v);
    kc_log_release(&log);
    kc_doc_free(doc);
}

Test(interp, tilde_forms_that_cannot_be_expanded_are_errors)
{
    char *home = kc_xstrdup(getenv("HOME") ? getenv("HOME") : "");

    interp_fails("k: ${file:~root/key}\n", "k", KC_EINVAL,
                 "m.yaml:1:4: ${file:~root/key}: only '~/' is expanded, not "
                 "'~user/'; write the full path");
    cr_assert_eq(unsetenv("HOME"), 0);
    interp_fails("k: ${file:~/key}\n", "k", KC_EINVAL,
                 "m.yaml:1:4: ${file:~/key}: HOME is not set, so '~/' cannot "
                 "be expanded");
    cr_assert_eq(setenv("HOME", home, 1), 0);
    free(home);
}

Test(interp, total_expansion_is_bounded, .timeout = 30)
{
    struct kc_buf text = { 0 };
    char *path = kc_xasprintf("%s/mib", tmpdir);
    FILE *f = fopen(path, "w");
    struct kc_doc *doc;
    struct kc_interp_opts o;
    struct kc_value *v = NULL;
    struct kc_err err = { 0 };

    cr_assert_not_null(f);
    for (int i = 0; i < (1 << 20) - 1; i++)
        fputc('s', f);
    fclose(f);
    /* 16 reads of 1 MiB - 1 fit in 16 MiB; the 17th does not. */
    kc_buf_addstr(&text, "l:\n");
    for (int i = 0; i < 20; i++)
        kc_buf_addstr(&text, "  - ${file:mib}\n");
    doc = parse(kc_buf_str(&text));
    o = opts_for(doc);
    cr_assert_eq(kc_interp_node(&o, doc->root, &v, &err), KC_ERANGE);
    cr_assert_null(v);
    cr_assert_str_eq(err.msg, "m.yaml:18:5: interpolation would produce more "
                              "than 16777216 bytes in all");
    kc_doc_free(doc);
    kc_buf_release(&text);
    free(path);
}

Test(interp, long_values_with_many_dollars_are_linear, .timeout = 20)
{
    struct kc_buf text = { 0 };
    struct kc_doc *doc;
    struct kc_value *v;

    kc_buf_addstr(&text, "a: \"${env:PORT}");
    for (int i = 0; i < 2000000; i++)
        kc_buf_addch(&text, '$');
    kc_buf_addstr(&text, " ${env:PORT}\"\n");
    doc = parse(kc_buf_str(&text));
    v = interp_ok(doc, "a");
    cr_assert(kc_value_is_sensitive(v));
    {
        size_t len;
        const char *s = kc_value_reveal(v, &len);

        cr_assert_eq(len, 5 + 2000000 + 1 + 5);
        cr_assert_eq(memcmp(s, "12001$$", 7), 0);
        cr_assert_eq(memcmp(s + len - 7, "$ 12001", 7), 0);
    }
    kc_value_free(v);
    kc_doc_free(doc);
    kc_buf_release(&text);
}

Test(interp, dollar_before_an_escape_stays_literal)
{
    struct kc_doc *doc = parse("a: \"$$${env:PORT}\"\nb: \"$${env:PORT}$\"\n");
    struct kc_value *a = interp_ok(doc, "a"), *b = interp_ok(doc, "b");

    /* "$" then the escape "$${": never an expansion. */
    cr_assert_str_eq(kc_value_str(a), "$${env:PORT}");
    cr_assert_str_eq(kc_value_str(b), "${env:PORT}$");
    kc_value_free(a);
    kc_value_free(b);
    kc_doc_free(doc);
}

Test(interp, odd_bytes_inside_braces_are_named)
{
    interp_fails("b: \"${kms_vms.a b.x}\"\n", "b", KC_EINVAL,
                 "m.yaml:1:5: '${kms_vms.a b.x}' is not a reference: byte "
                 "0x20 (a reference is SECTION.NAME.ATTR of letters, digits, "
                 "'-' and '_')");
    interp_fails("b: \"${kms_vms.a/b.x}\"\n", "b", KC_EINVAL,
                 "m.yaml:1:5: '${kms_vms.a/b.x}' is not a reference: "
                 "character '/' (a reference is SECTION.NAME.ATTR of letters, "
                 "digits, '-' and '_')");
    interp_fails("b: \"${env:A\\tB}\"\n", "b", KC_EINVAL,
                 "m.yaml:1:5: '${…}' holds a line break or control character "
                 "(byte 0x09)");
}
