/* resources/dstack/provider.c: the "dstack" provider and its kinds. It has
 * no configuration (providers.dstack is not a section) and no context. */
#include "reconcile/resource.h"

#include "resources/dstack/dstack_kinds.h"

static const struct kc_resource_type *const dstack_kinds[] = {
    &kc_dstack_encrypted_env,
    NULL,
};

const struct kc_provider_type kc_provider_dstack = {
    .name = "dstack",
    .kinds = dstack_kinds,
};
