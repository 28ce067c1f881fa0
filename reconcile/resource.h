/* reconcile/resource.h: the contract between the engine and the providers
 * (DESIGN.md §3). A provider is a table of resource kinds; a kind is a table
 * of asynchronous callbacks and a field list. The engine calls them with a
 * struct kc_op and learns the result from what the callback puts in it.
 *
 * ---------------------------------------------------------------------------
 * 1. Writing a kind (resources/<provider>/<kind>.c)
 *
 *     static const struct kc_field firewall_fields[] = {
 *         { "name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
 *         { "ports", KC_VALUE_LIST, 0 },
 *         { "self_link", KC_VALUE_STRING, KC_FIELD_COMPUTED },
 *         { NULL },
 *     };
 *     const struct kc_resource_type kc_gcp_firewall = {
 *         .kind = "gcp.firewall",
 *         .fields = firewall_fields,
 *         .observe = firewall_observe,
 *         .create = firewall_create,
 *         .update = firewall_update,   (NULL: every change replaces)
 *         .delete = firewall_delete,
 *     };
 *
 * Callback contract (all of observe/create/update/delete/read): return 0 when
 * the work started; then call kc_op_done(op, status) exactly once, later
 * (calling it before the callback returns is allowed too: the engine defers
 * the completion to the next loop turn). Return < 0 when nothing started,
 * with kc_op_err(op) filled (kc_err_set(kc_op_err(op), ...)); kc_op_done is
 * then never called. A failed completion sets kc_op_err(op) before
 * kc_op_done(op, code), or uses kc_op_fail(). Messages name what failed and
 * the provider's reason ("403 compute.firewalls.create denied"); the engine
 * prefixes the action and address. Nothing blocks the loop: HTTP through
 * kc_op_http(op), waiting through uv timers on kc_op_loop(op).
 *
 *   observe(op)  Reads the live object. If it exists, kc_op_set_observed(op,
 *                attrs) with the fields it can read (a field it cannot read,
 *                e.g. a secret or write-only input, is simply left out and
 *                compared with the last-applied value instead), plus
 *                kc_op_set_id() and every output (kc_op_set_output), so that
 *                a no-op plan knows every value dependents need. If it does
 *                not exist, set nothing: absent. kc_op_id(op) is the id from
 *                the state (NULL when never created: find it by its
 *                deterministic name or ownership labels). Observe never
 *                mutates anything (drift runs only observe and read).
 *                Every resource is observed at once, before its
 *                dependencies are planned: references in kc_op_desired()
 *                are bound to the dependencies' last known outputs (the
 *                state's, or their own observe's), or UNKNOWN when none is
 *                known yet (nothing applied); an observe that cannot find
 *                its object without such a value reports it absent.
 *   create(op)   Makes the object from kc_op_desired(); sets its id, observed
 *                attributes and outputs. Non-idempotent creates record a
 *                write-ahead intent first (section 4).
 *   update(op)   Changes it in place. kc_op_changed(op, field) says which
 *                fields differ. NULL: every change is a replacement.
 *   delete(op)   Removes it (KC_KIND_REVOKE kinds: revokes it on chain).
 *   read(op)     Data sources (KC_KIND_DATA): look something up, set
 *                outputs. Run at plan time when the inputs are known, else at
 *                apply time once they are; never mutates.
 *   list(op)     Optional, at plan and drift time, once per kind: finds
 *                every object of the kind that carries this deployment's
 *                ownership label (kmsctl-deployment=<p->deployment>) and
 *                calls kc_op_found(op, name, id) for each. Objects that are
 *                in neither the manifest nor the state are reported as not
 *                managed (drift: external). kc_op_address() is the kind;
 *                never mutates.
 *   review(op)   Optional, synchronous, at plan time, for a resource whose
 *                action is not noop: may call kc_op_warn() to annotate the
 *                plan and kc_op_require_consent() to refuse the change unless
 *                the operator consents (--allow-identity-loss ADDRESS), e.g.
 *                "replacing destroys the KMS identity (keys on the data disk
 *                and in the vTPM)". Consent written in the manifest is the
 *                kind's own business: review reads kc_op_desired() and then
 *                does not require consent.
 *
 * What the state records for a resource after a successful create/update:
 * the provider id (kc_op_set_id), the desired attributes as applied (the
 * "last applied" values, kc_op_prior next time; sensitive ones digested)
 * and the outputs the op set. What observe reports is compared with the
 * last applied values to tell drift (changed outside kmsctl) from manifest
 * changes, so observe must report fields in the same form as desired.
 *
 * When the engine calls create/update/delete, kc_op_desired() holds no
 * UNKNOWN value: every reference was bound from the outputs of dependencies
 * that finished (late binding, DESIGN.md §3). A value that is still unknown
 * fails the resource before the callback is called.
 *
 * Fields: every attribute the manifest sets for a resource must be a field of
 * its kind (expand refuses others). FORCE_NEW: a change replaces the object.
 * COMPUTED: set by the provider only (observed, never desired). SENSITIVE:
 * shown "(sensitive)", stored as a salted digest; the value must also be
 * marked sensitive (values from ${env:} and ${file:} are). IGNORE_DRIFT: a
 * difference between observed and last applied is not reported as drift and
 * does not cause an update. OBSERVED: the world sets it (see the enum). A field
 * of type KC_VALUE_NULL accepts any type.
 *
 * ---------------------------------------------------------------------------
 * 2. Writing a provider (resources/<provider>/provider.c)
 *
 *     static const struct kc_resource_type *const gcp_kinds[] = {
 *         &kc_gcp_firewall, &kc_gcp_instance, NULL,
 *     };
 *     const struct kc_provider_type kc_provider_gcp = {
 *         .name = "gcp",          (every kind is "gcp.<something>")
 *         .kinds = gcp_kinds,
 *         .concurrency = 8,       (0: only --parallelism bounds it)
 *         .init = gcp_init,
 *         .cleanup = gcp_cleanup,
 *     };
 *
 * The exported symbol MUST be named kc_provider_<name>. resources/providers.c
 * refers to kc_provider_chain, kc_provider_gcp, kc_provider_aws and
 * kc_provider_dstack as weak symbols: a provider whose folder is not built
 * is NULL there, and a manifest that needs it fails with "provider 'gcp' is
 * not built". Adding a provider with a new name means adding one line to
 * the table in resources/providers.c; no other engine code changes. The
 * kmsctl executable links the core library as a whole archive so that the
 * providers' objects are pulled in (CMakeLists.txt).
 *
 * init(p) runs once per process before any op of the provider, only if the
 * graph holds a resource of one of its kinds, synchronously, before the
 * loop runs (it must not block on the network: fetch tokens lazily inside
 * the ops). p->config is the manifest's `providers.<name>` section,
 * interpolated (secrets from ${env:} are SENSITIVE values), or NULL. Put the
 * provider's context in p->data; cleanup(p) frees it (called only after a
 * successful init, after the loop has stopped running the provider's ops).
 *
 * ---------------------------------------------------------------------------
 * 3. The manifest section and references (reconcile/expand.c)
 *
 * reconcile/expand.c is the only code that knows the manifest's sections. It
 * has one function per section, each written by the engineer of the provider
 * that owns the section (contracts: chain; kms_vms: gcp, with the dstack
 * kinds it needs; nitro_hosts: aws), listed in the `sections[]` table there:
 *
 *     static int expand_kms_vms(struct kc_expand *ex,
 *                               const struct kc_node *section,
 *                               struct kc_err *err);
 *
 * The section node has passed schema validation and kc_manifest_check. The
 * function adds resources through reconcile/expand.h: kc_expand_add(ex,
 * "gcp.instance", name, node, &res, err), then one kc_expand_set_node() per
 * attribute taken from the manifest (the node is interpolated by the engine,
 * at plan time and again at apply time when a reference was unknown),
 * kc_expand_set_value() for attributes expand computes itself,
 * kc_expand_set_ref() for an attribute that is another resource's output,
 * kc_expand_depends_on() for an ordering the references do not show, and
 * kc_expand_resolve() to find what another section supplies (through its
 * alias, e.g. "contracts.kms.address") rather than guessing its address.
 * Dependencies also come from every ${...} reference inside the nodes.
 *
 * References: the forms a manifest may write are the table in
 * reconcile/interp.c (kms_vms.NAME.ATTR, nitro_hosts.NAME.ATTR,
 * contracts.kms.ATTR, contracts.apps.NAME.ATTR); kc_manifest_check refuses
 * others. The section function maps each prefix to the resource that
 * supplies it: kc_expand_alias(ex, "kms_vms.dstack-kms",
 * "gcp.instance.dstack-kms") makes `${kms_vms.dstack-kms.external_ip}`
 * output `external_ip` of gcp.instance.dstack-kms; ("contracts.kms",
 * "chain.kms") makes `${contracts.kms.address}` output `address` of
 * chain.kms; ("contracts.apps.nitro-keys", "chain.app.nitro-keys") gives
 * app_id. The longest alias that is a prefix (at a '.') wins; the rest of
 * the reference is the output name. An output the resource does not set
 * falls back to its desired attribute of that name. Every reference inside
 * a node attribute is also a dependency edge (expand adds it). Inside the
 * engine (kc_expand_set_ref) a reference may name an address directly.
 *
 * Late binding: at plan time a reference to a resource that will be
 * created or replaced is UNKNOWN ("(known after apply)"); at apply time
 * the attribute is evaluated again after the dependency finished, from the
 * outputs it set.
 *
 * ---------------------------------------------------------------------------
 * 4. Write-ahead intents, generated values, persistence
 *
 * A non-idempotent create (a contract deploy, RunInstances) first records
 * what it is about to do, makes it durable, then acts:
 *
 *     kc_op_intent_put(op, "deploy", data, kc_op_err(op));  (nonce, address)
 *     kc_op_persist(op, on_intent_written);                 (state on disk)
 *     ... on_intent_written: send the transaction ...
 *     ... when done: kc_op_intent_clear(op); kc_op_done(op, 0);
 *
 * On the next run, observe (or create) finds kc_op_intent(op) left by a
 * crashed run and looks for the object it announced instead of acting again.
 * The engine writes the state after every finished op anyway, so clearing an
 * intent needs no persist of its own.
 *
 * Generated values that must stay stable across runs (instance_id_seed,
 * app_id) are read with kc_op_generated(op, key) and kept with
 * kc_op_generated_put(); keys are free-form, by convention
 * "<address>.<name>". Persist before the value is used outside.
 *
 * ---------------------------------------------------------------------------
 * 5. Cancellation
 *
 * After the first SIGINT/SIGTERM the engine starts nothing new and
 * kc_op_is_canceled(op) becomes true. A long op (polling an operation, a
 * receipt) should reach a safe point and complete: with its result if the
 * object was made (so it lands in the state), or with KC_ECANCELED. A second
 * signal exits at once.
 */
