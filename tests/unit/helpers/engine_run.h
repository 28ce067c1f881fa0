/* tests/unit/helpers/engine_run.h: drive a provider's kinds through the real
 * engine in a unit test: plan (observe + diff) and apply a small graph
 * against a state file, on a loop of the test's own, with an HTTP client
 * for providers that talk to kmsctl-sim.
 *
 *     struct engine_run *r = engine_run_new(&kc_provider_gcp, cfg, spath);
 *     struct kc_graph *g = kc_graph_new();
 *     struct kc_resource *res;
 *
 *     kc_graph_add(g, "gcp.firewall", "kms-12001", &res, NULL);
 *     kc_resource_set_value(res, "port", kc_value_new_int(12001));
 *     cr_assert_eq(engine_run_plan(r, g, false), 0, "%s",
 *                  engine_run_error(r));
 *     cr_assert_eq(engine_run_item(r, "gcp.firewall.kms-12001")->action,
 *                  KC_ACTION_CREATE);
 *     cr_assert_eq(engine_run_apply(r), 0, "%s", engine_run_error(r));
 *     engine_run_free(r);   (runs the loop until every handle closed)
 *
 * One plan per engine_run (make a new one for the next run: the state is
 * reloaded from its file). Aborts the test on a broken invariant.
 */
#ifndef KC_TESTS_ENGINE_RUN_H
#define KC_TESTS_ENGINE_RUN_H

#include "reconcile/exec.h"

struct engine_run;

/* PROV's config is CONFIG (borrowed; a map, or NULL); the state is loaded
 * from STATE_PATH (a missing file is an empty state). */
struct engine_run *engine_run_new(const struct kc_provider_type *prov,
                                  const struct kc_value *config,
                                  const char *state_path);
/* Prepares and refreshes G (taken). DESTROY: everything in the state goes.
 * Returns the engine's status (0, or < 0 with engine_run_error). */
int engine_run_plan(struct engine_run *r, struct kc_graph *g, bool destroy);
/* Applies the plan. 0, KC_EREMOTE (see the items), or another error. */
int engine_run_apply(struct engine_run *r);
/* The plan item of ADDR (NULL if none), the plan, the state, the engine
 * (set options such as parallelism or consent before engine_run_plan). */
struct kc_plan_item *engine_run_item(struct engine_run *r, const char *addr);
struct kc_plan *engine_run_plan_of(struct engine_run *r);
struct kc_state *engine_run_state(struct engine_run *r);
struct kc_engine *engine_run_engine(struct engine_run *r);
uv_loop_t *engine_run_loop(struct engine_run *r);
/* The last error message ("" when none). */
const char *engine_run_error(struct engine_run *r);
void engine_run_free(struct engine_run *r);

#endif
