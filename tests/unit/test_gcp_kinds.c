/* tests/unit/test_gcp_kinds.c: the GCP kinds driven by the real engine
 * (prepare, refresh, apply) against kmsctl-sim: objects checked through the
 * admin API, a second plan all noop with zero mutating requests, drift
 * found and repaired, ownership refused, destroy leaving nothing. */
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/exec.h"
#include "reconcile/graph.h"
#include "reconcile/http.h"
#include "reconcile/json.h"
#include "reconcile/registry.h"
#include "tests/unit/helpers/sim_proc.h"
#include "tests/unit/helpers/state_testutil.h"
#include "tests/unit/helpers/test_run.h"

extern const struct kc_provider_type kc_provider_gcp;

static struct sim_proc *sp;
static char *tmp, *spath, *keyfile;

static void setup(void)
{
    setenv("KMSCTL_SIM_GCP_OP_MS", "2,10", 1);
    sp = sim_proc_start("gcp", 3);
    tmp = state_test_tmpdir();
    spath = kc_xasprintf("%s/t.state.json", tmp);
    keyfile = kc_xasprintf("%s/tests/sim/creds/gcp-service-account.json",
                           getenv("KC_SRC_DIR"));
    unsetenv("GOOGLE_OAUTH_ACCESS_TOKEN");
}

static void teardown(void)
{
    sim_proc_stop(sp);
    state_test_rmtree(tmp);
    free(tmp);
    free(spath);
    free(keyfile);
}

TestSuite(gcp_kinds, .init = setup, .fini = teardown, .timeout = 120);

static void run_init(struct test_run *r, const char *deployment)
{
    struct kc_value *gcp = kc_value_new_map(), *ep = kc_value_new_map();
    char *u;

    kc_value_map_set(gcp, "project", kc_value_new_str("kmsctl-sandbox"));
    kc_value_map_set(gcp, "zone", kc_value_new_str("us-central1-a"));
    kc_value_map_set(gcp, "bucket", kc_value_new_str("bk"));
    kc_value_map_set(gcp, "credentials", kc_value_new_str(keyfile));
    u = kc_xasprintf("%s/gcp/oauth2/token", sim_proc_url(sp));
    kc_value_map_set(ep, "oauth", kc_value_new_str(u));
    free(u);
    u = kc_xasprintf("%s/gcp/compute/v1", sim_proc_url(sp));
    kc_value_map_set(ep, "compute", kc_value_new_str(u));
    free(u);
    u = kc_xasprintf("%s/gcp/storage", sim_proc_url(sp));
    kc_value_map_set(ep, "storage", kc_value_new_str(u));
    free(u);
    kc_value_map_set(gcp, "endpoints", ep);
    test_run_init(r, &kc_provider_gcp, gcp, spath, deployment, true);
}

static struct kc_graph *fw_graph(const char *range)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *r;
    struct kc_value *sr = kc_value_new_list();

    cr_assert_eq(
        kc_graph_add(g, "gcp.firewall", "kms-allow-tcp-12001", &r, NULL), 0);
    kc_value_list_push(sr, kc_value_new_str(range));
    kc_resource_set_value(r, "network", kc_value_new_str("default"));
    kc_resource_set_value(r, "protocol", kc_value_new_str("tcp"));
    kc_resource_set_value(r, "port", kc_value_new_int(12001));
    kc_resource_set_value(r, "action", kc_value_new_str("allow"));
    kc_resource_set_value(r, "priority", kc_value_new_int(1000));
    kc_resource_set_value(r, "source_ranges", sr);
    kc_resource_set_value(r, "target_tag", kc_value_new_str("fw-kms"));
    kc_resource_set_value(r, "description",
                          kc_value_new_str("Allow TCP port 12001 for kms"));
    return g;
}

static enum kc_action action_of(struct test_run *r, const char *addr)
{
    struct kc_plan_item *it = kc_plan_find(r->plan, addr);

    cr_assert_not_null(it, "%s not in the plan", addr);
    return it->action;
}

static struct json_object *inv_obj(const char *kind, const char *name)
{
    struct json_object *inv = sim_proc_inventory(sp), *found = NULL;

