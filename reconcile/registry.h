/* reconcile/registry.h: which providers and kinds this kmsctl has.
 *
 * The built-in providers come from resources/providers.c (weak symbols, see
 * reconcile/resource.h section 2); tests add their own with
 * kc_registry_add().
 */
#ifndef KC_RECONCILE_REGISTRY_H
#define KC_RECONCILE_REGISTRY_H

#include "reconcile/kc.h"
#include "reconcile/resource.h"

struct kc_registry;

/* One entry of the built-in table (resources/providers.c). */
struct kc_registry_builtin {
    const char *name;                    /* "gcp" */
    const struct kc_provider_type *type; /* NULL: not built */
};

/* The built-in table, ended by { NULL, NULL }. Defined in
 * resources/providers.c. */
extern const struct kc_registry_builtin kc_registry_builtins[];

/* A registry with the built-in providers (caller frees). */
struct kc_registry *kc_registry_new(void);
/* An empty registry (tests). */
struct kc_registry *kc_registry_new_empty(void);
void kc_registry_free(struct kc_registry *reg);
/* Adds TYPE (borrowed; must outlive REG), replacing one of the same name. */
void kc_registry_add(struct kc_registry *reg,
                     const struct kc_provider_type *type);
/* The provider NAME: 0, KC_ENOENT "provider 'gcp' is not built" (known
 * name, not linked) or "unknown provider 'x'". */
int kc_registry_provider(const struct kc_registry *reg, const char *name,
                         const struct kc_provider_type **out,
                         struct kc_err *err);
/* The kind KIND ("gcp.instance") and its provider. KC_ENOENT as above, or
 * "provider 'gcp' has no kind 'gcp.foo'". */
int kc_registry_kind(const struct kc_registry *reg, const char *kind,
                     const struct kc_resource_type **type,
                     const struct kc_provider_type **prov, struct kc_err *err);

#endif
