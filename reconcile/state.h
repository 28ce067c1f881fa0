/* reconcile/state.h: the state file (DESIGN.md §5), what kmsctl last applied.
 *
 * A state is JSON (schemas/state.schema.json) with:
 *   format_version  KC_STATE_FORMAT; a newer one is refused
 *   lineage         a UUID v4 made when the state is created, never changed
 *   serial          +1 on every write
 *   deployment      the manifest's `name:`
 *   salt            random hex, for salted digests of sensitive values
 *   resources       ADDRESS -> {kind, provider_id, attrs, inputs_digest,
 *                   outputs, dependencies, updated_at}
 *   intents         ADDRESS -> {op, created_at, data}: write-ahead records of
 *                   non-idempotent creates (nonce and predicted address,
 *                   ClientToken...), put before the call, cleared after
 *   generated       KEY -> value generated once and kept
 *
 * The state never holds a secret. kc_state_put() replaces every SENSITIVE
 * value inside attrs and outputs by its salted digest, the string
 * "(sensitive:sha256:<hex>)" that kc_value_to_json(v, kc_state_salt(st))
 * gives, so a stored value is never sensitive and a desired sensitive value is
 * compared with the stored one by digesting it the same way. Intents and
 * generated values must be given back as they were, so a sensitive value
 * there is refused (KC_EINVAL), as is an UNKNOWN value anywhere.
 *
 * Files: the state is written atomically (temp file in the same folder,
 * fsync, rename, fsync of the folder) with mode 0600, its folder created with
 * 0700 where missing; before the rename the version on disk becomes
 * "<state>.backup" through a hard link (a copy where links are not
 * supported), itself put in place by rename, so the backup is always a
 * complete file. Temp files left by writes that were killed are removed by
 * the next write (writers hold the lock). A file that fails to parse or to
 * validate is never overwritten: loading it fails, naming the file and the
 * backup.
 *
 * Writes block (fsync): kc_state_write() is for the CLI before or after the
 * loop; on the loop use kc_state_write_async(). Serialise access to one file
 * with the lock (reconcile/lock.h). A struct kc_state is not thread-safe; the
 * async write only hands a serialised copy to the worker thread.
 *
 * Errors: KC_ESTATE for a refused state (format, lineage, deployment, parse or
 * validation), KC_EIO and friends for the file system, KC_EINVAL for a value
 * the state cannot hold.
 */
#ifndef KC_RECONCILE_STATE_H
#define KC_RECONCILE_STATE_H

#include "reconcile/kc.h"
#include "reconcile/value.h"

#include <uv.h>

#define KC_STATE_FORMAT    1
#define KC_STATE_MAX_BYTES (64u << 20)
/* Longest address, intent op or generated key accepted. */
#define KC_STATE_MAX_NAME 512

struct kc_state;

/* One resource record. As an argument of kc_state_put() every member is
 * borrowed for the call; as returned by kc_state_get() it is borrowed from the
 * state until that address is put or removed again, or the state is freed.
 * NULL pointers mean "none"; attrs and outputs are maps when set. */
struct kc_state_resource {
    const char *kind;               /* "gcp.firewall"; required */
    const char *provider_id;        /* the provider's id or self link */
    const struct kc_value *attrs;   /* non-secret attributes last applied */
    const char *inputs_digest;      /* digest of the inputs last applied */
    const struct kc_value *outputs; /* values other resources may use */
    const char *const *deps;        /* addresses it depends on */
    size_t ndeps;
    const char *updated_at; /* RFC 3339 UTC; put() sets "now" when NULL */
};

/* A write-ahead intent, borrowed from the state as above. */
struct kc_state_intent {
    const char *op;              /* "create", "deploy"... */
    const char *created_at;      /* RFC 3339 UTC */
    const struct kc_value *data; /* a map: nonce, address, ClientToken... */
};

/* The default state path of deployment NAME whose manifest is at
 * MANIFEST_PATH: ".kmsctl/<NAME>.state.json" in the manifest's folder, into
 * *OUT (caller frees). KC_EINVAL when NAME cannot be a file name (empty,
 * "." or "..", a '/', a control character, over 200 bytes). */
int kc_state_default_path(const char *manifest_path, const char *name,
                          char **out, struct kc_err *err);

/* Loads the state at PATH into *OUT (caller frees with kc_state_free). A
 * missing file gives a new empty state: fresh lineage and salt, serial 0, no
 * deployment, not written until kc_state_write(). Refused with KC_ESTATE: a
 * newer format_version ("state 'X' has format 2, this kmsctl reads up to 1:
 * upgrade kmsctl"), a file that does not parse or validate (the message names
 * the file and the backup to restore from; the file is left as it is). */
int kc_state_load(const char *path, struct kc_state **out, struct kc_err *err);
/* Frees ST; NULL-safe. An async write must not be in flight (KC_BUG). */
void kc_state_free(struct kc_state *st);

/* KC_ESTATE unless the lineage is EXPECTED (NULL: anything goes). */
int kc_state_check_lineage(const struct kc_state *st, const char *expected,
                           struct kc_err *err);