    for (size_t i = 0; i < json_object_array_length(inv); i++) {
        struct json_object *o = json_object_array_get_idx(inv, i);

        if (strcmp(kc_json_opt_str(o, "kind"), kind) == 0 &&
            strcmp(kc_json_opt_str(o, "name"), name) == 0)
            found = json_object_get(o);
    }
    json_object_put(inv);
    return found;
}

static int64_t mutating(void)
{
    struct json_object *r = sim_proc_requests(sp);
    int64_t n = 0;

    cr_assert_eq(kc_json_get_int(r, "mutating", &n, NULL), 0);
    json_object_put(r);
    return n;
}

#define FW "gcp.firewall.kms-allow-tcp-12001"

Test(gcp_kinds, firewall_lifecycle_create_noop_drift_update_destroy)
{
    struct test_run r;
    struct json_object *o;
    int64_t before;

    /* Create. */
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("firewall", "kms-allow-tcp-12001");
    cr_assert_not_null(o);
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.sourceRanges[0]"), "0.0.0.0/0");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.targetTags[0]"), "fw-kms");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.allowed[0].ports[0]"), "12001");
    cr_assert_not_null(
        strstr(kc_json_opt_str(o, "attrs.description"), "[kmsctl:t1:" FW "]"));
    json_object_put(o);

    /* Same manifest: noop, nothing mutating. */
    before = mutating();
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_NOOP);
    cr_assert_eq(test_run_apply(&r), 0);
    test_run_fini(&r);
    cr_assert_eq(mutating(), before);

    /* Drift: changed outside -> update back; deleted outside -> create. */
    cr_assert_eq(sim_proc_patch_object(
                     sp, "gcp", "firewall", "kms-allow-tcp-12001",
                     "{\"attrs\":{\"sourceRanges\":[\"10.0.0.0/8\"]}}"),
                 200);
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_UPDATE);
    {
        struct kc_plan_item *it = kc_plan_find(r.plan, FW);

        cr_assert_eq(it->nchanges, 1);
        cr_assert_str_eq(it->changes[0].field, "source_ranges");
        cr_assert_eq(it->changes[0].cause, KC_CAUSE_EXTERNAL);
    }
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("firewall", "kms-allow-tcp-12001");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.sourceRanges[0]"), "0.0.0.0/0");
    json_object_put(o);
    cr_assert_eq(
        sim_proc_delete_object(sp, "gcp", "firewall", "kms-allow-tcp-12001"),
        200);
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);

    /* Manifest change: a narrower range is patched in place. */
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("203.0.113.7/32"), false), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_UPDATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("firewall", "kms-allow-tcp-12001");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.sourceRanges[0]"),
                     "203.0.113.7/32");
    json_object_put(o);

    /* Destroy. */
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("203.0.113.7/32"), true), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_DELETE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    cr_assert_null(inv_obj("firewall", "kms-allow-tcp-12001"));
}

