/* tests/unit/helpers/test_run.c: the engine on a test's loop (see the
 * header). */
#include "tests/unit/helpers/test_run.h"

#include <criterion/criterion.h>

static void on_event(void *data, const struct kc_event *ev)
{
    struct test_run *r = data;

    if (ev->type == KC_EVENT_FINISHED && r->nfinished < 64)
        kc_snprintf(r->finished[r->nfinished++], 128, "%s", ev->address);
}

void test_run_init(struct test_run *r, const struct kc_provider_type *prov,
                   struct kc_value *config, const char *state_path,
                   const char *deployment, bool with_http)
{
    struct kc_err err = { 0 };

    memset(r, 0, sizeof(*r));
    cr_assert_eq(uv_loop_init(&r->loop), 0);
    kc_log_init(&r->log, KC_LOG_WARN);
    if (with_http) {
        struct kc_http_config hc = { 0 };

        hc.loop = &r->loop;
        hc.log = &r->log;
        cr_assert_eq(kc_http_new(&hc, &r->http, &err), 0, "%s", err.msg);
    }
    r->reg = kc_registry_new_empty();
    kc_registry_add(r->reg, prov);
    cr_assert_eq(kc_state_load(state_path, &r->st, &err), 0, "%s", err.msg);
    r->pcfg = kc_value_new_map();
    kc_value_map_set(r->pcfg, prov->name, config);
    r->eng.loop = &r->loop;
    r->eng.log = &r->log;
    r->eng.http = r->http;
    r->eng.reg = r->reg;
    r->eng.state = r->st;
    r->eng.providers = r->pcfg;
    r->eng.deployment = deployment;
    r->eng.on_event = on_event;
    r->eng.event_data = r;
}

static void on_done(struct kc_engine *eng, int status)
{
    struct test_run *r = kc_container_of(eng, struct test_run, eng);

    r->status = status;
    r->done = true;
}

int test_run_loop(struct test_run *r)
{
    r->done = false;
    /* A loop with nothing left to run will never finish the engine: fail
     * now, naming it, rather than spin until the timeout. */
    while (!r->done)
        if (uv_run(&r->loop, UV_RUN_ONCE) == 0 && !r->done)
            cr_assert_fail("the loop ran dry before the engine finished");
    return r->status;
}

int test_run_plan(struct test_run *r, struct kc_graph *g, bool destroy)
{
    struct kc_err err = { 0 };
    int ret = kc_engine_prepare(&r->eng, g, destroy, &r->plan, &err);

    if (ret < 0) {
        r->eng.err = err;
        return ret;
    }
    cr_assert_eq(kc_engine_refresh(&r->eng, r->plan, on_done, &err), 0, "%s",
                 err.msg);
    return test_run_loop(r);
}

int test_run_apply(struct test_run *r)
{
    struct kc_err err = { 0 };
    int ret = kc_engine_apply(&r->eng, r->plan, on_done, &err);

    if (ret < 0) {
        r->eng.err = err;
        return ret;
    }
    return test_run_loop(r);
}

void test_run_fini(struct test_run *r)
{
    kc_engine_release(&r->eng);
    if (r->http)
        kc_http_close(r->http);
    cr_assert_eq(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&r->loop), 0);
    kc_plan_free(r->plan);
    kc_state_free(r->st);
    kc_value_free(r->pcfg);
    kc_registry_free(r->reg);
    kc_log_release(&r->log);
}
