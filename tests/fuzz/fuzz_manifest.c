/* tests/fuzz/fuzz_manifest.c: the manifest loader (kc_manifest_parse) and
 * interpolation of whatever it accepts. Any input must parse or fail with
 * a "m.yaml:LINE:COL: " message and no document, never crash; a parsed
 * document's nodes must hold positions inside the text.
 *
 * Replayed by ctest (fuzz_manifest: driver.c, corpus/manifest); libFuzzer:
 * see tests/fuzz/README.md.
 */
#include "reconcile/interp.h"
#include "reconcile/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_getenv(const char *name)
{
    return strcmp(name, "RPC_URL") == 0 ? "https://rpc.example/key" : NULL;
}

/* Every node has a line in the document and keys are scalars. */
static void check_node(const struct kc_doc *doc, const struct kc_node *n,
                       int depth)
{
    if (depth > KC_MANIFEST_MAX_DEPTH + 1)
        KC_BUG("tree deeper than the bound: %d", depth);
    if (n->pos.line < 1 || (size_t)n->pos.line > doc->nlines + 1 ||
        n->pos.col < 1)
        KC_BUG("node at %d:%d outside the text (%zu lines)", n->pos.line,
               n->pos.col, doc->nlines);
    switch (n->type) {
    case KC_NODE_SCALAR:
        if (!n->str || n->str[n->len] != '\0')
            KC_BUG("scalar not terminated");
        break;
    case KC_NODE_SEQ:
        for (size_t i = 0; i < n->n; i++)
            check_node(doc, n->items[i], depth + 1);
        break;
    case KC_NODE_MAP:
        for (size_t i = 0; i < n->n; i++) {
            if (n->pairs[i].key->type != KC_NODE_SCALAR)
                KC_BUG("non-scalar key accepted");
            check_node(doc, n->pairs[i].key, depth + 1);
            check_node(doc, n->pairs[i].val, depth + 1);
        }
        break;
    }
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

        check_node(doc, doc->root, 0);
        kc_interp_check_doc(doc, &d);
        for (size_t i = 0; i < d.n; i++)
            free(kc_diags_format(&d, i));
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
