/* resources/providers.c: the built-in providers, as weak symbols so that a
 * provider whose folder is not built is NULL here ("provider 'gcp' is not
 * built") and a new provider needs one line below, nothing else in the
 * engine. See reconcile/resource.h, section 2. */
#include "reconcile/registry.h"

#define KC_WEAK __attribute__((weak))

extern const struct kc_provider_type kc_provider_chain KC_WEAK;
extern const struct kc_provider_type kc_provider_gcp KC_WEAK;
extern const struct kc_provider_type kc_provider_aws KC_WEAK;
extern const struct kc_provider_type kc_provider_dstack KC_WEAK;
/* Linked only into test executables (tests/unit/helpers/fake_provider.c). */
extern const struct kc_provider_type kc_provider_fake KC_WEAK;

const struct kc_registry_builtin kc_registry_builtins[] = {
    { "chain", &kc_provider_chain }, { "gcp", &kc_provider_gcp },
    { "aws", &kc_provider_aws },     { "dstack", &kc_provider_dstack },
    { "fake", &kc_provider_fake },   { NULL, NULL },
};
