/* resources/aws/ec2.h: the EC2 Query API client on the HTTP runtime.
 *
 * One struct aws_ec2 per provider: endpoint, region and credentials (the
 * static part of the chain is resolved by aws_ec2_new; instance-profile
 * credentials are fetched from IMDSv2 on the loop when needed and refreshed
 * AWS_EC2_REFRESH_MARGIN seconds before they expire).
 *
 * A call is a struct aws_ec2_call embedded in the caller's state:
 *     aws_ec2_call_init(&call, "DescribeInstances");
 *     aws_query_addf(&call.q, id, "InstanceId.%d", 1);
 *     ret = aws_ec2_send(ec2, &call, AWS_EC2_EVENTUAL, on_done, &err);
 * Contract of aws_ec2_send(): < 0: nothing started, ERR says why, the
 * callback never runs. 0: the callback runs exactly once, later, from the
 * loop. In the callback, status 0 means a 2xx response whose XML root is
 * <ActionResponse> in the EC2 namespace (call->root); KC_EREMOTE means EC2
 * answered with an error (call->error has code, message and request id,
 * call->err a one-line message naming them); other codes are transport
 * errors (call->err). Then aws_ec2_call_release().
 *
 * Every call is signed again before each attempt (fresh X-Amz-Date) and is
 * marked safe to retry: Describe* are reads, RunInstances carries a
 * ClientToken, and a create whose response was lost meets its own object on
 * the retry (*.Duplicate) — the resources adopt it after checking tags.
 * Retried: RequestLimitExceeded, Unavailable, InternalError,
 * ServiceUnavailable (and 5xx/429/transport errors) with backoff; with
 * AWS_EC2_EVENTUAL also *.NotFound for a bounded time, for reads right after
 * a create (EC2's eventual consistency).
 */
#ifndef KC_RESOURCES_AWS_EC2_H
#define KC_RESOURCES_AWS_EC2_H

#include "reconcile/http.h"
#include "reconcile/kc.h"
#include "resources/aws/aws.h"

#define AWS_EC2_REFRESH_MARGIN 300    /* seconds before expiry */
#define AWS_EC2_EVENTUAL_MS    30000  /* bound on NotFound retries */
#define AWS_EC2_DEPENDENCY_MS  300000 /* bound on DependencyViolation */

struct aws_ec2;

struct aws_ec2_config {
    struct kc_http *http; /* required; borrowed */
    struct kc_log *log;   /* optional; borrowed; learns the secrets */
    const char *endpoint; /* providers.aws.endpoint; NULL: regional */
    const char *profile;  /* providers.aws.profile */
    const char *region;   /* providers.aws.region */
    const char *credentials_file, *config_file, *imds_endpoint;
    char **env; /* NULL: environ */
};

/* Resolves the credential chain's static part and the region (blocking file
 * reads: call before the loop runs). No region is an error; no static
 * credentials is not (IMDS is tried on first use) unless IMDS is disabled. */
int aws_ec2_new(const struct aws_ec2_config *cfg, struct aws_ec2 **out,
                struct kc_err *err);
/* NULL-safe. Calls must have completed. */
void aws_ec2_free(struct aws_ec2 *ec2);
const char *aws_ec2_region(const struct aws_ec2 *ec2);
const char *aws_ec2_endpoint(const struct aws_ec2 *ec2);
/* Where the credentials in use came from ("" before the first IMDS fetch). */
const char *aws_ec2_creds_source(const struct aws_ec2 *ec2);
/* Number of IMDS credential fetches so far (for tests). */
unsigned aws_ec2_imds_fetches(const struct aws_ec2 *ec2);

enum aws_ec2_flags {
    AWS_EC2_EVENTUAL = 1 << 0, /* retry *.NotFound up to AWS_EC2_EVENTUAL_MS */
    /* retry DependencyViolation up to AWS_EC2_DEPENDENCY_MS (a security
     * group still held by a terminating instance's network interface) */
    AWS_EC2_DEPENDENCY = 1 << 1,
    /* the answer holds a secret (CreateKeyPair's keyMaterial): --debug
     * traces only the sizes of the bodies, and the body is wiped on release */
    AWS_EC2_SECRET_ANSWER = 1 << 2,
};

struct aws_ec2_call;
typedef void (*aws_ec2_cb)(struct aws_ec2_call *call, int status);

struct aws_ec2_call {
    /* public */
    void *data;
    struct aws_query q; /* the parameters (Action, Version already in) */
    /* read-only: valid in the callback */
    struct _xmlDoc *doc;
    struct _xmlNode *root;
    struct aws_error error;
    struct kc_err err;
    /* private */
    struct aws_ec2 *ec2;
    struct kc_http_req http;
    aws_ec2_cb cb;
    unsigned flags;
    char action[64];
    struct aws_ec2_call *next; /* waiting for credentials */
};

void aws_ec2_call_init(struct aws_ec2_call *call, const char *action);
/* Frees the parameters, the response and the request. NULL-safe. */
void aws_ec2_call_release(struct aws_ec2_call *call);
int aws_ec2_send(struct aws_ec2 *ec2, struct aws_ec2_call *call, unsigned flags,
                 aws_ec2_cb cb, struct kc_err *err);

/* True when CODE is one EC2 answers under load (retried with backoff). */
bool aws_ec2_code_is_throttle(const char *code);

#endif