Test(gcp_kinds, a_rule_of_another_deployment_is_not_taken_over)
{
    struct test_run r;
    struct kc_plan_item *it;

    run_init(&r, "other");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    /* A new state (lost, or another deployment) with the same name. */
    cr_assert_eq(unlink(spath), 0);
    run_init(&r, "t1");
    cr_assert_lt(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    it = kc_plan_find(r.plan, FW);
    cr_assert_not_null(it->error);
    cr_assert_not_null(strstr(it->error, "not this deployment's"), "%s",
                       it->error);
    test_run_fini(&r);
}

static struct kc_graph *img_graph(const char *digest)
{
    struct kc_graph *g = kc_graph_new();
    struct kc_resource *r;
    struct kc_value *f = kc_value_new_list();

    cr_assert_eq(kc_graph_add(g, "gcp.image", "dstack-data-disk", &r, NULL), 0);
    kc_value_list_push(f, kc_value_new_str("GVNIC"));
    kc_resource_set_value(r, "generate", kc_value_new_str("gpt:2097152"));
    kc_resource_set_value(r, "digest", kc_value_new_str(digest));
    kc_resource_set_value(r, "guest_os_features", f);
    return g;
}

#define IMG    "gcp.image.dstack-data-disk"
#define UPLOAD "POST /gcp/storage/upload/storage/v1/b/{bucket}/o"

Test(gcp_kinds, image_upload_once_insert_noop_reuse_replace_destroy)
{
    struct test_run r;
    struct json_object *o;
    int64_t before, uploads;

    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, img_graph("d1"), false), 0, "%s",
                 r.eng.err.msg);
    cr_assert_eq(action_of(&r, IMG), KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("image", "dstack-data-disk");
    cr_assert_not_null(o);
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.status"), "READY");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.guestOsFeatures[0].type"),
                     "GVNIC");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-source"), "d1");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-deployment"), "t1");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-address"),
                     "gcp_image_dstack-data-disk");
    json_object_put(o);
    o = inv_obj("object", "bk/dstack-data-disk.tar.gz");
    cr_assert_not_null(o);
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-deployment"), "t1");
    json_object_put(o);
    uploads = sim_proc_route_count(sp, UPLOAD);
    cr_assert_eq(uploads, 1);

    /* Again: noop, nothing sent. */
    before = mutating();
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, img_graph("d1"), false), 0);
    cr_assert_eq(action_of(&r, IMG), KC_ACTION_NOOP);
    cr_assert_eq(test_run_apply(&r), 0);
    test_run_fini(&r);
    cr_assert_eq(mutating(), before);

    /* The image deleted outside: made again from the tarball already in
     * the bucket, without uploading it again. */
    cr_assert_eq(sim_proc_delete_object(sp, "gcp", "image", "dstack-data-disk"),
                 200);
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, img_graph("d1"), false), 0);
    cr_assert_eq(action_of(&r, IMG), KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    cr_assert_eq(sim_proc_route_count(sp, UPLOAD), uploads);
    cr_assert_not_null(o = inv_obj("image", "dstack-data-disk"));
    json_object_put(o);

    /* A new digest replaces the immutable image. */
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, img_graph("d2"), false), 0);
    cr_assert_eq(action_of(&r, IMG), KC_ACTION_REPLACE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("image", "dstack-data-disk");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-source"), "d2");
    json_object_put(o);

    /* Destroy: image and tarball gone. */
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, img_graph("d2"), true), 0);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    cr_assert_null(inv_obj("image", "dstack-data-disk"));
    cr_assert_null(inv_obj("object", "bk/dstack-data-disk.tar.gz"));
}

/* ---- the KMS VM stack ---- */

static struct kc_value *strs(const char *a, const char *b, const char *c)
{
    struct kc_value *l = kc_value_new_list();

    if (a)
        kc_value_list_push(l, kc_value_new_str(a));
    if (b)
        kc_value_list_push(l, kc_value_new_str(b));
    if (c)
        kc_value_list_push(l, kc_value_new_str(c));
    return l;
}

static void image(struct kc_graph *g, const char *name, const char *digest,
                  struct kc_value *features)
{
    struct kc_resource *r;

    cr_assert_eq(kc_graph_add(g, "gcp.image", name, &r, NULL), 0);
    kc_resource_set_value(r, "generate", kc_value_new_str("gpt:2097152"));
    kc_resource_set_value(r, "digest", kc_value_new_str(digest));
    kc_resource_set_value(r, "guest_os_features", features);
}

/* The boot image's digest (a new OS image build). */
static const char *boot_digest = "b1";

/* SHARED: digest of the shared image; MT: machine type; CONSENT: the
 * manifest's allow_identity_loss. */
