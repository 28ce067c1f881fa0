/* cmd/version.c: kmsctl version. */
#include "cmd/cmd.h"

#include <curl/curl.h>
#include <json-c/json_c_version.h>
#include <openssl/crypto.h>
#include <uv.h>
#include <yaml.h>

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("kmsctl %s (libuv %s, %s, json-c %s, libyaml %s, %s)\n", KC_VERSION,
           uv_version_string(), curl_version(), json_c_version(),
           yaml_get_version_string(), OpenSSL_version(OPENSSL_VERSION));
    return KC_EXIT_OK;
}
