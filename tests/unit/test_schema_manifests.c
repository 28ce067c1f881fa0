/* tests/unit/test_schema_manifests.c: every manifest under
 * tests/data/manifests/invalid/ fails with exactly the diagnostics of its
 * .expect file ("LINE:COL: PATH: MESSAGE" per line, without the file name);
 * the manifests/ and tests/data/manifests/valid/ YAML files are valid. */
#include "reconcile/check.h"

#include <criterion/criterion.h>
#include <dirent.h>

#include "reconcile/buf.h"

static char *src_path(const char *rel)
{
    const char *src = getenv("KC_SRC_DIR");

    return kc_xasprintf("%s/%s", src ? src : ".", rel);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted *.yaml names of folder DIR; *N is set. */
static char **list_yaml(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;

    cr_assert_not_null(d, "cannot open %s", dir);
    *n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);

        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        kc_xgrow(&names, &cap, *n + 1, sizeof(*names));
        names[(*n)++] = kc_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, *n, sizeof(*names), cmp_str);
    return names;
}

/* Runs the whole check on PATH; returns its diagnostics as text, one per
 * line, each without the leading "PATH:". */
static char *check_file(const char *path)
{
    struct kc_doc *doc = NULL;
    struct kc_diags d = { 0 };
    struct kc_err err = { 0 };
    struct kc_buf out = { 0 };
    size_t plen = strlen(path);

    if (kc_manifest_load(path, &doc, &err) < 0) {
        const char *m = err.msg;

        if (strncmp(m, path, plen) == 0 && m[plen] == ':')
            m += plen + 1;
        kc_buf_addf(&out, "%s\n", m);
        return kc_buf_detach(&out, NULL);
    }
    kc_manifest_check(doc, NULL, &d);
    for (size_t i = 0; i < d.n; i++) {
        char *line = kc_diags_format(&d, i);
        const char *m = line;

        if (strncmp(m, path, plen) == 0 && m[plen] == ':')
            m += plen + 1;
        kc_buf_addf(&out, "%s\n", m);
        free(line);
    }
    kc_diags_release(&d);
    kc_doc_free(doc);
    return kc_buf_detach(&out, NULL);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    struct kc_buf b = { 0 };
    char chunk[4096];
    size_t n;

    cr_assert_not_null(f, "cannot open %s", path);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        kc_buf_add(&b, chunk, n);
    fclose(f);
    return kc_buf_detach(&b, NULL);
}

Test(schema_manifests, each_invalid_manifest_fails_with_its_expected_errors)
{
    char *dir = src_path("tests/data/manifests/invalid");
    size_t n, failed = 0;
    char **names = list_yaml(dir, &n);

    cr_assert_geq(n, 30, "only %zu invalid manifests", n);
    for (size_t i = 0; i < n; i++) {
        char *path = kc_xasprintf("%s/%s", dir, names[i]);
        char *exp_path = kc_xasprintf("%s/%.*s.expect", dir,
                                      (int)(strlen(names[i]) - 5), names[i]);
        char *got = check_file(path);
        char *want = read_text(exp_path);

        cr_expect_neq(want[0], '\0', "%s: empty .expect", names[i]);
        if (strcmp(got, want) != 0) {
            cr_log_error("%s:\n--- got\n%s--- want\n%s", names[i], got, want);
            failed++;
        }
        free(got);
        free(want);
        free(exp_path);
        free(path);
        free(names[i]);
    }
    free(names);
    free(dir);
    cr_assert_eq(failed, 0, "%zu of %zu invalid manifests differ", failed, n);
}

static void all_valid(const char *rel, size_t at_least)
{
    char *dir = src_path(rel);
    size_t n, failed = 0;
    char **names = list_yaml(dir, &n);

    cr_assert_geq(n, at_least);
    for (size_t i = 0; i < n; i++) {
        char *path = kc_xasprintf("%s/%s", dir, names[i]);
        char *got = check_file(path);

        if (got[0]) {
            cr_log_error("%s is not valid:\n%s", names[i], got);
            failed++;
        }
        free(got);
        free(path);
        free(names[i]);
    }
    free(names);
    free(dir);
    cr_assert_eq(failed, 0);
}

