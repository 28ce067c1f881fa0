/* resources/chain/artifact.h: Hardhat contract artifacts.
 *
 * An artifact is "<Name>.json" anywhere under the artifacts folder (Hardhat
 * writes artifacts/contracts/<File>.sol/<Name>.json) holding "abi" and
 * "bytecode" (and "deployedBytecode"). Files are looked up by contract name,
 * skipping "build-info" and hidden folders; two artifacts with the same
 * name is an error that names both paths. Bytecode with unlinked library
 * placeholders ("__$<hash>$__", or the legacy "__Name___") is refused,
 * naming the libraries from "linkReferences".
 *
 * Loading reads files: do it before the loop runs (provider init) or off
 * the loop thread.
 */
#ifndef KC_RESOURCES_CHAIN_ARTIFACT_H
#define KC_RESOURCES_CHAIN_ARTIFACT_H

#include "reconcile/kc.h"
#include "resources/chain/abi.h"

#define CHAIN_ARTIFACT_MAX_BYTES (16u << 20)
#define CHAIN_ARTIFACT_MAX_DEPTH 8

struct chain_artifact {
    char *name; /* contract name */
    char *path; /* the file it came from */
    struct chain_abi *abi;
    uint8_t *bytecode; /* creation code */
    size_t bytecode_len;
    uint8_t *deployed; /* runtime code (may be empty) */
    size_t deployed_len;
};

/* Finds and loads contract NAME under DIR. KC_ENOENT when there is none. */
int chain_artifact_load(const char *dir, const char *name,
                        struct chain_artifact **out, struct kc_err *err);
/* Parses one artifact file at PATH. */
int chain_artifact_load_file(const char *path, struct chain_artifact **out,
                             struct kc_err *err);
void chain_artifact_free(struct chain_artifact *a);

#endif
