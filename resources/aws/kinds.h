/* resources/aws/kinds.h: what the aws.* kinds share: the provider context,
 * ownership tags and "jobs" (one asynchronous op: EC2 calls and timers
 * chained through continuations, completed exactly once).
 */
#ifndef KC_RESOURCES_AWS_KINDS_H
#define KC_RESOURCES_AWS_KINDS_H

#include "reconcile/resource.h"
#include "reconcile/value.h"
#include "resources/aws/ec2.h"

#define AWS_TAG_DEPLOYMENT "kmsctl-deployment"
#define AWS_TAG_ADDRESS    "kmsctl-address"

struct aws_job;

struct aws_provider {
    struct aws_ec2 *ec2;
    char deployment[128];
    struct aws_job *live; /* jobs in flight (to find one from its op) */
};

extern const struct kc_resource_type kc_aws_key_pair;
extern const struct kc_resource_type kc_aws_security_group;
extern const struct kc_resource_type kc_aws_instance;
extern const struct kc_resource_type kc_aws_ami;

struct aws_job;
typedef void (*aws_job_fn)(struct aws_job *j, int status);

/* One op's work. Allocated by aws_job_new, freed after aws_job_finish. */
struct aws_job {
    struct kc_op *op;
    struct aws_provider *prov;
    struct aws_ec2_call call; /* the current EC2 call */
    aws_job_fn next;
    aws_job_fn then; /* kind-specific: what follows a wait */
    uv_timer_t timer;
    bool timer_open;
    int status;
    uint64_t started_ms;
    int step;                /* kind-specific */
    char id[64];             /* kind-specific: the provider id at hand */
    char aux[128];           /* kind-specific */
    struct kc_value *values; /* kind-specific map */
    struct aws_job *next_live;
};

struct aws_job *aws_job_new(struct kc_op *op);
/* Sends J's call (filled by the caller after aws_ec2_call_init(&j->call,
 * ...)); NEXT runs with the status later. A synchronous failure also ends
 * up in NEXT (from the loop). */
void aws_job_send(struct aws_job *j, unsigned flags, aws_job_fn next);
/* Writes the state (intents, generated values) now; NEXT runs with the
 * status once it is on disk. */
void aws_job_persist(struct aws_job *j, aws_job_fn next);
/* Runs NEXT(j, 0) after MS milliseconds. */
void aws_job_sleep(struct aws_job *j, uint64_t ms, aws_job_fn next);
/* Completes the op with STATUS (kc_op_err already set when < 0) and frees J
 * once its timer is closed. */
void aws_job_finish(struct aws_job *j, int status);
/* Sets kc_op_err from FMT and finishes with CODE (< 0). */
void aws_job_fail(struct aws_job *j, int code, const char *fmt, ...)
    KC_PRINTF(3, 4);
/* Copies the call's error into the op and finishes with it. */
void aws_job_fail_call(struct aws_job *j, int status);
/* Milliseconds since the job started. */
uint64_t aws_job_elapsed(const struct aws_job *j);

/* The tags of an EC2 item (<tagSet><item><key/><value/>...) as a map. */
struct kc_value *aws_tags_from_xml(struct _xmlNode *item);
/* The value of tag KEY on ITEM, or NULL. */
const char *aws_tag(struct _xmlNode *item, const char *key);
/* Adds TagSpecification.N for RESOURCE_TYPE with TAGS (a map of strings). */
void aws_query_tag_spec(struct aws_query *q, int n, const char *resource_type,
                        const struct kc_value *tags);
/* The keys of OBSERVED (a tag map) restricted to those of DESIRED. */
struct kc_value *aws_tags_managed(const struct kc_value *observed,
                                  const struct kc_value *desired);
/* True when ITEM carries our deployment tag (or STATE_ID equals ID). */
bool aws_owned(struct aws_job *j, struct _xmlNode *item);
/* list(op) of aws.instance, aws.security_group and aws.key_pair: every
 * object tagged kmsctl-deployment=<deployment> (instances: not terminated),
 * found by the name after the kind in its kmsctl-address tag; follows
 * NextToken. */
int aws_list(struct kc_op *op);
/* A desired string attribute (revealed: AWS ids are not secrets), or NULL. */
const char *aws_desired_str(struct kc_op *op, const char *field);

#endif
