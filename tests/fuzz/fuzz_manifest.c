/* tests/fuzz/fuzz_manifest.c: libFuzzer target for the manifest loader and
 * interpolation (not built by CMake; see the command below). Any input must
 * parse or fail with a "FILE:LINE:COL: " message, never crash.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz_manifest.c reconcile/{manifest,interp,kc,buf,value,\
 *     diag,log,file,secret}.c $(pkg-config --cflags --libs yaml-0.1 json-c \
 *     openssl libuv libcurl) -o fuzz_manifest
 *   ./fuzz_manifest -max_len=4096 -max_total_time=300 CORPUS_DIR
 */
#include "reconcile/interp.h"
#include "reconcile/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_getenv(const char *name)
{
    return strcmp(name, "RPC_URL") == 0 ? "https://rpc.example/key" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kc_doc *doc = NULL;
    struct kc_err err = { 0 };
    int ret = kc_manifest_parse("m.yaml", "/nonexistent", (const char *)data,
                                size, &doc, &err);

    if (ret < 0) {
        if (doc || strncmp(err.msg, "m.yaml:", 7) != 0)
            KC_BUG("bad failure: %s", err.msg);
        return 0;
    }
    if (doc->root) {
        struct kc_interp_opts o = { .doc = doc, .getenv_fn = fuzz_getenv };
        struct kc_diags d = { 0 };
        struct kc_value *v = NULL;
        char **refs = NULL;
        size_t n = 0;

        kc_interp_check_doc(doc, &d);
        kc_diags_release(&d);
        kc_interp_refs(doc->root, &refs, &n);
        kc_interp_refs_free(refs, n);
        if (kc_interp_node(&o, doc->root, &v, &err) < 0 &&
            strncmp(err.msg, "m.yaml:", 7) != 0)
            KC_BUG("bad interp failure: %s", err.msg);
        kc_value_free(v);
    }
    kc_doc_free(doc);
    return 0;
}
