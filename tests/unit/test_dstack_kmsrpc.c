/* tests/unit/test_dstack_kmsrpc.c: the KMS client's refusals before any
 * request and how it names a KMS in messages (the calls themselves run
 * against kmsctl-sim's KMS emulator in tests/e2e/render_kms.sh). */
#include "resources/dstack/kmsrpc.h"

#include <criterion/criterion.h>

static const unsigned char PIN[33] = { 0x02 };
#define APP "00112233445566778899aabbccddeeff00112233"

static void on_done(struct dstack_kms_env_key *c, int status)
{
    (void)status;
    cr_assert_fail("callback after a refusal (%s)", c->err.msg);
}

/* Starts a fetch that must be refused at once with CODE and a message
 * holding WANT (and not HIDDEN, when given). */
static void refused(const char *url, const char *app, int code,
                    const char *want, const char *hidden)
{
    uv_loop_t loop;
    struct kc_http *http = NULL;
    struct kc_http_config cfg = { .loop = &loop };
    struct dstack_kms_env_key c = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(kc_http_new(&cfg, &http, &err), 0, "%s", err.msg);
    cr_assert_eq(
        dstack_kms_env_key_fetch(http, &c, url, app, PIN, NULL, on_done, &err),
        code, "%s: %s", url, err.msg);
    cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
    if (hidden)
        cr_assert_null(strstr(err.msg, hidden), "%s", err.msg);
    dstack_kms_env_key_release(&c);
    kc_http_close(http);
    while (uv_run(&loop, UV_RUN_DEFAULT) != 0)
        ;
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(dstack_kmsrpc, url_shown_drops_credentials_query_and_fragment)
{
    static const char *const cases[][2] = {
        { "https://kms.example:8000", "https://kms.example:8000" },
        { "https://u:p@kms.example/x?token=1#f", "https://kms.example/x" },
        { "https://kms.example/a@b?c", "https://kms.example/a@b" },
        { "kms.example?x", "kms.example" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        char *s = dstack_url_shown(cases[i][0]);

        cr_assert_str_eq(s, cases[i][1]);
        free(s);
    }
}

Test(dstack_kmsrpc, refused_before_any_request)
{
    refused("http://kms.example", APP, KC_EINVAL,
            "KMS http://kms.example: expected an https:// URL", NULL);
    refused("https://kms.example/?x=1", APP, KC_EINVAL, "without a query",
            "x=1");
    refused("https://admin:hunter2@kms.example", APP, KC_EINVAL,
            "KMS https://kms.example: the URL carries credentials", "hunter2");
    refused("https://kms.example", "0x1234", KC_EPARSE, "app_id", NULL);
}