Test(schema_manifests, shipped_manifests_are_valid)
{
    all_valid("manifests", 3);
}

Test(schema_manifests, valid_edge_cases_are_valid)
{
    all_valid("tests/data/manifests/valid", 1);
}

Test(schema_manifests, literal_secrets_pass_with_the_option)
{
    char *path =
        src_path("tests/data/manifests/invalid/literal-private-key.yaml");
    struct kc_doc *doc = NULL;
    struct kc_diags d = { 0 };
    struct kc_err err = { 0 };
    struct kc_check_opts opts = { .allow_literal_secrets = true };

    cr_assert_eq(kc_manifest_load(path, &doc, &err), 0, "%s", err.msg);
    cr_assert_eq(kc_manifest_check(doc, &opts, &d), 0);
    cr_assert_eq(d.n, 0);
    kc_doc_free(doc);
    free(path);
}

/* xorshift64*: a fixed sequence, so a failure can be replayed. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Every value of the shipped manifests replaced, one at a time and then
 * several at once, by values of other kinds: the checks must report, never
 * crash or leak (ASan), whatever shape the schema found wrong. */
Test(schema_manifests, mutated_manifests_never_crash_the_checks, .timeout = 300)
{
    static const char *const repl[] = {
        "[x, {a: 1}]",
        "{}",
        "~",
        "0",
        "-1",
        "true",
        "''",
        "\"${env:X}\"",
        "\"${kms_vms.nope.external_ip}\"",
        "[]",
        "{onboard_from: dstack-kms}",
        "0x0000000000000000000000000000000000000000000000000000000000000000",
        "{port: 18000}",
        "[{port: 1}, {port: 1}]",
        "{hash: 0x00, image: x}",
        "\"$${x}\"",
        "99999999999999999999999",
        "1.5",
        "direct",
        "light",
    };
    static const char *const files[] = {
        "manifests/sandbox.yaml",
        "manifests/gcp-nitro-light.yaml",
        "tests/data/manifests/valid/unquoted-hex-and-interpolation.yaml",
    };
    uint64_t seed = 0x6b6d7363746cull;
    size_t checked = 0;

    for (size_t f = 0; f < KC_ARRAY_SIZE(files); f++) {
        char *path = src_path(files[f]);
        char *text = read_text(path);
        size_t *vals = NULL, nvals = 0, cap = 0;

        /* Offsets just after ": " on lines that are not comments. */
        for (char *p = text; (p = strstr(p, ": ")); p += 2) {
            char *bol = p;

            while (bol > text && bol[-1] != '\n')
                bol--;
            if (bol[strspn(bol, " -")] == '#')
                continue;
            kc_xgrow(&vals, &cap, nvals + 1, sizeof(*vals));
            vals[nvals++] = (size_t)(p + 2 - text);
        }
        for (size_t it = 0; it < 3 * nvals; it++) {
            struct kc_buf b = { 0 };
            struct kc_doc *doc = NULL;
            struct kc_diags d = { 0 };
            struct kc_err err = { 0 };
            size_t nmut = it < nvals ? 1 : 1 + next_rand(&seed) % 4;
            size_t at[4];
            size_t prev = 0;

            for (size_t m = 0; m < nmut; m++)
                at[m] = it < nvals ? vals[it] : vals[next_rand(&seed) % nvals];
            /* Apply in text order: the value runs to the end of its line. */
            for (size_t m = 0; m < nmut; m++)
                for (size_t k = m + 1; k < nmut; k++)
                    if (at[k] < at[m]) {
                        size_t t = at[k];

                        at[k] = at[m];
                        at[m] = t;
                    }
            for (size_t m = 0; m < nmut; m++) {
                size_t eol;

                if (at[m] < prev)
                    continue;
                eol = at[m] + strcspn(text + at[m], "\n");
                kc_buf_add(&b, text + prev, at[m] - prev);
                kc_buf_addstr(&b, repl[next_rand(&seed) % KC_ARRAY_SIZE(repl)]);
                prev = eol;
            }
            kc_buf_addstr(&b, text + prev);
            if (kc_manifest_parse("m.yaml", ".", kc_buf_str(&b), b.len, &doc,
                                  &err) == 0) {
                kc_manifest_check(doc, NULL, &d);
                for (size_t i = 0; i < d.n; i++)
                    cr_assert(d.items[i].pos.line > 0 && d.items[i].msg[0],
                              "diagnostic without a position or message");
                checked++;
            }
            kc_diags_release(&d);
            kc_doc_free(doc);
            kc_buf_release(&b);
        }
        free(vals);
        free(text);
        free(path);
    }
    cr_assert_gt(checked, 300, "only %zu mutated manifests parsed", checked);
}

