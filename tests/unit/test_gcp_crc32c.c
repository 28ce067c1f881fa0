/* tests/unit/test_gcp_crc32c.c: CRC32C against RFC 3720 appendix B.4, the
 * base64 forms Cloud Storage uses, base64/base64url and percent-encoding. */
#include "resources/gcp/codec.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>

/* RFC 3720 (iSCSI) appendix B.4, "CRC Examples"
 * (https://www.rfc-editor.org/rfc/rfc3720#appendix-B.4). */
Test(gcp_crc32c, rfc3720_b4_vectors)
{
    unsigned char d[32];

    memset(d, 0, sizeof(d));
    cr_assert_eq(gcp_crc32c_update(0, d, 32), 0x8a9136aa);
    memset(d, 0xff, sizeof(d));
    cr_assert_eq(gcp_crc32c_update(0, d, 32), 0x62a8ab43);
    for (int i = 0; i < 32; i++)
        d[i] = (unsigned char)i;
    cr_assert_eq(gcp_crc32c_update(0, d, 32), 0x46dd794e);
    for (int i = 0; i < 32; i++)
        d[i] = (unsigned char)(31 - i);
    cr_assert_eq(gcp_crc32c_update(0, d, 32), 0x113fdb5c);
}

/* The CRC-catalogue check value of CRC-32C ("123456789"). */
Test(gcp_crc32c, check_value_of_123456789)
{
    cr_assert_eq(gcp_crc32c_update(0, "123456789", 9), 0xe3069283);
    cr_assert_eq(gcp_crc32c_update(0, "", 0), 0);
}

Test(gcp_crc32c, pieces_equal_the_whole)
{
    static unsigned char data[100003];
    uint32_t whole, parts = 0;
    size_t off = 0, step = 1;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    whole = gcp_crc32c_update(0, data, sizeof(data));
    while (off < sizeof(data)) {
        size_t n = step < sizeof(data) - off ? step : sizeof(data) - off;

        parts = gcp_crc32c_update(parts, data + off, n);
        off += n;
        step = step * 3 + 1; /* odd sizes cross the 8-byte stride */
    }
    cr_assert_eq(parts, whole);
}

/* Cloud Storage writes crc32c as base64 of the big-endian bytes:
 * crc32c("hello world") = 0xc99465aa -> "yZRlqg==". */
Test(gcp_crc32c, storage_base64_forms)
{
    char crc[GCP_CRC32C_B64_LEN], md5[GCP_MD5_B64_LEN];
    unsigned char digest[16];

    gcp_crc32c_b64(gcp_crc32c_update(0, "hello world", 11), crc);
    cr_assert_str_eq(crc, "yZRlqg==");
    gcp_crc32c_b64(0, crc);
    cr_assert_str_eq(crc, "AAAAAA==");
    cr_assert_eq(EVP_Digest("hello world", 11, digest, NULL, EVP_md5(), NULL),
                 1);
    gcp_md5_b64(digest, md5);
    cr_assert_str_eq(md5, "XrY7u+Ae7tCTyyK7j1rNww==");
}

/* RFC 4648 §10 test vectors, both alphabets, and back. */
Test(gcp_b64, rfc4648_vectors_round_trip)
{
    static const char *in[] = {
        "", "f", "fo", "foo", "foob", "fooba", "foobar"
    };
    static const char *std[] = { "",         "Zg==",     "Zm8=",    "Zm9v",
                                 "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    static const char *url[] = { "",       "Zg",      "Zm8",     "Zm9v",
                                 "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };

    for (size_t i = 0; i < KC_ARRAY_SIZE(in); i++) {
        struct kc_buf a = { 0 }, b = { 0 }, c = { 0 };
        struct kc_err err = { 0 };

        cr_assert_eq(gcp_b64_encode(in[i], strlen(in[i]), false, &a), 0);
        cr_assert_str_eq(kc_buf_str(&a), std[i]);
        cr_assert_eq(gcp_b64_encode(in[i], strlen(in[i]), true, &b), 0);
        cr_assert_str_eq(kc_buf_str(&b), url[i]);
        cr_assert_eq(gcp_b64_decode(url[i], strlen(url[i]), &c, &err), 0);
        cr_assert_str_eq(kc_buf_str(&c), in[i]);
        kc_buf_release(&a);
        kc_buf_release(&b);
        kc_buf_release(&c);
    }
}

Test(gcp_b64, url_alphabet_and_garbage)
{
    unsigned char bytes[] = { 0xfb, 0xff, 0xbf };
    struct kc_buf b = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(gcp_b64_encode(bytes, 3, true, &b), 0);
    cr_assert_str_eq(kc_buf_str(&b), "-_-_");
    kc_buf_reset(&b);
    cr_assert_eq(gcp_b64_encode(bytes, 3, false, &b), 0);
    cr_assert_str_eq(kc_buf_str(&b), "+/+/");
    kc_buf_reset(&b);
    cr_assert_eq(gcp_b64_decode("ab$d", 4, &b, &err), KC_EPARSE);
    cr_assert_not_null(strstr(err.msg, "offset 2"));
    cr_assert_eq(gcp_b64_decode("abcde", 5, &b, &err), KC_EPARSE);
    kc_buf_release(&b);
}

Test(gcp_codec, percent_encoding_keeps_only_unreserved)
{
    struct kc_buf b = { 0 };
    const char *s = "urn:ietf:params:oauth:grant-type:jwt-bearer a+b/c~d";

    cr_assert_eq(gcp_pct_encode(s, strlen(s), &b), 0);
    cr_assert_str_eq(kc_buf_str(&b), "urn%3Aietf%3Aparams%3Aoauth%3Agrant-"
                                     "type%3Ajwt-bearer%20a%2Bb%2Fc~d");
    kc_buf_release(&b);
}

Test(gcp_codec, uuid4_has_version_and_variant)
{
    char a[GCP_UUID_LEN], b[GCP_UUID_LEN];
    struct kc_err err = { 0 };

    cr_assert_eq(gcp_uuid4(a, &err), 0);
    cr_assert_eq(gcp_uuid4(b, &err), 0);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
    cr_assert_str_neq(a, b);
}