#ifndef KC_RECONCILE_RESOURCE_H
#define KC_RECONCILE_RESOURCE_H

#include "reconcile/kc.h"
#include "reconcile/log.h"
#include "reconcile/state.h"
#include "reconcile/value.h"

#include <uv.h>

struct kc_http; /* reconcile/http.h */
struct kc_op;
struct kc_provider;

enum kc_field_flags {
    KC_FIELD_FORCE_NEW = 1 << 0,
    KC_FIELD_COMPUTED = 1 << 1,
    KC_FIELD_SENSITIVE = 1 << 2,
    KC_FIELD_IGNORE_DRIFT = 1 << 3,
    /* Set by the world, never by the manifest (e.g. a key another service
     * holds): its desired value is what observe reports, and the state
     * records it as last applied. A change from the last applied value is
     * drift (cause external) that needs no action of its own: the kind's
     * outputs carry the consequence to its dependents. */
    KC_FIELD_OBSERVED = 1 << 4,
};

struct kc_field {
    const char *name; /* NULL ends a field table */
    enum kc_value_type type;
    unsigned flags; /* enum kc_field_flags */
};

enum kc_kind_flags {
    /* A data source: read() only, never created, updated or deleted. */
    KC_KIND_DATA = 1 << 0,
    /* delete() revokes (an on-chain allowlist entry): shown as "revoke". */
    KC_KIND_REVOKE = 1 << 1,
    /* Cannot be deleted (a contract): destroy drops it from the state and
     * reports it as left; delete() is never called. */
    KC_KIND_RETAIN = 1 << 2,
    /* On replace, create the new object before deleting the old one. */
    KC_KIND_CREATE_BEFORE_DESTROY = 1 << 3,
};

