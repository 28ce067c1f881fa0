/* reconcile/lock.h: the state lock, "<state>.lock" beside the state file.
 *
 * Exclusion is flock(LOCK_EX) on the lock file; the kernel releases it when
 * its holder dies, so flock alone cannot tell a crash from a clean exit. The
 * file's contents are therefore the holder's record, JSON
 * {"pid", "host", "started_at", "command"}: written after flock succeeds,
 * emptied (truncated) before the lock is released. A process that gets the
 * flock and finds a record left behind knows that its holder ended without
 * releasing it (killed, crashed, power lost) — perhaps in the middle of an
 * apply — and refuses with KC_ELOCKED as a stale lock until an operator runs
 * `kmsctl state unlock` (kc_lock_break), or until an explicit cron-safe act
 * (`state unlock --if-stale`, `--unlock-stale`: kc_lock_break_stale,
 * kc_lock_acquire_stale) proves the holder gone: a record of this host whose
 * pid no longer runs (or is a zombie, or was reused by a process started
 * after the record). A record of another host, an unreadable one, or one
 * whose process still runs is never taken that way. The lock file is never
 * unlinked, so every process locks the same inode.
 *
 * The descriptor is O_CLOEXEC; a child made by fork() without exec shares
 * the flock of its parent (flock belongs to the open file description).
 */
#ifndef KC_RECONCILE_LOCK_H
#define KC_RECONCILE_LOCK_H

#include "reconcile/kc.h"

#define KC_LOCK_MAX_BYTES 4096

struct kc_lock;

/* Takes the lock of the state at STATE_PATH (its folder is created with
 * 0700 where missing), recording COMMAND ("kmsctl apply") as the holder's.
 * TIMEOUT_SECONDS 0 fails at once while another process holds it; a positive
 * timeout waits for it, polling in small steps with nanosleep: for the CLI
 * before the loop starts, never on the loop. On success *OUT is the caller's
 * (kc_lock_release). KC_ELOCKED, naming the holder: "state 'S' is locked by
 * pid 123 on host h since T (kmsctl apply)"; or naming a stale record: "state
 * 'S' has a stale lock left by pid 123 (dead) on host h since T (kmsctl
 * apply): run 'kmsctl state unlock' after checking no apply is running". */
int kc_lock_acquire(const char *state_path, double timeout_seconds,
                    const char *command, struct kc_lock **out,
                    struct kc_err *err);
/* kc_lock_acquire, except that a stale record whose holder is provably gone
 * (see above) is replaced instead of refused; *TAKEN (may be NULL) then gets
 * its description ("pid 123 on host h since T (kmsctl apply), dead"), else
 * NULL; caller frees. A stale record that cannot be proved gone: KC_ELOCKED
 * naming it and why ("another host", "still running", "unreadable"). */
int kc_lock_acquire_stale(const char *state_path, double timeout_seconds,
                          const char *command, char **taken,
                          struct kc_lock **out, struct kc_err *err);
/* Empties the record and releases the lock; frees LOCK. NULL-safe. */
void kc_lock_release(struct kc_lock *lock);
/* For `kmsctl state unlock`: clears a stale record. Refuses with KC_ELOCKED
 * (naming the holder) while a live process holds the lock. *CLEARED (may be
 * NULL) gets a description of the record removed ("pid 123 on host h since T
 * (kmsctl apply)"), or NULL when there was none; caller frees. */
int kc_lock_break(const char *state_path, char **cleared, struct kc_err *err);
/* For `kmsctl state unlock --if-stale`: kc_lock_break, but only a record
 * whose holder is provably gone is cleared; any other record: KC_ELOCKED
 * naming it and why. No record: 0, *CLEARED NULL. */
int kc_lock_break_stale(const char *state_path, char **cleared,
                        struct kc_err *err);

#endif
