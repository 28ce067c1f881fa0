/* tests/unit/helpers/fake_provider.h: the "fake" provider for engine tests:
 * a file-backed world (JSON, so a child process or the CLI can share it and
 * a test can inspect it after kill -9) with configurable delays and
 * failures, and counters of what the provider was asked to do.
 *
 * Provider config (`providers: {fake: {...}}` or a kc_value map):
 *   world       path of the world file (required)
 *   delay_ms    how long create/update/delete take (default 0)
 *   observe_delay_ms  how long observe/read take (default 0)
 *   wait        true: create/update/delete only wait during their delay
 *               (kc_op_waiting), so --parallelism does not bound them
 *
 * Kinds:
 *   fake.thing    fields value (string), size (int, FORCE_NEW), secret
 *                 (string, SENSITIVE, write-only: never observed), label
 *                 (IGNORE_DRIFT), ref (any), ip (COMPUTED); outputs id, ip,
 *                 external_ip (= ip), value, size. update is in place;
 *                 list reports every fake.thing in the world.
 *   fake.frozen   like fake.thing without update: every change replaces.
 *   fake.identity field value; review requires consent to replace/delete.
 *   fake.contract field value; KC_KIND_RETAIN (destroy only forgets it).
 *   fake.data     data source: field key; output result = "data-of-<key>".
 *   fake.cbd      like fake.frozen, KC_KIND_CREATE_BEFORE_DESTROY (the old
 *                 object stays as "<address>~<id>" until deleted by id).
 *   fake.deploy   field value; create keeps a generated seed
 *                 ("<address>.seed") and records an intent {seed}, persists
 *                 the state, then creates (and clears the intent).
 *   fake.entry    field value, ref: observe finds it only when ref (its
 *                 parent's id) is known, like an allowlist entry needs its
 *                 contract's address.
 * fake.frozen allows 2 ops at once (a per-kind limit). Every observe checks
 * that the engine refuses it any write to the state.
 *
 * World file: {"objects": {ADDRESS: {"id", "attrs"}}, "fail": {ADDRESS:
 * PHASE}, "counters": {"observe", "create", "update", "delete", "read",
 * "mutating", "running", "max_running"}, "log": ["create fake.thing.a", ...]}.
 * Each op reads and rewrites the file (tests only: small and local).
 */
#ifndef KC_TESTS_FAKE_PROVIDER_H
#define KC_TESTS_FAKE_PROVIDER_H

#include "reconcile/resource.h"

#include <json-c/json.h>

#include "reconcile/expand.h"

extern const struct kc_provider_type kc_provider_fake;

/* The `fake:` manifest section, found by reconcile/expand.c through a weak
 * symbol: NAME: {kind: thing|frozen|identity|contract|data, FIELD: VALUE...,
 * ref_from: ADDRESS.OUTPUT (sets field ref, late bound), after: [ADDRESS],
 * alias: PREFIX (e.g. kms_vms.x: ${kms_vms.x.external_ip} is its ip),
 * ref_path: REFERENCE (sets field ref from kc_expand_resolve, e.g.
 * contracts.kms.address, through an alias of an earlier entry)}. */
int kc_expand_section_fake(struct kc_expand *ex, const struct kc_node *section,
                           struct kc_err *err);

/* Creates an empty world file at PATH. */
void fake_world_init(const char *path);
/* The world as JSON (caller puts); NULL if unreadable. */
struct json_object *fake_world_load(const char *path);
/* Writes W (borrowed) to PATH. */
void fake_world_save(const char *path, struct json_object *w);
/* Zeroes the counters and the log, keeps the objects. */
void fake_world_reset_counters(const char *path);
/* Makes PHASE ("create", "update", "delete", "observe") of ADDR fail. */
void fake_world_fail(const char *path, const char *addr, const char *phase);
/* Sets attribute FIELD of ADDR to string VALUE behind kmsctl's back. */
void fake_world_set_attr(const char *path, const char *addr, const char *field,
                         const char *value);
/* Removes ADDR from the world behind kmsctl's back. */
void fake_world_remove(const char *path, const char *addr);
/* Counter NAME ("mutating", "max_running", "create"...). */
int64_t fake_world_counter(const char *path, const char *name);
/* True if ADDR exists in the world. */
bool fake_world_has(const char *path, const char *addr);
/* Index of the first log line LINE ("create fake.thing.a"), or -1. */
int fake_world_log_index(const char *path, const char *line);

#endif