/* Binds ST to deployment NAME: a state without one (new) takes NAME, one with
 * another name is refused with KC_ESTATE. */
int kc_state_check_deployment(struct kc_state *st, const char *name,
                              struct kc_err *err);

/* Borrowed, valid while ST lives. deployment is NULL for a new state. */
const char *kc_state_path(const struct kc_state *st);
const char *kc_state_lineage(const struct kc_state *st);
const char *kc_state_salt(const struct kc_state *st);
const char *kc_state_deployment(const struct kc_state *st);
/* The serial of the version last loaded or written (or being written). */
int64_t kc_state_serial(const struct kc_state *st);
/* True if the file existed when loaded or has been written since. */
bool kc_state_exists(const struct kc_state *st);

/* Puts the record of ADDR, replacing any; deep copies REC, sensitive values
 * digested (see above). KC_EINVAL for an empty address or kind, attrs or
 * outputs that are not maps or hold an UNKNOWN value. */
int kc_state_put(struct kc_state *st, const char *addr,
                 const struct kc_state_resource *rec, struct kc_err *err);
/* The record of ADDR or NULL. Borrowed (see struct kc_state_resource). */
const struct kc_state_resource *kc_state_get(const struct kc_state *st,
                                             const char *addr);
/* Removes the record of ADDR; false if there was none. */
bool kc_state_remove(struct kc_state *st, const char *addr);
/* Number of records, and the I-th address in sorted (strcmp) order. The
 * address is borrowed until the records change. */
size_t kc_state_count(const struct kc_state *st);
const char *kc_state_address(const struct kc_state *st, size_t i);

/* Records a write-ahead intent for ADDR (replacing any), created_at now.
 * DATA (a map or NULL) is deep copied; KC_EINVAL if it is sensitive or holds
 * an UNKNOWN value. Write the state before making the call it announces. */
int kc_state_intent_put(struct kc_state *st, const char *addr, const char *op,
                        const struct kc_value *data, struct kc_err *err);
/* The intent of ADDR or NULL; borrowed until it is put or cleared again. */
const struct kc_state_intent *kc_state_intent_get(const struct kc_state *st,
                                                  const char *addr);
/* Clears the intent of ADDR; false if there was none. */
bool kc_state_intent_clear(struct kc_state *st, const char *addr);
size_t kc_state_intent_count(const struct kc_state *st);
/* The I-th address with an intent, sorted; borrowed as above. */
const char *kc_state_intent_address(const struct kc_state *st, size_t i);

/* The generated value KEY ("kms_vms.dstack-kms.instance_id_seed") or NULL.
 * Borrowed until KEY is put again or the state is freed. */
const struct kc_value *kc_state_generated_get(const struct kc_state *st,
                                              const char *key);
/* Keeps a deep copy of VAL under KEY. KC_EINVAL if VAL is sensitive or holds
 * an UNKNOWN value. */
int kc_state_generated_put(struct kc_state *st, const char *key,
                           const struct kc_value *val, struct kc_err *err);

/* The state as JSON (one reference, caller puts), with serial SERIAL. */
struct json_object *kc_state_to_json(const struct kc_state *st, int64_t serial);
/* The JSON of ADDR's record as it is stored, or NULL. Caller puts. */
struct json_object *kc_state_resource_json(const struct kc_state *st,
                                           const char *addr);

/* Writes ST to its path with serial + 1, atomically, keeping the backup (see
 * above). Blocks: not for use on the loop. On failure the serial is
 * unchanged. KC_EAGAIN while an async write is in flight. */
int kc_state_write(struct kc_state *st, struct kc_err *err);

struct kc_state_write_req;
typedef void (*kc_state_write_cb)(struct kc_state_write_req *req, int status);

/* An asynchronous write, embedded in the caller's struct (zeroed or not). */
struct kc_state_write_req {
    void *data;        /* public: the caller's */
    int64_t serial;    /* read-only: the serial written, valid in the cb */
    struct kc_err err; /* read-only: set when status < 0 */
    /* private */
    struct kc_state *st;
    kc_state_write_cb cb;
    struct kc_state_write_req *next;
};

/* Writes ST from LOOP: serialises the current contents now, on the loop
 * thread (serial + 1 at once), and does the file work in uv_queue_work.
 * A request made while a write is in flight is coalesced: every request
 * made meanwhile is served by one follow-up write of the contents as they
 * are when the first write finishes. Hence a callback's status 0 means the
 * contents at the time of the request, or newer, are on disk.
 * Returns < 0: nothing started, ERR says why, CB is never called. 0: CB runs
 * exactly once, later, from the loop (never inside this call) with 0 or a
 * negative KC_E* (req->err says why); until then REQ is the state's and ST
 * must not be freed. There is no cancel: run the loop until CB. */
int kc_state_write_async(struct kc_state *st, uv_loop_t *loop,
                         struct kc_state_write_req *req, kc_state_write_cb cb,
                         struct kc_err *err);
/* True while an async write is in flight or queued. */
bool kc_state_is_writing(const struct kc_state *st);

#endif
