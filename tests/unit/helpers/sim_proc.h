/* tests/unit/helpers/sim_proc.h: run kmsctl-sim as a child of a test and talk
 * to its admin API (blocking calls: tests only, never on a loop).
 *
 *     struct sim_proc *sp = sim_proc_start("test,gcp", 42);
 *     const char *base = sim_proc_url(sp);          // "http://127.0.0.1:PORT"
 *     ...
 *     struct json_object *r = sim_proc_requests(sp);
 *     cr_assert_eq(json_object_get_int(json_object_object_get(r, "mutating")),
 * 0); json_object_put(r); sim_proc_stop(sp);
 *
 * The binary is $KMSCTL_SIM, else $KC_BUILD_DIR/kmsctl-sim. The child's
 * stderr (one line per request) goes to $KC_BUILD_DIR/sim-<pid>.log, or to
 * the test's stderr when SIM_PROC_STDERR=1. Failures abort the test with a
 * Criterion assertion. The child is killed when the test process exits
 * (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
 */
#ifndef KC_TESTS_SIM_PROC_H
#define KC_TESTS_SIM_PROC_H

#include "reconcile/kc.h"

#include <json-c/json.h>
#include <sys/types.h>

struct sim_proc;

/* Starts kmsctl-sim --listen 127.0.0.1:0 --services SERVICES --seed SEED
 * and waits (up to 10 s) for its "listening on" line. EXTRA_ARGS (may be
 * NULL, NULL-terminated) are appended (e.g. --tls-cert F --tls-key F). */
struct sim_proc *sim_proc_start(const char *services, uint64_t seed);
struct sim_proc *sim_proc_start_args(const char *services, uint64_t seed,
                                     const char *const *extra_args);
/* "http://127.0.0.1:PORT" (or https://); borrowed. */
const char *sim_proc_url(const struct sim_proc *sp);
uint16_t sim_proc_port(const struct sim_proc *sp);
pid_t sim_proc_pid(const struct sim_proc *sp);

/* Admin calls. The JSON results are new references (caller puts). */
struct json_object *sim_proc_inventory(struct sim_proc *sp);
struct json_object *sim_proc_requests(struct sim_proc *sp);
/* Number of requests the simulator saw for ROUTE ("METHOD /pattern"). */
int64_t sim_proc_route_count(struct sim_proc *sp, const char *route);
/* POST /_sim/faults with RULES_JSON (a JSON list as text). */
void sim_proc_set_faults(struct sim_proc *sp, const char *rules_json);
void sim_proc_clear_faults(struct sim_proc *sp);
void sim_proc_reset(struct sim_proc *sp);
/* PATCH /_sim/objects/SERVICE/KIND/NAME with PATCH_JSON; returns status. */
long sim_proc_patch_object(struct sim_proc *sp, const char *service,
                           const char *kind, const char *name,
                           const char *patch_json);
long sim_proc_delete_object(struct sim_proc *sp, const char *service,
                            const char *kind, const char *name);
/* Any request to the simulator: METHOD PATH with an optional BODY; returns
 * the status and (when OUT is not NULL) the body (caller frees). */
long sim_proc_call(struct sim_proc *sp, const char *method, const char *path,
                   const char *body, char **out);
/* SIGTERM, wait (SIGKILL after 5 s), free. NULL-safe. */
void sim_proc_stop(struct sim_proc *sp);

#endif
