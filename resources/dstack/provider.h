/* resources/dstack/provider.h: the "dstack" provider's context (private to
 * resources/dstack): the ops waiting for a state write. */
#ifndef KC_RESOURCES_DSTACK_PROVIDER_H
#define KC_RESOURCES_DSTACK_PROVIDER_H

#include "reconcile/kc.h"

/* Embedded in a kind's job while kc_op_persist() runs (its callback gets
 * only the op). */
struct dstack_job {
    const void *op;
    struct dstack_job *next;
};

struct dstack_provider {
    struct dstack_job *jobs;
};

/* Registers J for OP until dstack_job_take(); one job per op at a time. */
void dstack_job_put(struct dstack_provider *p, struct dstack_job *j,
                    const void *op);
/* The job of OP, unregistered; NULL if none. */
struct dstack_job *dstack_job_take(struct dstack_provider *p, const void *op);

#endif
