/* resources/dstack/provider.c: the "dstack" provider: its kinds and its
 * context. It has no configuration (providers.dstack is not a section). */
#include "resources/dstack/provider.h"

#include "resources/dstack/dstack_kinds.h"

void dstack_job_put(struct dstack_provider *p, struct dstack_job *j,
                    const void *op)
{
    j->op = op;
    j->next = p->jobs;
    p->jobs = j;
}

struct dstack_job *dstack_job_take(struct dstack_provider *p, const void *op)
{
    for (struct dstack_job **q = &p->jobs; *q; q = &(*q)->next)
        if ((*q)->op == op) {
            struct dstack_job *j = *q;

            *q = j->next;
            j->next = NULL;
            return j;
        }
    return NULL;
}

static int dstack_provider_init(struct kc_provider *p, struct kc_err *err)
{
    (void)err;
    p->data = kc_xcalloc(1, sizeof(struct dstack_provider));
    return 0;
}

static void dstack_provider_cleanup(struct kc_provider *p)
{
    free(p->data);
    p->data = NULL;
}

static const struct kc_resource_type *const dstack_kinds[] = {
    &kc_dstack_encrypted_env,
    NULL,
};

const struct kc_provider_type kc_provider_dstack = {
    .name = "dstack",
    .kinds = dstack_kinds,
    .init = dstack_provider_init,
    .cleanup = dstack_provider_cleanup,
};