static struct kc_graph *vm_graph(const char *shared, const char *mt,
                                 bool consent)
{
    struct kc_graph *g = fw_graph("0.0.0.0/0");
    struct kc_resource *r;

    image(g, "boot-0-1", boot_digest,
          strs("UEFI_COMPATIBLE", "TDX_CAPABLE", "GVNIC"));
    image(g, "dstack-data-disk", "d1", strs("GVNIC", NULL, NULL));
    image(g, "kms-shared", shared, strs("GVNIC", NULL, NULL));
    cr_assert_eq(kc_graph_add(g, "gcp.disk", "kms-data", &r, NULL), 0);
    kc_resource_set_value(r, "zone", kc_value_new_str("us-central1-a"));
    kc_resource_set_value(r, "size_gb", kc_value_new_int(1));
    kc_resource_set_value(r, "type", kc_value_new_str("pd-balanced"));
    kc_resource_set_ref(r, "image", "gcp.image.dstack-data-disk", "name");
    kc_resource_set_value(r, "allow_identity_loss", kc_value_new_bool(consent));
    cr_assert_eq(kc_graph_add(g, "gcp.instance", "kms", &r, NULL), 0);
    kc_resource_set_value(r, "zone", kc_value_new_str("us-central1-a"));
    kc_resource_set_value(r, "machine_type", kc_value_new_str(mt));
    kc_resource_set_ref(r, "boot_image", "gcp.image.boot-0-1", "name");
    kc_resource_set_ref(r, "boot_digest", "gcp.image.boot-0-1", "digest");
    kc_resource_set_value(r, "boot_disk_size_gb", kc_value_new_int(10));
    kc_resource_set_ref(r, "data_disk", "gcp.disk.kms-data", "name");
    kc_resource_set_ref(r, "shared_image", "gcp.image.kms-shared", "name");
    kc_resource_set_value(r, "shared_digest", kc_value_new_str(shared));
    kc_resource_set_value(r, "network", kc_value_new_str("default"));
    kc_resource_set_value(
        r, "service_account",
        kc_value_new_str("kms@kmsctl-sandbox.iam.gserviceaccount.com"));
    kc_resource_set_value(r, "scopes", strs("cloud-platform", NULL, NULL));
    kc_resource_set_value(r, "tags", strs("fw-kms", NULL, NULL));
    kc_resource_set_value(r, "labels", kc_value_new_map());
    kc_resource_set_value(r, "running", kc_value_new_bool(true));
    kc_resource_set_value(r, "allow_identity_loss", kc_value_new_bool(consent));
    return g;
}

#define VM "gcp.instance.kms"

static int count_labelled(const char *deployment)
{
    struct json_object *inv = sim_proc_inventory(sp);
    int n = 0;

    for (size_t i = 0; i < json_object_array_length(inv); i++) {
        const char *d = kc_json_opt_str(json_object_array_get_idx(inv, i),
                                        "labels.kmsctl-deployment");

        n += d && strcmp(d, deployment) == 0;
    }
    json_object_put(inv);
    return n;
}

