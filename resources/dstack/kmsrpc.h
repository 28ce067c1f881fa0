/* resources/dstack/kmsrpc.h: the one KMS RPC kmsctl calls itself,
 * GetAppEnvEncryptPubKey (reference/dstack.md §1.1 pRPC transport, §1.2),
 * on the shared HTTP client (reconcile/http.h), for .encrypted-env.
 *
 *   POST {kms_url}/prpc/KMS.GetAppEnvEncryptPubKey?json  {"app_id": "<hex>"}
 *   200 {"public_key", "signature", "timestamp", "signature_v1"}
 *   400 {"error": "<msg>"}
 *
 * The answer is verified (dstack_env_pubkey_from_json) against the pinned
 * KMS root k256 key before the public key is handed back. TLS verification
 * is always on; CA_FILE (optional) replaces the system store. Errors name
 * the KMS by its URL without userinfo, query or fragment.
 */
#ifndef KC_RESOURCES_DSTACK_KMSRPC_H
#define KC_RESOURCES_DSTACK_KMSRPC_H

#include "reconcile/http.h"
#include "reconcile/kc.h"

#define DSTACK_KMSRPC_BODY_MAX   (16u << 10) /* answers are ~400 bytes */
#define DSTACK_KMSRPC_TIMEOUT_MS 30000

struct dstack_kms_env_key;
typedef void (*dstack_kms_env_key_cb)(struct dstack_kms_env_key *c, int status);

/* One call, embedded in the caller's state. In the callback: STATUS 0 and
 * PUBKEY filled (verified), or < 0 and ERR says why (KC_ECRYPTO: not
 * signed by the pinned key; KC_EREMOTE: the KMS answered an error;
 * KC_EPARSE: a malformed answer; transport errors as kc_http). */
struct dstack_kms_env_key {
    void *data; /* the caller's */
    unsigned char pubkey[32];
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