enum kc_action {
    KC_ACTION_NOOP = 0,
    KC_ACTION_CREATE,
    KC_ACTION_UPDATE,
    KC_ACTION_REPLACE,
    KC_ACTION_DELETE,
    KC_ACTION_READ,
};

/* What an op is doing when its callback runs. More may be added: a switch
 * over it needs a default. */
enum kc_op_phase {
    KC_PHASE_OBSERVE = 0,
    KC_PHASE_READ,
    KC_PHASE_REVIEW,
    KC_PHASE_CREATE,
    KC_PHASE_UPDATE,
    KC_PHASE_DELETE,
    KC_PHASE_LIST,
};

/* Starts the work of OP. See the callback contract above. */
typedef int (*kc_op_fn)(struct kc_op *op);
/* Synchronous plan-time review (see above). */
typedef void (*kc_op_review_fn)(struct kc_op *op);
/* Completion of kc_op_persist(). STATUS 0: the state is on disk. */
typedef void (*kc_op_cb)(struct kc_op *op, int status);

struct kc_resource_type {
    const char *kind;              /* "gcp.instance": "<provider>.<type>" */
    const struct kc_field *fields; /* ends with { NULL } */
    unsigned flags;                /* enum kc_kind_flags */
    int concurrency;               /* ops of this kind at once; 0: no limit */
    kc_op_fn observe;              /* required, except for data sources */
    kc_op_fn create;
    kc_op_fn update; /* NULL: every change is a replacement */
    kc_op_fn delete;
    kc_op_fn read; /* data sources */
    kc_op_review_fn review;
    kc_op_fn list; /* optional: the objects carrying the ownership label */
};

