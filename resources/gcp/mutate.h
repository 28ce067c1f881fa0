/* resources/gcp/mutate.h: one Compute mutation the way every GCP kind does
 * it: a requestId recorded in the state's write-ahead intent and persisted
 * before the call, the call, then the operation polled to DONE.
 *
 * requestId: "An optional request ID to identify requests. Specify a unique
 * request ID so that if you must retry your request, the server will know to
 * ignore the request if it has already been completed" (Compute Engine API
 * v1, e.g. instances.insert query parameters, https://cloud.google.com/
 * compute/docs/reference/rest/v1/instances/insert). So the UUID is written
 * to the state (kc_op_intent_put + kc_op_persist) before the request leaves;
 * a run that crashed or timed out in between finds it in kc_op_intent() and
 * sends the same id again (gcp_mut_start does this when the intent's
 * "what" and URL match), and Compute answers the first call's operation
 * instead of acting twice. The intent is cleared once the answer is known.
 * Marked safe, such a POST is also retried by the HTTP module on 5xx.
 */
#ifndef KC_RESOURCES_GCP_MUTATE_H
#define KC_RESOURCES_GCP_MUTATE_H

#include "reconcile/resource.h"
#include "resources/gcp/gcp.h"

struct gcp_mut;
typedef void (*gcp_mut_cb)(struct gcp_mut *m, int status);

struct gcp_mut {
    /* public */
    void *data;
    /* read-only, valid in the callback */
    long code;                  /* HTTP status of the mutation call */
    char reason[64];            /* Google's reason on an error answer */
    struct json_object *answer; /* the call's answer (JSON), or NULL */
    struct kc_err err;
    /* private */
    struct gcp *g;
    struct kc_op *op;
    gcp_mut_cb cb;
    enum kc_http_method method;
    char *url, *what;
    struct json_object *body;
    struct gcp_call call;
    struct gcp_wait wait;
    bool waiting;
    struct gcp_job job;
};

/* Starts METHOD URL (query string allowed) with BODY (taken; NULL: none) for
 * OP. WHAT names the mutation in the intent and errors ("insert", "delete",
 * "setLabels"). CB(m, 0): the operation is DONE without error. CB(m, < 0):
 * the call was refused (m->code, m->reason, m->err: e.g. 409
 * alreadyExists, 404 notFound) or the operation failed (m->code 200,
 * m->err names it). M must be zeroed or released (gcp_mut_release). */
int gcp_mut_start(struct gcp *g, struct gcp_mut *m, struct kc_op *op,
                  enum kc_http_method method, const char *url, const char *what,
                  struct json_object *body, gcp_mut_cb cb, struct kc_err *err);
void gcp_mut_release(struct gcp_mut *m);

/* What a kind does once its mutation M of OP ended with STATUS: 1, GET the
 * object (a 409 on create also sets *ADOPTING: the name exists, the object
 * is ours only if labelled so); 0, done (deleted, or already gone: 404 on
 * delete); < 0, failed (OP's error is M's). */
int gcp_mut_next(struct gcp_mut *m, int status, struct kc_op *op,
                 bool *adopting);

/* A kind's observed attributes from its object O as Compute answers it;
 * CHECK_OWNER: refuse an object without this deployment's label. */
typedef int (*gcp_observed_fn)(struct kc_op *op, struct gcp *g,
                               struct json_object *o, bool check_owner);
/* The end of C, the GET of OP's object (after a mutation, or to observe):
 * 404 while observing is absence (0), after a mutation KC_ENOENT "WHAT
 * 'NAME' missing after its operation"; an answer is checked ("get WHAT")
 * and handed to OBSERVED, the owner checked when ADOPTING or when observing
 * an object the state has no id for. */
int gcp_get_done(struct gcp *g, struct kc_op *op, const struct gcp_call *c,
                 int status, const char *what, bool adopting,
                 gcp_observed_fn observed);

#endif
