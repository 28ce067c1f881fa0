/* tests/unit/test_chain_expand.c: the contracts section becomes chain
 * resources: addresses named by the hashes, hash sources read at plan time
 * (literal, {image} auth_hash.txt from the search paths, {nitro_measurements}
 * sha256 of the raw PCRs), the all-zero hash refused without allow_zero,
 * references to the KMS and app contracts, the unmanaged-entry scans after
 * every entry. */
#include "reconcile/expand.h"
#include "reconcile/file.h"
#include "reconcile/graph.h"
#include "reconcile/manifest.h"

#include "helpers/state_testutil.h"

#include <criterion/criterion.h>
#include <sys/stat.h>

static char *dir;

static void setup(void)
{
    char *p;
    FILE *f;

    dir = state_test_tmpdir();
    p = kc_xasprintf("%s/images/os-1", dir);
    cr_assert_eq(kc_file_mkdirs(p, 0700, NULL), 0);
    free(p);
    p = kc_xasprintf("%s/images/os-1/auth_hash.txt", dir);
    f = fopen(p, "w");
    fprintf(f, "%s\n",
            "0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d");
    fclose(f);
    free(p);
    p = kc_xasprintf("%s/eif.json", dir);
    f = fopen(p, "w");
    fprintf(f, "{\"Measurements\":{\"HashAlgorithm\":\"Sha384 { ... }\","
               "\"PCR0\":\"");
    for (int i = 0; i < 48; i++)
        fprintf(f, "01");
    fprintf(f, "\",\"PCR1\":\"");
    for (int i = 0; i < 48; i++)
        fprintf(f, "02");
    fprintf(f, "\",\"PCR2\":\"");
    for (int i = 0; i < 48; i++)
        fprintf(f, "03");
    fprintf(f, "\"}}\n");
    fclose(f);
    free(p);
}

static void teardown(void)
{
    state_test_rmtree(dir);
    free(dir);
}

static int expand_text(const char *yaml, struct kc_graph **g,
                       struct kc_doc **doc, struct kc_err *err)
{
    char *path = kc_xasprintf("%s/m.yaml", dir);
    int ret = kc_manifest_parse(path, dir, yaml, strlen(yaml), doc, err);

    free(path);
    if (ret == 0)
        ret = kc_expand_doc(*doc, g, err);
    return ret;
}

static const char *attr_str(const struct kc_resource *r, const char *field)
{
    for (size_t i = 0; i < r->nattrs; i++)
        if (strcmp(r->attrs[i].field, field) == 0 && r->attrs[i].value)
            return kc_value_str(r->attrs[i].value);
    return NULL;
}

static bool depends(const struct kc_resource *r, const char *addr)
{
    for (size_t i = 0; i < r->ndeps; i++)
        if (strcmp(r->deps[i], addr) == 0)
            return true;
    return false;
}

TestSuite(chain_expand, .init = setup, .fini = teardown);

Test(chain_expand, hash_sources_become_addressed_entries)
{
    static const char yaml[] =
        "version: 1\nname: t\n"
        "contracts:\n"
        "  artifacts: artifacts\n"
        "  kms: {}\n"
        "  image_search_paths: [./nowhere, ./images]\n"
        "  os_images:\n"
        "    - 0x1111111111111111111111111111111111111111111111111111111111111111\n"
        "    - {image: os-1}\n"
        "    - {nitro_measurements: ./eif.json}\n"
        "  kms_allowlist:\n"
        "    device_ids: [{hash: "
        "\"0x0000000000000000000000000000000000000000000000000000000000000000\","
        " allow_zero: true}]\n"
        "  apps:\n"
        "    keys:\n"
        "      compose_hashes: [{nitro_measurements: ./eif.json}]\n";
    /* sha256(01*48 || 02*48 || 03*48), computed with Python's hashlib */
    static const char nitro[] =
        "0x68f6dc415505b28437f0dcb824ddeec57bc0fefc2c02244771298851d3a70c7f";
    struct kc_graph *g = NULL;
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    struct kc_resource *r, *um, *app_um;
    char addr[256], *art;

    cr_assert_eq(expand_text(yaml, &g, &doc, &err), 0, "%s", err.msg);
    r = kc_graph_find(g, "chain.kms.main");
    cr_assert_not_null(r);
    art = kc_xasprintf("%s/artifacts", dir);
    cr_expect_str_eq(attr_str(r, "artifacts"), art);
    free(art);
    um = kc_graph_find(g, "chain.kms_unmanaged.main");
    cr_assert_not_null(um);
    r = kc_graph_find(g, "chain.kms_os_image.0x111111111111111111111111111111"
                         "1111111111111111111111111111111111");
    cr_assert_not_null(r);
    cr_expect(depends(r, "chain.kms.main"));
    cr_expect(depends(um, r->address));
    cr_assert_not_null(kc_graph_find(
        g, "chain.kms_os_image.0x0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0c0d0a0b0"
           "c0d0a0b0c0d0a0b0c0d"));
    snprintf(addr, sizeof(addr), "chain.kms_os_image.%s", nitro);
    r = kc_graph_find(g, addr);
    cr_assert_not_null(r, "no %s", addr);
    cr_expect_str_eq(attr_str(r, "hash"), nitro);
    cr_assert_not_null(kc_graph_find(
        g, "chain.kms_device.0x000000000000000000000000000000000000000000000000"
           "0000000000000000"));
    snprintf(addr, sizeof(addr), "chain.app_compose_hash.keys.%s", nitro);
    r = kc_graph_find(g, addr);
    cr_assert_not_null(r);
    cr_expect(depends(r, "chain.app.keys"));
    app_um = kc_graph_find(g, "chain.app_unmanaged.keys");
    cr_assert_not_null(app_um);
    cr_expect(depends(app_um, addr));
    kc_graph_free(g);
    kc_doc_free(doc);
}

Test(chain_expand, zero_hash_missing_image_and_bad_pcrs_are_refused)
{
    static const char zero[] =
        "version: 1\nname: t\ncontracts:\n  artifacts: a\n  kms: {}\n"
        "  os_images:\n"
        "    - 0x0000000000000000000000000000000000000000000000000000000000000000\n";
    static const char noimage[] =
        "version: 1\nname: t\ncontracts:\n  artifacts: a\n  kms: {}\n"
        "  image_search_paths: [./images]\n"
        "  os_images:\n    - {image: os-2}\n";
    static const char badpcr[] =
        "version: 1\nname: t\ncontracts:\n  artifacts: a\n  kms: {}\n"
        "  os_images:\n    - {nitro_measurements: ./m.yaml}\n";
    struct kc_graph *g = NULL;
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };

    cr_expect_eq(expand_text(zero, &g, &doc, &err), KC_EPERM);
    cr_expect_not_null(strstr(err.msg, "all-zero"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "m.yaml:7:"), "%s", err.msg);
    kc_doc_free(doc);
    doc = NULL;
    cr_expect_eq(expand_text(noimage, &g, &doc, &err), KC_ENOENT);
    cr_expect_not_null(strstr(err.msg, "os-2/auth_hash.txt"), "%s", err.msg);
    kc_doc_free(doc);
    doc = NULL;
    cr_expect_lt(expand_text(badpcr, &g, &doc, &err), 0);
    cr_expect_not_null(strstr(err.msg, "nitro_measurements"), "%s", err.msg);
    kc_doc_free(doc);
}