Test(gcp_kinds, kms_vm_create_noop_drift_shared_swap_consent_destroy)
{
    struct test_run r;
    struct json_object *o;
    char *id;
    int64_t before, uploads;
    struct kc_plan_item *it;

    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s1", "c3-standard-4", true), false), 0,
        "%s", r.eng.err.msg);
    cr_assert_eq(action_of(&r, VM), KC_ACTION_CREATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    it = kc_plan_find(r.plan, VM);
    cr_assert_str_eq(kc_value_str(kc_value_map_get(it->outputs, "external_ip")),
                     "127.1.0.1");
    test_run_fini(&r);
    o = inv_obj("instance", "kms");
    cr_assert_not_null(o);
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.status"), "RUNNING");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.confidentialInstanceConfig."
                                        "confidentialInstanceType"),
                     "TDX");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.scheduling.onHostMaintenance"),
                     "TERMINATE");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.tags.items[0]"), "fw-kms");
    /* gcloud's alias became the scope URL (and reads back as the alias:
     * the second plan below is all noop). */
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.serviceAccounts[0].scopes[0]"),
                     "https://www.googleapis.com/auth/cloud-platform");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-address"),
                     "gcp_instance_kms");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[0].deviceName"), "boot");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[0].guestOsFeatures[1]."
                                        "type"),
                     "TDX_CAPABLE");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[1].deviceName"), "data");
    cr_assert(!json_object_get_boolean(json_object_object_get(
        json_object_array_get_idx(
            json_object_object_get(json_object_object_get(o, "attrs"), "disks"),
            1),
        "autoDelete")));
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[2].deviceName"), "shared");
    id = kc_xstrdup(kc_json_opt_str(o, "id"));
    json_object_put(o);

    /* Again: all noop, nothing mutating, nothing uploaded. */
    before = mutating();
    uploads = sim_proc_route_count(sp, UPLOAD);
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s1", "c3-standard-4", true), false), 0);
    cr_assert(!kc_plan_has_changes(r.plan));
    cr_assert_eq(test_run_apply(&r), 0);
    test_run_fini(&r);
    cr_assert_eq(mutating(), before);
    cr_assert_eq(sim_proc_route_count(sp, UPLOAD), uploads);

    /* Drift: firewall deleted, a label changed, the instance stopped. */
    cr_assert_eq(
        sim_proc_delete_object(sp, "gcp", "firewall", "kms-allow-tcp-12001"),
        200);
    cr_assert_eq(sim_proc_patch_object(sp, "gcp", "instance", "kms",
                                       "{\"labels\":{\"kmsctl-deployment\":"
                                       "\"mallory\"},\"attrs\":{\"status\":"
                                       "\"TERMINATED\"}}"),
                 200);
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s1", "c3-standard-4", true), false), 0);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_CREATE);
    cr_assert_eq(action_of(&r, VM), KC_ACTION_UPDATE);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("instance", "kms");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.status"), "RUNNING");
    cr_assert_str_eq(kc_json_opt_str(o, "labels.kmsctl-deployment"), "t1");
    cr_assert_str_eq(kc_json_opt_str(o, "id"), id);
    json_object_put(o);
    cr_assert_not_null(o = inv_obj("firewall", "kms-allow-tcp-12001"));
    json_object_put(o);

    /* A new shared image: swapped in place; same instance, same data
     * disk; the old shared disk deleted. */
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s2", "c3-standard-4", true), false), 0);
    cr_assert_eq(action_of(&r, VM), KC_ACTION_UPDATE);
    cr_assert_eq(action_of(&r, "gcp.image.kms-shared"), KC_ACTION_REPLACE);
    cr_assert_eq(action_of(&r, "gcp.disk.kms-data"), KC_ACTION_NOOP);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    o = inv_obj("instance", "kms");
    cr_assert_str_eq(kc_json_opt_str(o, "id"), id);
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.status"), "RUNNING");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[1].deviceName"), "data");
    cr_assert_str_eq(kc_json_opt_str(o, "attrs.disks[2].deviceName"), "shared");
    {
        const char *src = kc_json_opt_str(o, "attrs.disks[2].source");
        struct json_object *d = inv_obj("disk", strrchr(src, '/') + 1);

        cr_assert_str_eq(kc_json_opt_str(d, "labels.kmsctl-source"), "s2");
        json_object_put(d);
    }
    json_object_put(o);
    {
        /* Exactly three disks: boot, data, the new shared one. */
        struct json_object *inv = sim_proc_inventory(sp);
        int n = 0;

        for (size_t i = 0; i < json_object_array_length(inv); i++)
            n += strcmp(
                     kc_json_opt_str(json_object_array_get_idx(inv, i), "kind"),
                     "disk") == 0;
        json_object_put(inv);
        cr_assert_eq(n, 3);
    }

    /* A new machine type replaces the VM: refused without consent. */
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s2", "c3-standard-8", false), false), 0);
    cr_assert_eq(action_of(&r, VM), KC_ACTION_REPLACE);
    cr_assert_not_null(kc_plan_find(r.plan, VM)->consent);
    cr_assert_eq(test_run_apply(&r), KC_EPERM);
    test_run_fini(&r);
    o = inv_obj("instance", "kms");
    cr_assert_str_eq(kc_json_opt_str(o, "id"), id);
    json_object_put(o);

    /* A new OS image build: the boot image is replaced, and so would be
     * the VM (its boot disk comes from it): refused without consent. */
    boot_digest = "b2";
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s2", "c3-standard-4", false), false), 0);
    cr_assert_eq(action_of(&r, "gcp.image.boot-0-1"), KC_ACTION_REPLACE);
    cr_assert_eq(action_of(&r, VM), KC_ACTION_REPLACE);
    cr_assert_not_null(kc_plan_find(r.plan, VM)->consent);
    test_run_fini(&r);
    boot_digest = "b1";

    /* Destroy (the manifest consents): nothing labelled is left. */
    cr_assert_gt(count_labelled("t1"), 0);
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, vm_graph("s2", "c3-standard-4", true), true),
                 0);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    cr_assert_eq(count_labelled("t1"), 0);
    cr_assert_null(inv_obj("instance", "kms"));
    cr_assert_null(inv_obj("firewall", "kms-allow-tcp-12001"));
    free(id);
}

