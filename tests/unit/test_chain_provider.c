/* tests/unit/test_chain_provider.c: providers.chain.tx_timeout through the
 * chain provider's init: units, the one-week bound (a huge count of hours
 * used to wrap when multiplied to milliseconds), signs and zero refused with
 * an error naming the field. No chain is contacted: init only configures. */
#include "reconcile/http.h"
#include "reconcile/log.h"
#include "reconcile/resource.h"
#include "reconcile/value.h"

#include <criterion/criterion.h>
#include <string.h>

extern const struct kc_provider_type kc_provider_chain;

static const char *anvil_key =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/* Runs the provider's init with TX_TIMEOUT (owned; NULL: absent) and
 * returns its status; ERR gets the message. */
static int init_with(struct kc_value *tx_timeout, struct kc_err *err)
{
    uv_loop_t loop;
    struct kc_log log;
    struct kc_http *http = NULL;
    struct kc_http_config hc = { 0 };
    struct kc_provider p = { 0 };
    struct kc_value *cfg = kc_value_new_map();
    struct kc_err herr = { 0 };
    int ret;

    cr_assert_eq(uv_loop_init(&loop), 0);
    kc_log_init(&log, KC_LOG_WARN);
    hc.loop = &loop;
    hc.log = &log;
    cr_assert_eq(kc_http_new(&hc, &http, &herr), 0, "%s", herr.msg);
    kc_value_map_set(cfg, "rpc_url", kc_value_new_str("http://127.0.0.1:9"));
    kc_value_map_set(cfg, "chain_id", kc_value_new_int(31337));
    kc_value_map_set(cfg, "private_key",
                     kc_value_new_secret(anvil_key, strlen(anvil_key)));
    if (tx_timeout)
        kc_value_map_set(cfg, "tx_timeout", tx_timeout);
    p.type = &kc_provider_chain;
    p.config = cfg;
    p.deployment = "t";
    p.loop = &loop;
    p.log = &log;
    p.http = http;
    kc_err_clear(err);
    ret = kc_provider_chain.init(&p, err);
    if (ret == 0)
        kc_provider_chain.cleanup(&p);
    kc_http_close(http);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    kc_value_free(cfg);
    kc_log_release(&log);
    return ret;
}

Test(chain_provider, tx_timeout_within_bounds_is_accepted)
{
    const char *ok[] = { "500ms", "90s",     "90",     "5m",         "1h",
                         "168h",  "604800s", "10080m", "604800000ms" };
    struct kc_err err;

    cr_assert_eq(init_with(NULL, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(init_with(kc_value_new_str(ok[i]), &err), 0, "%s: %s",
                     ok[i], err.msg);
    cr_assert_eq(init_with(kc_value_new_int(604800), &err), 0, "%s", err.msg);
}

Test(chain_provider, huge_tx_timeout_is_refused_not_wrapped)
{
    /* 99999999999999h * 3600000 wraps uint64 (to about 2.4e19 mod 2^64). */
    const char *big[] = { "99999999999999h",
                          "5124095576030431h",
                          "169h",
                          "604800001ms",
                          "10081m",
                          "604801s",
                          "18446744073709551615ms" };
    struct kc_err err;

    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        cr_assert_eq(init_with(kc_value_new_str(big[i]), &err), KC_ERANGE,
                     "%s: %s", big[i], err.msg);
        cr_assert_not_null(strstr(err.msg, "providers.chain.tx_timeout"), "%s",
                           err.msg);
        cr_assert_not_null(strstr(err.msg, "168h"), "%s", err.msg);
    }
    cr_assert_eq(init_with(kc_value_new_int(INT64_MAX), &err), KC_ERANGE, "%s",
                 err.msg);
    cr_assert_not_null(strstr(err.msg, "providers.chain.tx_timeout"));
}

Test(chain_provider, bad_tx_timeout_is_refused_naming_the_field)
{
    const char *bad[] = { "-1h", "+5s", " 5s",
                          "0s",  "0",   "5d",
                          "h",   "",    "99999999999999999999999ms" };
    struct kc_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(init_with(kc_value_new_str(bad[i]), &err), KC_EINVAL,
                     "'%s': %s", bad[i], err.msg);
        cr_assert_not_null(strstr(err.msg, "providers.chain.tx_timeout"), "%s",
                           err.msg);
    }
    cr_assert_eq(init_with(kc_value_new_int(-3), &err), KC_EINVAL, "%s",
                 err.msg);
    cr_assert_eq(init_with(kc_value_new_int(0), &err), KC_EINVAL, "%s",
                 err.msg);
}
