/* tests/unit/test_chain_timing.c: the chain timing knobs of the manifest
 * (providers.chain.tx_timeout, rpc_deadline, rpc_timeout) reach the
 * transaction manager and the JSON-RPC client the provider builds; their
 * bounds are enforced naming the field; defaults apply when absent. No chain
 * is contacted: init only configures. */
#include "resources/chain/chain.h"
#include "resources/chain/rpc.h"
#include "resources/chain/txm.h"

#include <criterion/criterion.h>
#include <string.h>

#include "reconcile/http.h"
#include "reconcile/log.h"
#include "reconcile/resource.h"
#include "reconcile/value.h"

extern const struct kc_provider_type kc_provider_chain;

/* One provider per test: the fixture owns the loop, the HTTP client and
 * the provider's config; knobs are added to cfg before start(). */
static struct {
    uv_loop_t loop;
    struct kc_log log;
    struct kc_http *http;
    struct kc_value *cfg;
    struct kc_provider p;
    bool started;
} fx;

static void fx_init(void)
{
    static const char key[] = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a"
                              "8412f4603b6b78690d";
    struct kc_http_config hc = { 0 };
    struct kc_err err = { 0 };

    memset(&fx, 0, sizeof(fx));
    cr_assert_eq(uv_loop_init(&fx.loop), 0);
    kc_log_init(&fx.log, KC_LOG_WARN);
    hc.loop = &fx.loop;
    hc.log = &fx.log;
    cr_assert_eq(kc_http_new(&hc, &fx.http, &err), 0, "%s", err.msg);
    fx.cfg = kc_value_new_map();
    kc_value_map_set(fx.cfg, "chain_id", kc_value_new_int(84532));
    kc_value_map_set(fx.cfg, "rpc_url", kc_value_new_str("http://[::1]:9"));
    kc_value_map_set(fx.cfg, "private_key",
                     kc_value_new_secret(key, strlen(key)));
}

static void fx_fini(void)
{
    if (fx.started)
        kc_provider_chain.cleanup(&fx.p);
    kc_http_close(fx.http);
    cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&fx.loop), 0);
    kc_value_free(fx.cfg);
    kc_log_release(&fx.log);
}

TestSuite(chain_timing, .init = fx_init, .fini = fx_fini, .timeout = 30);

static int start(struct kc_err *err)
{
    int ret;

    fx.p.type = &kc_provider_chain;
    fx.p.config = fx.cfg;
    fx.p.deployment = "timing";
    fx.p.loop = &fx.loop;
    fx.p.log = &fx.log;
    fx.p.http = fx.http;
    ret = kc_provider_chain.init(&fx.p, err);
    fx.started = ret == 0;
    return ret;
}

static struct chain_txm_config txm_config(void)
{
    struct chain_prov *cp = fx.p.data;
    struct chain_txm_config c;

    cr_assert(fx.started);
    cr_assert_not_null(cp);
    chain_txm_get_config(cp->txm, &c);
    return c;
}

static long rpc_timeout(void)
{
    struct chain_prov *cp = fx.p.data;

    return chain_rpc_timeout_ms(cp->rpc);
}

Test(chain_timing, defaults_when_absent)
{
    struct kc_err err = { 0 };
    struct chain_txm_config c;

    cr_assert_eq(start(&err), 0, "%s", err.msg);
    c = txm_config();
    cr_assert_eq(c.tx_timeout_ms, CHAIN_TXM_TIMEOUT_MS);
    cr_assert_eq(c.rpc_deadline_ms, CHAIN_TXM_RPC_DEADLINE_MS);
    cr_assert_eq(rpc_timeout(), CHAIN_RPC_TIMEOUT_MS);
}

Test(chain_timing, manifest_values_reach_the_txm_and_the_rpc_client)
{
    struct kc_err err = { 0 };
    struct chain_txm_config c;

    kc_value_map_set(fx.cfg, "tx_timeout", kc_value_new_str("15m"));
    kc_value_map_set(fx.cfg, "rpc_deadline", kc_value_new_str("45m"));
    kc_value_map_set(fx.cfg, "rpc_timeout", kc_value_new_str("2500ms"));
    cr_assert_eq(start(&err), 0, "%s", err.msg);
    c = txm_config();
    cr_assert_eq(c.tx_timeout_ms, 15ull * 60 * 1000);
    cr_assert_eq(c.rpc_deadline_ms, 45ull * 60 * 1000);
    cr_assert_eq(rpc_timeout(), 2500);
}

Test(chain_timing, a_number_is_seconds)
{
    struct kc_err err = { 0 };

    kc_value_map_set(fx.cfg, "rpc_deadline", kc_value_new_int(600));
    kc_value_map_set(fx.cfg, "rpc_timeout", kc_value_new_int(3600));
    cr_assert_eq(start(&err), 0, "%s", err.msg);
    cr_assert_eq(txm_config().rpc_deadline_ms, 600000);
    cr_assert_eq(rpc_timeout(), 3600000);
}

/* Each bad value is refused by init with CODE and a message naming FIELD
 * and containing WANT. */
struct bad {
    const char *field, *value;
    int code;
    const char *want;
};

Test(chain_timing, out_of_bounds_is_refused_naming_the_field)
{
    static const struct bad cases[] = {
        { "rpc_deadline", "999ms", KC_EINVAL, "at least 1s" },
        { "rpc_deadline", "0s", KC_EINVAL, "at least 1s" },
        { "rpc_deadline", "169h", KC_ERANGE, "168h" },
        { "rpc_deadline", "-5s", KC_EINVAL, "not a duration" },
        { "rpc_deadline", "2d", KC_EINVAL, "unit 'd'" },
        { "rpc_timeout", "99ms", KC_EINVAL, "at least 100ms" },
        { "rpc_timeout", "61m", KC_ERANGE, "limit of 1h" },
        { "rpc_timeout", "3601s", KC_ERANGE, "limit of 1h" },
        { "rpc_timeout", "99999999999999h", KC_ERANGE, "limit of 1h" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        struct kc_err err = { 0 };
        char *field = kc_xasprintf("providers.chain.%s", cases[i].field);

        kc_value_map_set(fx.cfg, cases[i].field,
                         kc_value_new_str(cases[i].value));
        cr_assert_eq(start(&err), cases[i].code, "%s=%s: %s", cases[i].field,
                     cases[i].value, err.msg);
        cr_assert_not_null(strstr(err.msg, field), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, cases[i].want), "%s", err.msg);
        kc_value_map_del(fx.cfg, cases[i].field);
        free(field);
    }
}

Test(chain_timing, integer_seconds_out_of_bounds)
{
    struct kc_err err = { 0 };

    kc_value_map_set(fx.cfg, "rpc_timeout", kc_value_new_int(3601));
    cr_assert_eq(start(&err), KC_ERANGE, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "providers.chain.rpc_timeout: 3601 "
                                       "seconds is more than the limit of 1h"),
                       "%s", err.msg);
    kc_value_map_del(fx.cfg, "rpc_timeout");
    kc_value_map_set(fx.cfg, "rpc_deadline", kc_value_new_int(0));
    cr_assert_eq(start(&err), KC_EINVAL, "%s", err.msg);
    cr_assert_not_null(
        strstr(err.msg, "providers.chain.rpc_deadline must be at least 1s"),
        "%s", err.msg);
}