/* A dropped answer to an insert: the HTTP module sends it again with the
 * same requestId, and Compute answers the first call's operation (200), not
 * 409 alreadyExists: nothing is made twice, nothing needs adopting. */
Test(gcp_kinds, an_insert_retried_after_a_lost_answer_is_deduplicated)
{
    struct test_run r;
    char path[512];
    char *log, *p;
    int drops = 0, oks = 0, conflicts = 0;
    const char *ins = "POST /gcp/compute/v1/projects/kmsctl-sandbox/global/"
                      "firewalls -> ";
    struct json_object *inv;
    int n = 0;

    sim_proc_set_faults(sp, "[{\"match\":\"^POST /gcp/compute/v1/projects/"
                            "[^/]+/global/firewalls$\",\"drop_after\":true,"
                            "\"count\":1}]");
    run_init(&r, "t1");
    cr_assert_eq(test_run_plan(&r, fw_graph("0.0.0.0/0"), false), 0);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);
    kc_snprintf(path, sizeof(path), "%s/sim-%d.log", getenv("KC_BUILD_DIR"),
                (int)getpid());
    log = state_test_slurp(path);
    cr_assert_not_null(log, "no simulator log at %s", path);
    for (p = log; (p = strstr(p, ins)); p += strlen(ins)) {
        const char *st = p + strlen(ins);

        drops += strncmp(st, "drop/200", 8) == 0;
        oks += strncmp(st, "200", 3) == 0;
        conflicts += strncmp(st, "409", 3) == 0;
    }
    free(log);
    cr_assert_eq(drops, 1);
    cr_assert_eq(oks, 1);
    cr_assert_eq(conflicts, 0);
    inv = sim_proc_inventory(sp);
    for (size_t i = 0; i < json_object_array_length(inv); i++)
        n += strcmp(kc_json_opt_str(json_object_array_get_idx(inv, i), "kind"),
                    "firewall") == 0;
    json_object_put(inv);
    cr_assert_eq(n, 1);
}

/* Plans once against the live objects and returns the error of ADDR (the
 * plan must fail there). Caller frees. */
static char *plan_error(struct kc_graph *g, const char *addr)
{
    struct test_run r;
    struct kc_plan_item *it;
    char *msg;

    run_init(&r, "t1");
    cr_assert_lt(test_run_plan(&r, g, false), 0, "a bad answer was accepted");
    it = kc_plan_find(r.plan, addr);
    cr_assert_not_null(it, "%s not in the plan", addr);
    cr_assert_not_null(it->error, "%s has no error", addr);
    msg = kc_xstrdup(it->error);
    test_run_fini(&r);
    return msg;
}

static void expect_bad_answer(const char *kind, const char *name,
                              const char *patch, const char *addr,
                              const char *want1, const char *want2)
{
    char *msg;

    cr_assert_eq(sim_proc_patch_object(sp, "gcp", kind, name, patch), 200);
    msg = plan_error(vm_graph("s1", "c3-standard-4", true), addr);
    cr_assert_not_null(strstr(msg, want1), "%s: no '%s' in: %s", patch, want1,
                       msg);
    cr_assert_not_null(strstr(msg, want2), "%s: no '%s' in: %s", patch, want2,
                       msg);
    free(msg);
}

/* Integers in the answers (Google encodes int64 as strings) that are not
 * numbers, carry trailing text or are out of range stop the plan with the
 * resource and the field named, instead of reading as 0 (silent drift). */
