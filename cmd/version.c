/* cmd/version.c: kmsctl version. */
#include "cmd/cmd.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <json-c/json_c_version.h>
#include <openssl/crypto.h>
#include <uv.h>
#include <yaml.h>

static void add_str(struct json_object *o, const char *k, const char *v)
{
    struct json_object *s = json_object_new_string(v);

    if (!s || json_object_object_add(o, k, s) < 0)
        KC_BUG("out of memory");
}

int cmd_version(int argc, char **argv)
{
    struct cmd_opts opts;
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs > 0) {
        fprintf(stderr, "error: version takes no arguments\n");
        ret = KC_EXIT_ERROR;
        goto out;
    }
    if (opts.json) {
        struct json_object *o = json_object_new_object(),
                           *libs = json_object_new_object();

        if (!o || !libs)
            KC_BUG("out of memory");
        add_str(o, "version", KC_VERSION);
        add_str(libs, "libuv", uv_version_string());
        add_str(libs, "libcurl", curl_version());
        add_str(libs, "json-c", json_c_version());
        add_str(libs, "libyaml", yaml_get_version_string());
        add_str(libs, "openssl", OpenSSL_version(OPENSSL_VERSION));
        if (json_object_object_add(o, "libraries", libs) < 0)
            KC_BUG("out of memory");
        printf("%s\n", json_object_to_json_string_ext(
                           o, JSON_C_TO_STRING_PRETTY |
                                  JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        printf("kmsctl %s (libuv %s, %s, json-c %s, libyaml %s, %s)\n",
               KC_VERSION, uv_version_string(), curl_version(),
               json_c_version(), yaml_get_version_string(),
               OpenSSL_version(OPENSSL_VERSION));
    }
    ret = KC_EXIT_OK;
out:
    cmd_opts_release(&opts);
    return ret;
}
