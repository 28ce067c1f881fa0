/* resources/gcp/gcp_kinds.h: the GCP provider's resource kinds, listed in
 * resources/gcp/provider.c. */
#ifndef KC_RESOURCES_GCP_GCP_KINDS_H
#define KC_RESOURCES_GCP_GCP_KINDS_H

#include "reconcile/resource.h"

extern const struct kc_resource_type kc_gcp_firewall;
extern const struct kc_resource_type kc_gcp_image;
extern const struct kc_resource_type kc_gcp_disk;
extern const struct kc_resource_type kc_gcp_instance;
extern const struct kc_resource_type kc_gcp_os_image;

#endif
