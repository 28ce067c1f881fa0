/* reconcile/check.h: everything that makes a manifest valid, in one call:
 * the schema (schemas/manifest.schema.json), the ${...} interpolations
 * (syntax and references) and the semantic rules the schema cannot
 * express. Every verb that reads a manifest calls kc_manifest_check()
 * before anything else.
 *
 * Semantic rules (each error at the offending node, with its path):
 * - references: a Nitro host's `app` must be in contracts.apps; a KMS VM's
 *   bootstrap.onboard_from must name another KMS VM, without cycles;
 * - sections need their provider: kms_vms need providers.gcp, contracts
 *   need providers.chain, a KMS VM needs a KMS contract (a contracts
 *   section or compose.env.KMS_CONTRACT_ADDR);
 * - firewall: one entry per port and protocol; the debug ports (auth-api,
 *   helios: ports.auth_api, ports.helios, default 18000/18545) must name
 *   their source_ranges and must not be open to the world; two of a VM's
 *   ports must differ;
 * - secrets: a value the schema marks writeOnly (the chain private_key,
 *   the keystore password, user_config values) must be exactly
 *   ${env:NAME} or ${file:PATH} unless opts->allow_literal_secrets;
 *   compose.env is measured and public, so ${env:}/${file:} there is an
 *   error (such values belong in user_config);
 * - compose: file and template are exclusive; template must agree with
 *   mode; with a template, direct mode needs ETH_RPC_URL and light mode
 *   EXECUTION_RPC, in compose.env or user_config but not both; template
 *   settings (KMS_IMAGE, DSTACK_REPO, DSTACK_REF) stay in compose.env and
 *   kmsctl's own (ports, KMS_CONTRACT_ADDR) out of user_config; a .env value
 *   is one line; allowed_envs and gateway_enabled need key_provider kms;
 * - hashes: the all-zero hash needs allow_zero: true; a list must not hold
 *   the same hash twice (also when only the hex case differs);
 * - nitro hosts: ssh has exactly one of public_key (import) and
 *   private_key_file (create); one key_name, one key; vpc_id needs
 *   subnet_id; the instance type and enclave settings obey the Nitro
 *   Enclaves rules (kc_check_nitro_enclave);
 * - names: two KMS VMs must not share a domain; labels and tags must not
 *   use the keys kmsctl sets itself (kmsctl-*, and Name / aws:* on AWS);
 *   contracts.kms.app_implementation only with contracts.kms.address.
 */
#ifndef KC_RECONCILE_CHECK_H
#define KC_RECONCILE_CHECK_H

#include "reconcile/diag.h"
#include "reconcile/kc.h"
#include "reconcile/manifest.h"
#include "reconcile/schema.h"

struct kc_check_opts {
    bool allow_literal_secrets; /* --allow-literal-secrets */
};

/* Runs every check on DOC (OPTS may be NULL: defaults) and adds one
 * diagnostic per problem to DIAGS, sorted by position. Returns 0 when DOC
 * is valid, KC_EINVAL when a diagnostic was added. */
int kc_manifest_check(const struct kc_doc *doc,
                      const struct kc_check_opts *opts, struct kc_diags *diags);

/* Only the semantic rules above (no schema, no interpolation checks);
 * SECRETS (may be NULL) are the nodes the schema matched as writeOnly. */
void kc_check_semantics(const struct kc_doc *doc,
                        const struct kc_check_opts *opts,
                        const struct kc_schema_secrets *secrets,
                        struct kc_diags *diags);

/* The Nitro Enclaves rules for nitro_hosts entry H: its instance_type is
 * of a family that supports enclaves and has at least 4 vCPUs; enclave
 * cpu_count is whole cores (even) and leaves the parent at least 2 vCPUs;
 * memory_mib leaves the parent at least 1 GiB. Returns NULL when H obeys
 * them (or lacks the fields: the schema reports that), else the offending
 * node, with *FIELD its path below the host ("instance_type",
 * "enclave.cpu_count", "enclave.memory_mib") and MSG (LEN bytes) what is
 * wrong. */
const struct kc_node *kc_check_nitro_enclave(const struct kc_node *h,
                                             const char **field, char *msg,
                                             size_t len);

#endif