struct kc_provider_type {
    const char *name;                            /* "gcp" */
    const struct kc_resource_type *const *kinds; /* NULL-terminated */
    int concurrency; /* ops of this provider at once; 0: no limit */
    int (*init)(struct kc_provider *p, struct kc_err *err);
    void (*cleanup)(struct kc_provider *p);
};

/* One provider instance per run, made by the engine. */
struct kc_provider {
    /* read-only */
    const struct kc_provider_type *type;
    const struct kc_value *config; /* providers.<name>, or NULL */
    const char *deployment;        /* the manifest's name: ownership labels */
    /* The manifest's folder: relative paths in the config and in desired
     * values (credentials, artifacts, images) are relative to it. NULL when
     * there is no manifest (tests): the working folder. */
    const char *manifest_dir;
    uv_loop_t *loop;
    struct kc_log *log;
    struct kc_http *http; /* shared HTTP client (NULL in engine unit tests) */
    /* public */
    void *data; /* the provider's context: set by init, freed by cleanup */
};

/* --- what the op tells the callback (all borrowed until kc_op_done) --- */

const char *kc_op_address(const struct kc_op *op); /* "gcp.instance.kms" */
/* The part of the address after the kind: "kms". */
const char *kc_op_name(const struct kc_op *op);
const struct kc_resource_type *kc_op_type(const struct kc_op *op);
enum kc_op_phase kc_op_phase(const struct kc_op *op);
/* "observe", "read", "review", "create", "update", "delete" or "list" (the
 * word in progress events and errors); "?" outside the enum. */
const char *kc_op_phase_name(enum kc_op_phase phase);
/* The planned action (at review, create, update, delete). */
enum kc_action kc_op_action(const struct kc_op *op);
struct kc_provider *kc_op_provider(const struct kc_op *op);
void *kc_op_provider_data(const struct kc_op *op); /* provider->data */
uv_loop_t *kc_op_loop(const struct kc_op *op);
struct kc_log *kc_op_log(const struct kc_op *op);
struct kc_http *kc_op_http(const struct kc_op *op);
/* Where a callback puts its error message. */
struct kc_err *kc_op_err(struct kc_op *op);

/* Desired attribute FIELD (interpolated), or NULL if the manifest does not
 * set it. May be UNKNOWN at observe/read/review time, never at create,
 * update or delete time. kc_op_desired_all: the whole map (never NULL). */
const struct kc_value *kc_op_desired(const struct kc_op *op, const char *field);
const struct kc_value *kc_op_desired_all(const struct kc_op *op);
/* Attribute FIELD last applied (from the state; sensitive ones are digests),
 * or NULL. kc_op_prior_all: the map or NULL when not in the state. */
const struct kc_value *kc_op_prior(const struct kc_op *op, const char *field);
const struct kc_value *kc_op_prior_all(const struct kc_op *op);
/* Output NAME recorded in the state, or NULL. */
const struct kc_value *kc_op_prior_output(const struct kc_op *op,
                                          const char *name);
/* Observed attribute FIELD (set by observe in this run), or NULL. */
const struct kc_value *kc_op_observed(const struct kc_op *op,
                                      const char *field);
/* The provider id: from the state, or as set in this run; NULL if none. */
const char *kc_op_id(const struct kc_op *op);
/* True if FIELD's desired value differs from the world (update time). */
bool kc_op_changed(const struct kc_op *op, const char *field);

/* --- what the callback tells the engine --- */

/* The object exists with these attributes (a map; taken). Observe/create/
 * update. Calling it again replaces the map. */
