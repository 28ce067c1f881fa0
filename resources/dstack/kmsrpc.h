/* resources/dstack/kmsrpc.h: the one KMS RPC kmsctl calls itself,
 * GetAppEnvEncryptPubKey (reference/dstack.md §1.1 pRPC transport, §1.2),
 * on the shared HTTP client (reconcile/http.h), for .encrypted-env.
 *
 *   POST {kms_url}/prpc/KMS.GetAppEnvEncryptPubKey?json  {"app_id": "<hex>"}
 *   200 {"public_key", "signature", "timestamp", "signature_v1"}
 *   400 {"error": "<msg>"}
 *
 * The answer is verified (dstack_env_pubkey_from_json) against the pinned
 * KMS root k256 key before the public key is handed back, and must be
 * fresh: signature_v1 (which covers "timestamp") is required and must
 * verify, and the timestamp must be at most DSTACK_KMSRPC_MAX_SKEW_S
 * seconds before or after local time (reference/dstack.md §1.2: against a
 * replayed answer, e.g. the key from before a rotation). TLS verification is
 * always on; CA_FILE (optional) replaces the system store. Errors name the KMS
 * by its URL without userinfo, query or fragment.
 */
#ifndef KC_RESOURCES_DSTACK_KMSRPC_H
#define KC_RESOURCES_DSTACK_KMSRPC_H

#include "reconcile/http.h"
#include "reconcile/kc.h"

#define DSTACK_KMSRPC_BODY_MAX   (16u << 10) /* answers are ~400 bytes */
#define DSTACK_KMSRPC_TIMEOUT_MS 30000
/* How far the signed timestamp may be from local time, either way. The KMS
 * signs when it answers, so an honest answer is seconds old; the bound is
 * for clock error between the KMS's VM and the host running kmsctl (NTP
 * keeps it under a second; a VM without it drifts by minutes), twice the
 * 5 minutes Kerberos allows, and far below the days between key
 * rotations, the answers a replay would bring back. */
#define DSTACK_KMSRPC_MAX_SKEW_S (10 * 60)

struct dstack_kms_env_key;
typedef void (*dstack_kms_env_key_cb)(struct dstack_kms_env_key *c, int status);

/* One call, embedded in the caller's state. In the callback: STATUS 0 and
 * PUBKEY filled (verified), or < 0 and ERR says why (KC_ECRYPTO: not
 * signed by the pinned key, no signature_v1, or a timestamp too far from
 * local time; KC_EREMOTE: the KMS answered an error;
 * KC_EPARSE: a malformed answer; transport errors as kc_http). */
struct dstack_kms_env_key {
    void *data; /* the caller's */
    unsigned char pubkey[32];
    int64_t timestamp; /* signed by the KMS (Unix seconds) */
    struct kc_err err;
    /* private */
    struct kc_http_req req;
    unsigned char app_id[20], pinned[33];
    char *shown;
    dstack_kms_env_key_cb cb;
};

/* Starts the call (C zeroed by the caller, ->data may be set). APP_ID_HEX
 * is 40 hex digits (0x optional), PINNED the compressed k256 key. Contract
 * as kc_http_send: < 0 nothing started; 0 the callback runs once, later.
 * Release C after the callback. */
int dstack_kms_env_key_fetch(struct kc_http *http, struct dstack_kms_env_key *c,
                             const char *kms_url, const char *app_id_hex,
                             const unsigned char pinned[33],
                             const char *ca_file, dstack_kms_env_key_cb cb,
                             struct kc_err *err);
void dstack_kms_env_key_release(struct dstack_kms_env_key *c);

/* URL without userinfo, query and fragment (for messages). New string. */
char *dstack_url_shown(const char *url);

#endif
