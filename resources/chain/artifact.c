/* resources/chain/artifact.c: Hardhat artifact lookup and parsing. */
#include "resources/chain/artifact.h"

#include <dirent.h>
#include <sys/stat.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/chain/hex.h"

void chain_artifact_free(struct chain_artifact *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->path);
    chain_abi_free(a->abi);
    free(a->bytecode);
    free(a->deployed);
    free(a);
}

/* Names the libraries of "linkReferences" ({"file": {"Lib": [...]}}). */
static void link_names(struct json_object *root, struct kc_buf *b)
{
    struct json_object *refs = NULL;

    if (!json_object_object_get_ex(root, "linkReferences", &refs) ||
        !json_object_is_type(refs, json_type_object))
        return;
    json_object_object_foreach (refs, file, libs) {
        if (!json_object_is_type(libs, json_type_object))
            continue;
        json_object_object_foreach (libs, lib, unused) {
            (void)unused;
            kc_buf_addf(b, "%s%s:%s", b->len ? ", " : "", file, lib);
        }
    }
}

static int code_from(struct json_object *root, const char *member,
                     const char *path, bool required, uint8_t **out,
                     size_t *len, struct kc_err *err)
{
    const char *hex = kc_json_opt_str(root, member);
    struct kc_buf libs = { 0 };
    int ret;

    *out = NULL;
    *len = 0;
    if (!hex) {
        if (!required)
            return 0;
        return kc_err_set(err, KC_EINVAL, "artifact '%s': no \"%s\"", path,
                          member);
    }
    if (strstr(hex, "__")) {
        link_names(root, &libs);
        ret = kc_err_set(err, KC_EINVAL,
                         "artifact '%s': %s has unlinked library "
                         "placeholders (%s); link the libraries first",
                         path, member,
                         libs.len ? kc_buf_str(&libs) : "unknown libraries");
        kc_buf_release(&libs);
        return ret;
    }
    ret = chain_hex_decode_alloc(hex, CHAIN_ARTIFACT_MAX_BYTES, out, len,
                                 member, err);
    if (ret < 0)
        return kc_err_prefix(err, "artifact '%s'", path);
    return 0;
}

int chain_artifact_load_file(const char *path, struct chain_artifact **out,
                             struct kc_err *err)
{
    char *text = NULL;
    size_t len = 0;
    struct json_object *root = NULL, *abi = NULL;
    struct chain_artifact *a = NULL;
    const char *name;
    int ret;

    *out = NULL;
    ret = kc_file_read(path, CHAIN_ARTIFACT_MAX_BYTES * 3, &text, &len, err);
    if (ret == 0)
        ret = kc_json_parse(text, len, path, &root, err);
    if (ret < 0)
        goto out;
    a = kc_xcalloc(1, sizeof(*a));
    a->path = kc_xstrdup(path);
    name = kc_json_opt_str(root, "contractName");
    if (name) {
        a->name = kc_xstrdup(name);
    } else {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        a->name = kc_xstrndup(base, strcspn(base, "."));
    }
    if (!json_object_object_get_ex(root, "abi", &abi)) {
        ret = kc_err_set(err, KC_EINVAL, "artifact '%s': no \"abi\"", path);
        goto out;
    }
    ret = chain_abi_from_json(abi, &a->abi, err);
    if (ret < 0) {
        kc_err_prefix(err, "artifact '%s'", path);
        goto out;
    }
    ret = code_from(root, "bytecode", path, true, &a->bytecode,
                    &a->bytecode_len, err);
    if (ret == 0)
        ret = code_from(root, "deployedBytecode", path, false, &a->deployed,
                        &a->deployed_len, err);
out:
    json_object_put(root);
    free(text);
    if (ret < 0) {
        chain_artifact_free(a);
        return ret;
    }
    *out = a;
    return 0;
}

/* Depth-first search of DIR for FILE ("<Name>.json"); every match is added
 * to FOUND (paths, caller frees). */
static int find_file(const char *dir, const char *file, int depth,
                     char ***found, size_t *nfound, size_t *cap,
                     struct kc_err *err)
{
    DIR *d;
    struct dirent *e;
    int ret = 0;

    if (depth > CHAIN_ARTIFACT_MAX_DEPTH)
        return 0;
    d = opendir(dir);
    if (!d)
        return depth == 0 ? kc_err_from_errno(err, errno, "artifacts '%s'", dir)
                          : 0;
    while (ret == 0 && (e = readdir(d)) != NULL) {
        char *p;
        struct stat st;
        if (e->d_name[0] == '.' || strcmp(e->d_name, "build-info") == 0)
            continue;
        p = kc_xasprintf("%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            ret = find_file(p, file, depth + 1, found, nfound, cap, err);
        } else if (strcmp(e->d_name, file) == 0 && S_ISREG(st.st_mode)) {
            kc_xgrow(found, cap, *nfound + 1, sizeof(**found));
            (*found)[(*nfound)++] = p;
            p = NULL;
        }
        free(p);
    }
    closedir(d);
    return ret;
}

int chain_artifact_load(const char *dir, const char *name,
                        struct chain_artifact **out, struct kc_err *err)
{
    char *file = kc_xasprintf("%s.json", name);
    char **found = NULL;
    size_t nfound = 0, cap = 0;
    int ret;

    *out = NULL;
    ret = find_file(dir, file, 0, &found, &nfound, &cap, err);
    if (ret == 0 && nfound == 0)
        ret = kc_err_set(err, KC_ENOENT,
                         "artifacts '%s': no %s (looked for **/%s)", dir, name,
                         file);
    if (ret == 0 && nfound > 1)
        ret = kc_err_set(err, KC_EINVAL,
                         "artifacts '%s': %s is ambiguous: '%s' and '%s'", dir,
                         name, found[0], found[1]);
    if (ret == 0)
        ret = chain_artifact_load_file(found[0], out, err);
    for (size_t i = 0; i < nfound; i++)
        free(found[i]);
    free(found);
    free(file);
    return ret;
}
