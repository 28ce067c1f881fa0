/* resources/gcp/provider.c: the "gcp" provider: its kinds and its context
 * (configuration from providers.gcp, credentials, token cache). */
#include "reconcile/resource.h"

#include "resources/gcp/gcp.h"
#include "resources/gcp/gcp_kinds.h"

static int gcp_provider_init(struct kc_provider *p, struct kc_err *err)
{
    struct gcp_config cfg;
    struct gcp *g = NULL;
    int ret;

    /* A relative credentials path is the manifest's folder's. */
    ret = gcp_config_parse(p->config, p->manifest_dir, &cfg, err);
    if (ret == 0)
        ret = gcp_new(p->loop, p->http, p->log, &cfg, p->deployment, NULL, &g,
                      err);
    if (ret < 0)
        return ret;
    p->data = g;
    return 0;
}

static void gcp_provider_cleanup(struct kc_provider *p)
{
    gcp_free(p->data);
    p->data = NULL;
}

static const struct kc_resource_type *const gcp_kinds[] = {
    &kc_gcp_firewall, &kc_gcp_image,    &kc_gcp_disk,
    &kc_gcp_instance, &kc_gcp_os_image, NULL,
};

const struct kc_provider_type kc_provider_gcp = {
    .name = "gcp",
    .kinds = gcp_kinds,
    .concurrency = 8,
    .init = gcp_provider_init,
    .cleanup = gcp_provider_cleanup,
};
