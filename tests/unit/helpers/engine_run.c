/* tests/unit/helpers/engine_run.c: the real engine for provider unit tests
 * (see the header). */
#include "tests/unit/helpers/engine_run.h"

#include "reconcile/http.h"

struct engine_run {
    uv_loop_t loop;
    struct kc_log log;
    struct kc_http *http;
    struct kc_registry *reg;
    struct kc_state *st;
    struct kc_value *providers;
    struct kc_engine eng;
    struct kc_plan *plan;
    struct kc_err err;
    bool done;
    int status;
};

struct engine_run *engine_run_new(const struct kc_provider_type *prov,
                                  const struct kc_value *config,
                                  const char *state_path)
{
    struct engine_run *r = kc_xcalloc(1, sizeof(*r));
    struct kc_http_config hc = { 0 };
    struct kc_err err = { 0 };

    if (uv_loop_init(&r->loop) != 0)
        KC_BUG("uv_loop_init failed");
    kc_log_init(&r->log, KC_LOG_WARN);
    hc.loop = &r->loop;
    hc.log = &r->log;
    hc.seed = 1;
    if (kc_http_new(&hc, &r->http, &err) < 0)
        KC_BUG("kc_http_new: %s", err.msg);
    r->reg = kc_registry_new_empty();
    kc_registry_add(r->reg, prov);
    if (kc_state_load(state_path, &r->st, &err) < 0)
        KC_BUG("kc_state_load: %s", err.msg);
    r->providers = kc_value_new_map();
    if (config)
        kc_value_map_set(r->providers, prov->name, kc_value_dup(config));
    r->eng.loop = &r->loop;
    r->eng.log = &r->log;
    r->eng.http = r->http;
    r->eng.reg = r->reg;
    r->eng.state = r->st;
    r->eng.providers = r->providers;
    r->eng.deployment = "test";
    return r;
}

static void on_done(struct kc_engine *eng, int status)
{
    struct engine_run *r = kc_container_of(eng, struct engine_run, eng);

    r->status = status;
    r->err = eng->err;
    r->done = true;
}

static int run(struct engine_run *r)
{
    r->done = false;
    while (!r->done)
        if (uv_run(&r->loop, UV_RUN_ONCE) == 0 && !r->done)
            KC_BUG("the loop ran dry before the engine finished");
    if (r->status < 0) {
        /* The first failed item says more than "some resources failed". */
        for (size_t i = 0; i < r->plan->n; i++) {
            if (r->plan->items[i].st == KC_ITEM_FAILED) {
                kc_err_set(&r->err, r->status, "%s: %s",
                           r->plan->items[i].res->address,
                           r->plan->items[i].error);
                break;
            }
        }
    }
    return r->status;
}

int engine_run_plan(struct engine_run *r, struct kc_graph *g, bool destroy)
{
    int ret;

    if (r->plan)
        KC_BUG("one plan per engine_run");
    kc_err_clear(&r->err);
    ret = kc_engine_prepare(&r->eng, g, destroy, &r->plan, &r->err);
    if (ret == 0)
        ret = kc_engine_refresh(&r->eng, r->plan, on_done, &r->err);
    return ret < 0 ? ret : run(r);
}

int engine_run_apply(struct engine_run *r)
{
    int ret;

    if (!r->plan)
        KC_BUG("engine_run_apply before engine_run_plan");
    kc_err_clear(&r->err);
    ret = kc_engine_apply(&r->eng, r->plan, on_done, &r->err);
    return ret < 0 ? ret : run(r);
}

struct kc_plan_item *engine_run_item(struct engine_run *r, const char *addr)
{
    return r->plan ? kc_plan_find(r->plan, addr) : NULL;
}

struct kc_plan *engine_run_plan_of(struct engine_run *r)
{
    return r->plan;
}

struct kc_state *engine_run_state(struct engine_run *r)
{
    return r->st;
}

struct kc_engine *engine_run_engine(struct engine_run *r)
{
    return &r->eng;
}

uv_loop_t *engine_run_loop(struct engine_run *r)
{
    return &r->loop;
}

const char *engine_run_error(struct engine_run *r)
{
    return r->err.msg;
}

static void unref_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    uv_unref(h);
}

void engine_run_free(struct engine_run *r)
{
    if (!r)
        return;
    kc_engine_release(&r->eng);
    kc_http_close(r->http);
    uv_walk(&r->loop, unref_handle, NULL);  /* a forgotten handle: no hang */
    (void)uv_run(&r->loop, UV_RUN_DEFAULT); /* checked by uv_loop_close */
    if (uv_loop_close(&r->loop) != 0)
        KC_BUG("engine_run_free: handles left open on the loop");
    kc_plan_free(r->plan);
    kc_state_free(r->st);
    kc_value_free(r->providers);
    kc_registry_free(r->reg);
    kc_log_release(&r->log);
    free(r);
}
