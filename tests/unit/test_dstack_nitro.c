/* tests/unit/test_dstack_nitro.c: Nitro image hash from nitro-cli
 * measurements, checked against sha256sum of the raw PCR bytes. */
#include "resources/dstack/nitro.h"

#include <criterion/criterion.h>
#include <unistd.h>

#include "tests/unit/helpers/dstack_testutil.h"

static void pcr(char out[97], unsigned char seed)
{
    for (int i = 0; i < 48; i++)
        kc_snprintf(out + 2 * i, 3, "%02x", (unsigned char)(seed + i * 3));
}

Test(dstack_nitro, hash_is_sha256_of_the_raw_pcr_bytes)
{
    char p0[97], p1[97], p2[97], hex[65], *json, *cmd, *sum = NULL;
    char *bin = NULL;
    unsigned char out[32];
    struct kc_err err = { 0 };

    pcr(p0, 1);
    pcr(p1, 100);
    pcr(p2, 200);
    json = kc_xasprintf("{\"Measurements\": {\"HashAlgorithm\": \"Sha384 { ... "
                        "}\", \"PCR0\": \"%s\", \"PCR1\": \"%s\", \"PCR2\": "
                        "\"%s\"}}",
                        p0, p1, p2);
    cr_assert_eq(
        dstack_nitro_image_hash(json, strlen(json), "eif.json", out, hex, &err),
        0, "%s", err.msg);
    /* The raw 144 bytes go to a file; sha256sum hashes them. */
    {
        unsigned char raw[144];
        const char *hexes[3] = { p0, p1, p2 };
        FILE *f;

        bin = kc_xasprintf("/tmp/kc-nitro-%d.bin", (int)getpid());
        f = fopen(bin, "wb");

        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 48; i++) {
                unsigned v = 0;

                cr_assert_eq(sscanf(hexes[k] + 2 * i, "%2x", &v), 1);
                raw[48 * k + i] = (unsigned char)v;
            }
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(raw, 1, sizeof(raw), f), sizeof(raw));
        cr_assert_eq(fclose(f), 0);
    }
    cmd = kc_xasprintf("sha256sum '%s' && rm -f '%s'", bin, bin);
    cr_assert_eq(dstack_test_run(cmd, &sum), 0);
    cr_assert_eq(strncmp(sum, hex, 64), 0, "%s vs %s", hex, sum);
    free(json);
    free(cmd);
    free(sum);
    free(bin);
    /* Upper-case hex and a bare object give the same hash. */
    for (char *c = p1; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    json = kc_xasprintf(
        "{\"PCR0\": \"%s\", \"PCR1\": \"%s\", \"PCR2\": \"%s\"}", p0, p1, p2);
    {
        char hex2[65];

        cr_assert_eq(
            dstack_nitro_image_hash(json, strlen(json), "x", out, hex2, &err),
            0, "%s", err.msg);
        cr_assert_str_eq(hex2, hex);
    }
    free(json);
}

Test(dstack_nitro, refuses_debug_mode_zero_pcrs_and_malformed_input)
{
    char z[97], *json;
    unsigned char out[32];
    struct kc_err err = { 0 };

    memset(z, '0', 96);
    z[96] = '\0';
    json = kc_xasprintf("{\"Measurements\": {\"PCR0\": \"%s\", \"PCR1\": "
                        "\"%s\", \"PCR2\": \"%s\"}}",
                        z, z, z);
    cr_assert_eq(
        dstack_nitro_image_hash(json, strlen(json), "m.json", out, NULL, &err),
        KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "debug-mode"), "%s", err.msg);
    free(json);
    json = kc_xasprintf("{\"Measurements\": {\"PCR0\": \"%s\", \"PCR1\": "
                        "\"%s\"}}",
                        z, z);
    cr_assert_eq(
        dstack_nitro_image_hash(json, strlen(json), "m.json", out, NULL, &err),
        KC_EPARSE);
    cr_assert_not_null(strstr(err.msg, "m.json"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "PCR2"), "%s", err.msg);
    free(json);
    json = kc_xasprintf("{\"PCR0\": \"abcd\", \"PCR1\": \"%s\", \"PCR2\": "
                        "\"%s\"}",
                        z, z);
    cr_assert_eq(
        dstack_nitro_image_hash(json, strlen(json), "m.json", out, NULL, &err),
        KC_EPARSE);
    free(json);
    cr_assert_eq(dstack_nitro_image_hash("[1]", 3, "m.json", out, NULL, &err),
                 KC_EPARSE);
    cr_assert_lt(
        dstack_nitro_image_hash_file("/nonexistent/m.json", out, NULL, &err),
        0);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/m.json"), "%s", err.msg);
}
