/* tests/unit/test_audit.c: regressions found by the audit (outside answers
 * of the wrong shape, secrets in messages). */
#include "reconcile/expand.h"
#include "reconcile/file.h"
#include "reconcile/graph.h"
#include "reconcile/json.h"
#include "reconcile/manifest.h"

#include "helpers/state_testutil.h"

#include <criterion/criterion.h>

static struct json_object *parse(const char *text)
{
    struct json_object *o = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_parse(text, strlen(text), "test", &o, &err), 0, "%s",
                 err.msg);
    return o;
}

Test(audit, array_helpers_give_zero_and_null_for_values_that_are_not_arrays)
{
    /* json-c's json_object_array_length() asserts on these (abort). */
    static const char *const not_arrays[] = { "\"a\"", "{\"a\":[1]}", "12",
                                              "true" };

    for (size_t i = 0; i < sizeof(not_arrays) / sizeof(not_arrays[0]); i++) {
        struct json_object *o = parse(not_arrays[i]);

        cr_assert_eq(kc_json_array_len(o), 0, "%s", not_arrays[i]);
        cr_assert_null(kc_json_array_idx(o, 0), "%s", not_arrays[i]);
        cr_assert_null(kc_json_array_str(o, 0), "%s", not_arrays[i]);
        json_object_put(o);
    }
    cr_assert_eq(kc_json_array_len(NULL), 0);
    cr_assert_null(kc_json_array_str(NULL, 3));
}

Test(audit, array_str_gives_strings_only_and_stays_in_range)
{
    struct json_object *o = parse("[\"x\", null, 7, {\"a\":1}, \"y\"]");

    cr_assert_eq(kc_json_array_len(o), 5);
    cr_assert_str_eq(kc_json_array_str(o, 0), "x");
    cr_assert_null(kc_json_array_str(o, 1));
    cr_assert_null(kc_json_array_str(o, 2));
    cr_assert_null(kc_json_array_str(o, 3));
    cr_assert_str_eq(kc_json_array_str(o, 4), "y");
    cr_assert_null(kc_json_array_str(o, 5));
    cr_assert_null(kc_json_array_idx(o, 5));
    cr_assert_not_null(kc_json_array_idx(o, 3));
    json_object_put(o);
}

/* A manifest with one KMS VM (os image "os-1" with its auth_hash.txt in a
 * temp folder) and the chain provider, plus EXTRA lines inside the VM entry:
 * expanded, and the attribute FIELD of the shared disk image looked up.
 * Calls CHECK(attr) (NULL when absent), then cleans up. */
static void with_shared_disk_attr(const char *extra, const char *field,
                                  void (*check)(const struct kc_attr *a))
{
    char *yaml =
        kc_xasprintf("version: 1\nname: t\n"
                     "providers:\n"
                     "  chain: {rpc_url: \"http://127.0.0.1:9\", chain_id: 1,"
                     " private_key: \"${env:K}\"}\n"
                     "  gcp: {project: audit-project, zone: us-central1-a,"
                     " bucket: audit-bucket}\n"
                     "contracts:\n  artifacts: ./artifacts\n  kms: {}\n"
                     "kms_vms:\n  kms:\n    os_image: os-1\n"
                     "    image_search_paths: [./images]\n"
                     "    key_provider: tpm\n    domain: kms.example.test\n"
                     "    mode: direct\n"
                     "%s"
                     "    compose: {template: direct, env: {ETH_RPC_URL: "
                     "\"http://127.0.0.1:9\"}}\n",
                     extra);
    char *dir = state_test_tmpdir();
    char *path = kc_xasprintf("%s/images/os-1", dir);
    struct kc_doc *doc = NULL;
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };
    const struct kc_resource *r;
    const struct kc_attr *a = NULL;
    FILE *f;

    cr_assert_eq(kc_file_mkdirs(path, 0700, NULL), 0);
    free(path);
    path = kc_xasprintf("%s/images/os-1/auth_hash.txt", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%064d\n", 7);
    fclose(f);
    free(path);
    path = kc_xasprintf("%s/m.yaml", dir);
    cr_assert_eq(kc_manifest_parse(path, dir, yaml, strlen(yaml), &doc, &err),
                 0, "%s", err.msg);
    cr_assert_eq(kc_expand_doc(doc, &g, &err), 0, "%s", err.msg);
    r = kc_graph_find(g, "gcp.image.kms-shared");
    cr_assert_not_null(r);
    for (size_t i = 0; i < r->nattrs; i++)
        if (strcmp(r->attrs[i].field, field) == 0)
            a = &r->attrs[i];
    check(a);
    kc_graph_free(g);
    kc_doc_free(doc);
    free(path);
    free(yaml);
    state_test_rmtree(dir);
    free(dir);
}

static void check_kms_addr(const struct kc_attr *a)
{
    cr_assert_not_null(a, "no kms_addr on the shared disk image");
    cr_assert_str_eq(a->ref_addr, "chain.kms.main");
    cr_assert_str_eq(a->ref_output, "address");
}

Test(audit, kms_vm_shared_disk_takes_the_kms_contract_address_from_contracts)
{
    /* kms_vms looked for a resource "chain.kms", but the KMS contract is
     * chain.kms.main: KMS_CONTRACT_ADDR was never supplied and the shared
     * disk failed at apply ("KMS_CONTRACT_ADDR unknown"). */
    with_shared_disk_attr("", "kms_addr", check_kms_addr);
}

static void check_pccs_url(const struct kc_attr *a)
{
    cr_assert_not_null(a, "no pccs_url on the shared disk image");
}

Test(audit, kms_vm_shared_disk_gets_the_pccs_url)
{
    /* pccs_url goes into .sys-config.json: render wrote it, but the shared
     * disk image made at apply time was never given it. */
    with_shared_disk_attr(
        "    pccs_url: \"https://pccs.example.test/sgx/certification/v4/\"\n",
        "pccs_url", check_pccs_url);
}
