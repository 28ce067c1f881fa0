/* tests/fuzz/fuzz_check.c: the whole validation of a parsed manifest —
 * schema (schemas/manifest.schema.json), interpolation syntax and
 * references, semantic rules (kc_manifest_check) — over whatever the
 * loader accepts. The corpus is made of valid manifests, so mutations reach
 * the deep rules. Every diagnostic must carry a position in the document
 * and a message; a document found valid must also interpolate (with a fake
 * environment) or fail with a positioned message.
 *
 * Replayed by ctest (fuzz_check: driver.c, corpus/check).
 */
#include "reconcile/check.h"
#include "reconcile/interp.h"
#include "reconcile/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_getenv(const char *name)
{
    /* The sandbox manifest's variables, so valid documents interpolate. */
    if (strcmp(name, "KMSCTL_SANDBOX_RPC") == 0)
        return "http://127.0.0.1:8545";
    if (strcmp(name, "KMSCTL_SANDBOX_SIM") == 0)
        return "http://127.0.0.1:9000";
    if (strcmp(name, "KMSCTL_SANDBOX_KEY") == 0)
        return "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    struct kc_diags d = { 0 };
    struct kc_check_opts opts = { 0 };
    int ret;

    if (kc_manifest_parse("m.yaml", "/nonexistent", (const char *)data, size,
                          &doc, &err) < 0)
        return 0;
    /* The last byte chooses --allow-literal-secrets, so both paths run. */
    opts.allow_literal_secrets = size > 0 && (data[size - 1] & 1);
    ret = kc_manifest_check(doc, &opts, &d);
    if ((ret == 0) != (d.n == 0))
        KC_BUG("check returned %d with %zu diagnostics", ret, d.n);
    for (size_t i = 0; i < d.n; i++) {
        char *line = kc_diags_format(&d, i);
        if (!d.items[i].msg || strncmp(line, "m.yaml:", 7) != 0)
            KC_BUG("diagnostic without a position: %s", line);
        free(line);
    }
    if (ret == 0 && doc->root) {
        struct kc_interp_opts o = { .doc = doc, .getenv_fn = fuzz_getenv };
        struct kc_value *v = NULL;
        if (kc_interp_node(&o, doc->root, &v, &err) < 0 &&
            strncmp(err.msg, "m.yaml:", 7) != 0)
            KC_BUG("bad interp failure: %s", err.msg);
        kc_value_free(v);
    }
    kc_diags_release(&d);
    kc_doc_free(doc);
    return 0;
}