void kc_op_set_observed(struct kc_op *op, struct kc_value *attrs);
/* The provider id (copied). */
void kc_op_set_id(struct kc_op *op, const char *id);
/* Output NAME (taken), for references and `kmsctl output`. */
void kc_op_set_output(struct kc_op *op, const char *name, struct kc_value *val);
/* Completes the op (see the contract). STATUS 0 or a negative KC_E*. */
void kc_op_done(struct kc_op *op, int status);
/* Sets kc_op_err(op) and completes with CODE. */
void kc_op_fail(struct kc_op *op, int code, const char *fmt, ...)
    KC_PRINTF(3, 4);
/* A progress note for the live display ("waiting for operation-123"). */
void kc_op_progress(struct kc_op *op, const char *fmt, ...) KC_PRINTF(2, 3);

/* --- list only --- */

/* An object of the op's kind carrying the ownership label: NAME is the part
 * of its address after the kind (the address is "<kind>.<NAME>"), ID the
 * provider's id (may be NULL). Both copied. */
void kc_op_found(struct kc_op *op, const char *name, const char *id);
/* At observe time: an entry inside this resource that nobody manages (an
 * on-chain allowlist entry that the manifest does not list), of KIND
 * ("os_image") with the provider's ID (its hash). Listed with the plan's and
 * drift's unmanaged objects under this resource's address; its drift is the
 * resource's own difference (counted once). Copied; ignored outside
 * observe. */
void kc_op_found_entry(struct kc_op *op, const char *kind, const char *id);

/* --- plan-time review only --- */

/* Annotates the plan of this resource (one line, shown with a '!'). */
void kc_op_warn(struct kc_op *op, const char *fmt, ...) KC_PRINTF(2, 3);
/* Refuses the planned action unless the operator consents with
 * --allow-identity-loss ADDRESS. REASON is shown in the plan. */
void kc_op_require_consent(struct kc_op *op, const char *fmt, ...)
    KC_PRINTF(2, 3);

/* --- intents, generated values, persistence (section 4) --- */

/* The intent left for this address by an earlier run, or NULL. Borrowed. */
const struct kc_state_intent *kc_op_intent(const struct kc_op *op);
/* Records an intent (in memory; kc_op_persist makes it durable). DATA is a
 * map (copied); KC_EINVAL if sensitive or unknown. Not allowed at observe,
 * read or review (KC_EPERM): drift never writes. */
int kc_op_intent_put(struct kc_op *op, const char *what,
                     const struct kc_value *data, struct kc_err *err);
void kc_op_intent_clear(struct kc_op *op);
/* The generated value KEY or NULL. Borrowed. */
const struct kc_value *kc_op_generated(const struct kc_op *op, const char *key);
/* Keeps VAL (copied) under KEY. KC_EPERM at observe/read/review. */
int kc_op_generated_put(struct kc_op *op, const char *key,
                        const struct kc_value *val, struct kc_err *err);
/* Writes the state now, asynchronously; CB(op, status) runs once, later,
 * from the loop, when it is on disk (0) or the write failed (< 0, message in
 * kc_op_err). Returns < 0 when nothing started (CB never called): at
 * observe/read/review/list (KC_EPERM). Several may be in flight for one op;
 * their callbacks come in the order of the calls. If the op completes
 * first, the pending callbacks are not called (the writes still finish). */
int kc_op_persist(struct kc_op *op, kc_op_cb cb);

/* --- waiting --- */

/* WAITING true: the op now only waits for an outside event (a transaction
 * receipt, a cloud operation) and does no work of its own until it comes.
 * Such an op no longer counts against --parallelism (the global bound on
 * ops at once), so other ops may start meanwhile; it still counts against
 * its provider's and its kind's `concurrency` (those bound what a provider
 * can have in flight, waiting or not). WAITING false: it works again and
 * counts again; nothing is preempted, so the busy ops may briefly exceed
 * --parallelism. kc_op_done clears it. Any phase; idempotent. */
void kc_op_waiting(struct kc_op *op, bool waiting);

/* --- cancellation --- */

/* True after the first SIGINT/SIGTERM: reach a safe point and complete. */
bool kc_op_is_canceled(const struct kc_op *op);

/* --- helpers for kinds --- */

/* The field FIELD of TYPE, or NULL. */
const struct kc_field *kc_resource_type_field(const struct kc_resource_type *t,
                                              const char *field);
/* "create", "update"... */
const char *kc_action_name(enum kc_action a);

#endif