/* Large manifests stay fast: nothing in the checks is quadratic (a
 * regression here shows as a timeout under ASan). */
Test(schema_manifests, large_manifests_are_checked_in_near_linear_time,
     .timeout = 60)
{
    struct kc_buf b = { 0 };
    struct kc_doc *doc = NULL;
    struct kc_diags d = { 0 };
    struct kc_err err = { 0 };
    size_t literal = 0, missing_app = 0, dup = 0;

    kc_buf_addstr(&b,
                  "version: 1\nname: big\n"
                  "providers:\n"
                  "  gcp: {project: my-project, zone: us-central1-a, "
                  "bucket: my-bucket}\n"
                  "  chain: {rpc_url: 'https://rpc.example.com', "
                  "chain_id: 1, private_key: '${env:PK}'}\n"
                  "contracts:\n  artifacts: ./a\n  kms: {}\n  os_images:\n");
    for (size_t i = 0; i < 5000; i++)
        kc_buf_addf(&b, "    - 0x%064zx\n", 1 + i % 2500);
    kc_buf_addstr(&b, "  apps:\n");
    for (size_t i = 0; i < 2000; i++)
        kc_buf_addf(&b, "    app-%zu: {}\n", i);
    kc_buf_addstr(&b, "kms_vms:\n  kms:\n    os_image: img\n"
                      "    key_provider: tpm\n    domain: kms.example.com\n"
                      "    mode: direct\n    user_config:\n"
                      "      ETH_RPC_URL: '${env:RPC}'\n");
    for (size_t i = 0; i < 20000; i++)
        kc_buf_addf(&b, "      K%zu: literal\n", i);
    kc_buf_addstr(&b, "nitro_hosts:\n");
    for (size_t i = 0; i < 2000; i++)
        kc_buf_addf(&b,
                    "  h%zu: {instance_type: c5.xlarge, enclave: "
                    "{cpu_count: 2, memory_mib: 512}, app: app-x%zu}\n",
                    i, i);
    cr_assert_eq(kc_manifest_parse("big.yaml", ".", b.data, b.len, &doc, &err),
                 0, "%s", err.msg);
    cr_assert_eq(kc_manifest_check(doc, NULL, &d), KC_EINVAL);
    for (size_t i = 0; i < d.n; i++) {
        literal += strstr(d.items[i].msg, "a literal secret") != NULL;
        missing_app += strstr(d.items[i].msg, "no app named") != NULL;
        dup += strstr(d.items[i].msg, "duplicate of item") != NULL;
    }
    cr_assert_eq(literal, 20000);
    cr_assert_eq(missing_app, 2000);
    cr_assert_eq(dup, 2500);
    for (size_t i = 0; i < d.n; i++)
        if (!strstr(d.items[i].msg, "a literal secret") &&
            !strstr(d.items[i].msg, "no app named") &&
            !strstr(d.items[i].msg, "duplicate of item"))
            cr_log_error("%s: %s", d.items[i].path, d.items[i].msg);
    cr_assert_eq(d.n, 20000 + 2000 + 2500, "%zu diagnostics", d.n);
    kc_diags_release(&d);
    kc_doc_free(doc);
    kc_buf_release(&b);
}