Test(gcp_kinds, non_numeric_or_out_of_range_integers_in_answers_are_errors)
{
    struct test_run r;
    struct json_object *o, *disks, *attrs;
    const char *fw_ports[] = {
        "[\"http\"]",  "[\"12001x\"]",    "[\"99999999999999999999\"]",
        "[\"70000\"]", "[\"8000-8100\"]", "[\"\"]",
        "[12.5]"
    };
    const char *sizes[] = { "\"ten\"", "\"-1\"",
                            "\"0\"",   "\"99999999999999999999\"",
                            "\"1 \"",  "true" };
    char *patch;

    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s1", "c3-standard-4", true), false), 0,
        "%s", r.eng.err.msg);
    cr_assert_eq(test_run_apply(&r), 0, "%s", r.eng.err.msg);
    test_run_fini(&r);

    for (size_t i = 0; i < sizeof(fw_ports) / sizeof(fw_ports[0]); i++) {
        patch = kc_xasprintf("{\"attrs\":{\"allowed\":[{\"IPProtocol\":"
                             "\"tcp\",\"ports\":%s}]}}",
                             fw_ports[i]);
        expect_bad_answer("firewall", "kms-allow-tcp-12001", patch, FW,
                          "firewall rule 'kms-allow-tcp-12001'", "ports[0]");
        free(patch);
    }
    expect_bad_answer("firewall", "kms-allow-tcp-12001",
                      "{\"attrs\":{\"allowed\":[{\"IPProtocol\":\"tcp\","
                      "\"ports\":[\"12001\"]}],\"priority\":\"high\"}}",
                      FW, "firewall rule 'kms-allow-tcp-12001'", "priority");
    cr_assert_eq(sim_proc_patch_object(sp, "gcp", "firewall",
                                       "kms-allow-tcp-12001",
                                       "{\"attrs\":{\"priority\":1000}}"),
                 200);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        patch = kc_xasprintf("{\"attrs\":{\"sizeGb\":%s}}", sizes[i]);
        expect_bad_answer("disk", "kms-data", patch, "gcp.disk.kms-data",
                          "disk 'kms-data'", "sizeGb");
        free(patch);
    }
    cr_assert_eq(sim_proc_patch_object(sp, "gcp", "disk", "kms-data",
                                       "{\"attrs\":{\"sizeGb\":\"1\"}}"),
                 200);

    /* The instance's boot disk: its disks array with a bad diskSizeGb. */
    o = inv_obj("instance", "kms");
    cr_assert_not_null(o);
    cr_assert(json_object_object_get_ex(o, "attrs", &attrs));
    cr_assert(json_object_object_get_ex(attrs, "disks", &disks));
    json_object_object_add(json_object_array_get_idx(disks, 0), "diskSizeGb",
                           json_object_new_string("10GB"));
    patch = kc_xasprintf(
        "{\"attrs\":{\"disks\":%s}}",
        json_object_to_json_string_ext(disks, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    expect_bad_answer("instance", "kms", patch, VM, "instance 'kms'",
                      "diskSizeGb");
    free(patch);

    /* Good values again: the plan goes through. */
    o = inv_obj("instance", "kms");
    cr_assert(json_object_object_get_ex(o, "attrs", &attrs));
    cr_assert(json_object_object_get_ex(attrs, "disks", &disks));
    json_object_object_add(json_object_array_get_idx(disks, 0), "diskSizeGb",
                           json_object_new_string("10"));
    patch = kc_xasprintf(
        "{\"attrs\":{\"disks\":%s}}",
        json_object_to_json_string_ext(disks, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    cr_assert_eq(sim_proc_patch_object(sp, "gcp", "instance", "kms", patch),
                 200);
    free(patch);
    run_init(&r, "t1");
    cr_assert_eq(
        test_run_plan(&r, vm_graph("s1", "c3-standard-4", true), false), 0,
        "%s", r.eng.err.msg);
    cr_assert_eq(action_of(&r, FW), KC_ACTION_NOOP);
    cr_assert_eq(action_of(&r, "gcp.disk.kms-data"), KC_ACTION_NOOP);
    test_run_fini(&r);
}
