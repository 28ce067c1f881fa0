/* resources/dstack/nitro.c: Nitro image hash = SHA-256(PCR0 || PCR1 || PCR2).
 */
#include "resources/dstack/nitro.h"

#include <json-c/json.h>
#include <openssl/evp.h>

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "resources/dstack/dstack.h"
#include "resources/dstack/envcrypt.h"

int dstack_nitro_image_hash(const char *text, size_t len, const char *what,
                            unsigned char out[32], char hex[65],
                            struct kc_err *err)
{
    static const char *const names[3] = { "PCR0", "PCR1", "PCR2" };
    struct json_object *root = NULL, *m = NULL;
    unsigned char pcrs[3 * 48];
    unsigned int mdlen = 0;
    bool zero = true;
    int ret;

    if ((ret = kc_json_parse(text, len, what, &root, err)) < 0)
        return ret;
    if (!json_object_is_type(root, json_type_object)) {
        ret = kc_err_set(err, KC_EPARSE, "%s: expected a JSON object", what);
        goto out;
    }
    if (!json_object_object_get_ex(root, "Measurements", &m))
        m = root;
    for (int i = 0; i < 3; i++) {
        const char *s = NULL;

        if ((ret = kc_json_get_str(m, names[i], &s, err)) < 0 ||
            (ret = dstack_hex_decode(s, pcrs + 48 * i, 48, names[i], err)) <
                0) {
            if (ret == KC_ENOENT || ret == KC_EINVAL)
                ret = err->code = KC_EPARSE;
            kc_err_prefix(err, "%s", what);
            goto out;
        }
    }
    for (size_t i = 0; i < sizeof(pcrs); i++)
        zero = zero && pcrs[i] == 0;
    if (zero) {
        ret = kc_err_set(err, KC_EINVAL,
                         "%s: PCR0, PCR1 and PCR2 are all zero (a debug-mode "
                         "enclave): the KMS would see the all-zero image hash",
                         what);
        goto out;
    }
    if (EVP_Digest(pcrs, sizeof(pcrs), out, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32) {
        ret = kc_err_from_ssl(err, "sha256");
        goto out;
    }
    if (hex)
        dstack_hex(out, 32, hex);
    ret = 0;
out:
    json_object_put(root);
    return ret;
}

int dstack_nitro_image_hash_file(const char *path, unsigned char out[32],
                                 char hex[65], struct kc_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int ret = kc_file_read(path, DSTACK_NITRO_MAX_JSON, &text, &len, err);

    if (ret == 0)
        ret = dstack_nitro_image_hash(text, len, path, out, hex, err);
    free(text);
    return ret;
}
