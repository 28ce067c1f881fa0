/* resources/gcp/list.h: list(op) for the GCP kinds (see list.c). */
#ifndef KC_RESOURCES_GCP_LIST_H
#define KC_RESOURCES_GCP_LIST_H

#include "reconcile/resource.h"

#include <stdbool.h>

/* Lists COLL ("disks": zonal, in providers.gcp.zone; "images": global) and
 * calls kc_op_found() for each object of this deployment: LABELLED kinds
 * by the kmsctl-deployment label (a list filter), firewall rules by the
 * mark in their description. A start function (STYLE.md §2.6). */
int gcp_list_start(struct kc_op *op, bool zonal, const char *coll,
                   bool labelled);

#endif
