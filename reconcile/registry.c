/* reconcile/registry.c: providers and kinds by name. */
#include "reconcile/registry.h"

struct kc_registry {
    const struct kc_provider_type **types;
    size_t n, cap;
};

struct kc_registry *kc_registry_new_empty(void)
{
    return kc_xcalloc(1, sizeof(struct kc_registry));
}

struct kc_registry *kc_registry_new(void)
{
    struct kc_registry *reg = kc_registry_new_empty();

    for (size_t i = 0; kc_registry_builtins[i].name; i++)
        if (kc_registry_builtins[i].type)
            kc_registry_add(reg, kc_registry_builtins[i].type);
    return reg;
}

void kc_registry_free(struct kc_registry *reg)
{
    if (!reg)
        return;
    free(reg->types);
    free(reg);
}

void kc_registry_add(struct kc_registry *reg,
                     const struct kc_provider_type *type)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (strcmp(reg->types[i]->name, type->name) == 0) {
            reg->types[i] = type;
            return;
        }
    }
    kc_xgrow(&reg->types, &reg->cap, reg->n + 1, sizeof(*reg->types));
    reg->types[reg->n++] = type;
}

static bool is_builtin_name(const char *name)
{
    for (size_t i = 0; kc_registry_builtins[i].name; i++)
        if (strcmp(kc_registry_builtins[i].name, name) == 0)
            return true;
    return false;
}

int kc_registry_provider(const struct kc_registry *reg, const char *name,
                         const struct kc_provider_type **out,
                         struct kc_err *err)
{
    *out = NULL;
    for (size_t i = 0; i < reg->n; i++) {
        if (strcmp(reg->types[i]->name, name) == 0) {
            *out = reg->types[i];
            return 0;
        }
    }
    if (is_builtin_name(name))
        return kc_err_set(err, KC_ENOENT, "provider '%s' is not built", name);
    return kc_err_set(err, KC_ENOENT, "unknown provider '%s'", name);
}

int kc_registry_kind(const struct kc_registry *reg, const char *kind,
                     const struct kc_resource_type **type,
                     const struct kc_provider_type **prov, struct kc_err *err)
{
    const char *dot = strchr(kind, '.');
    const struct kc_provider_type *p;
    char name[64];
    int ret;

    *type = NULL;
    if (prov)
        *prov = NULL;
    if (!dot || dot == kind || (size_t)(dot - kind) >= sizeof(name))
        return kc_err_set(err, KC_EINVAL,
                          "kind '%s' is not '<provider>.<type>'", kind);
    memcpy(name, kind, (size_t)(dot - kind));
    name[dot - kind] = '\0';
    ret = kc_registry_provider(reg, name, &p, err);
    if (ret < 0)
        return ret;
    for (size_t i = 0; p->kinds && p->kinds[i]; i++) {
        if (strcmp(p->kinds[i]->kind, kind) == 0) {
            *type = p->kinds[i];
            if (prov)
                *prov = p;
            return 0;
        }
    }
    return kc_err_set(err, KC_ENOENT, "provider '%s' has no kind '%s'", name,
                      kind);
}
