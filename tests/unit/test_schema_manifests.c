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
