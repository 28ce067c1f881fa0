/* tests/unit/helpers/test_run.h: the engine on a loop of the test's own,
 * with every piece open to the test (engine_run.h hides them), for tests of
 * the engine itself and of a provider's kinds driven by it:
 *
 *     struct test_run r;
 *
 *     test_run_init(&r, &kc_provider_fake, cfg, spath, "test", false);
 *     cr_assert_eq(test_run_plan(&r, g, false), 0, "%s", r.eng.err.msg);
 *     ... r.plan, r.st, r.eng.max_running ...
 *     cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
 *     test_run_fini(&r);
 *
 * The addresses the engine reports finished are recorded in r.finished
 * (r.eng.on_event; a test may replace it).
 */
#ifndef KC_TESTS_TEST_RUN_H
#define KC_TESTS_TEST_RUN_H

#include "reconcile/exec.h"
#include "reconcile/http.h"
#include "reconcile/registry.h"

struct test_run {
    uv_loop_t loop;
    struct kc_engine eng;
    struct kc_registry *reg;
    struct kc_state *st;
    struct kc_value *pcfg; /* the providers' config: {NAME: {...}} */
    struct kc_log log;
    struct kc_http *http; /* NULL unless asked for */
    struct kc_plan *plan;
    int status;
    bool done;
    char finished[64][128]; /* addresses reported finished */
    size_t nfinished;
};

/* Sets R up for PROV with CONFIG (taken: becomes pcfg's PROV->name), the
 * state loaded from STATE_PATH, deployment DEPLOYMENT (borrowed), and an
 * HTTP client on the loop when WITH_HTTP. */
void test_run_init(struct test_run *r, const struct kc_provider_type *prov,
                   struct kc_value *config, const char *state_path,
                   const char *deployment, bool with_http);
/* Runs the loop until the engine's callback ran; its status. */
int test_run_loop(struct test_run *r);
/* Prepares and refreshes G (taken) into r->plan; the status (a prepare
 * error: its code, the message in r->eng.err). */
int test_run_plan(struct test_run *r, struct kc_graph *g, bool destroy);
/* Applies r->plan; the status. */
int test_run_apply(struct test_run *r);
/* Releases everything (the loop must close cleanly). */
void test_run_fini(struct test_run *r);

#endif
