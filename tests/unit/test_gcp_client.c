/* tests/unit/test_gcp_client.c: the GCP client against kmsctl-sim: token
 * fetch shared by concurrent calls, 401 -> one refresh and one resend, 403
 * failing at once with Google's message, 429/503 storms, operations polled
 * to DONE and operation errors, resumable uploads resuming after a dropped
 * connection with the right crc32c. */
#include <fcntl.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "reconcile/json.h"
#include "resources/gcp/codec.h"
#include "resources/gcp/gcp.h"
#include "resources/gcp/storage.h"
#include "tests/unit/helpers/sim_proc.h"

static struct sim_proc *sp;
static uv_loop_t loop;
static struct kc_http *http;
static struct gcp *g;
static char *keyfile;

static void setup(void)
{
    struct kc_http_config hc = { 0 };
    struct kc_value *cfgv = kc_value_new_map();
    struct kc_value *ep = kc_value_new_map();
    struct gcp_config cfg;
    struct gcp_creds_env env = { .no_metadata = true };
    struct kc_err err = { 0 };
    const char *base;

    setenv("KMSCTL_SIM_GCP_OP_MS", "5,20", 1);
    sp = sim_proc_start("gcp", 5);
    base = sim_proc_url(sp);
    cr_assert_eq(uv_loop_init(&loop), 0);
    hc.loop = &loop;
    hc.seed = 9;
    cr_assert_eq(kc_http_new(&hc, &http, &err), 0, "%s", err.msg);
    kc_value_map_set(cfgv, "project", kc_value_new_str("proj-1"));
    kc_value_map_set(cfgv, "zone", kc_value_new_str("us-central1-a"));
    kc_value_map_set(cfgv, "bucket", kc_value_new_str("bk"));
    {
        char *u = kc_xasprintf("%s/gcp/oauth2/token", base);

        kc_value_map_set(ep, "oauth", kc_value_new_str(u));
        free(u);
        u = kc_xasprintf("%s/gcp/compute/v1/", base);
        kc_value_map_set(ep, "compute", kc_value_new_str(u));
        free(u);
        u = kc_xasprintf("%s/gcp/storage", base);
        kc_value_map_set(ep, "storage", kc_value_new_str(u));
        free(u);
    }
    kc_value_map_set(cfgv, "endpoints", ep);
    cr_assert_eq(gcp_config_parse(cfgv, NULL, &cfg, &err), 0, "%s", err.msg);
    kc_value_free(cfgv);
    keyfile = kc_xasprintf("%s/tests/sim/creds/gcp-service-account.json",
                           getenv("KC_SRC_DIR"));
    env.app_credentials = keyfile;
    cr_assert_eq(gcp_new(&loop, http, NULL, &cfg, "t1", &env, &g, &err), 0,
                 "%s", err.msg);
    g->poll_min_ms = 5;
}

static void teardown(void)
{
    gcp_free(g);
    kc_http_close(http);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    sim_proc_stop(sp);
    free(keyfile);
}

TestSuite(gcp_client, .init = setup, .fini = teardown, .timeout = 60);

struct done {
    struct gcp_call call;
    int status, calls;
};

static void on_done(struct gcp_call *c, int status)
{
    struct done *d = kc_container_of(c, struct done, call);

    d->status = status;
    d->calls++;
}

static void run(void)
{
    cr_assert_geq(uv_run(&loop, UV_RUN_DEFAULT), 0);
}

static uint64_t fetches(void)
{
    struct gcp_auth_stats st;

    gcp_auth_get_stats(g->auth, &st);
    return st.fetches;
}

static void get(struct done *d, const char *path)
{
    char *url = gcp_compute_url(g, "%s", path);
    struct kc_err err = { 0 };

    cr_assert_eq(
        gcp_call_start(g, &d->call, KC_HTTP_GET, url, NULL, on_done, &err), 0,
        "%s", err.msg);
    free(url);
}

Test(gcp_client, concurrent_calls_share_one_token_fetch)
{
    struct done d[5] = { 0 };

    for (int i = 0; i < 5; i++)
        get(&d[i], "projects/proj-1/global/images");
    run();
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(d[i].calls, 1);
        cr_assert_eq(d[i].status, 0);
        cr_assert_eq(d[i].call.code, 200, "%ld", d[i].call.code);
        gcp_call_release(&d[i].call);
    }
    cr_assert_eq(fetches(), 1);
    cr_assert_eq(sim_proc_route_count(sp, "POST /gcp/oauth2/token"), 1);
    /* The cached token serves later calls. */
    get(&d[0], "projects/proj-1/global/firewalls");
    run();
    cr_assert_eq(d[0].call.code, 200);
    cr_assert_eq(fetches(), 1);
    gcp_call_release(&d[0].call);
}

Test(gcp_client, a_401_refreshes_once_and_resends_once)
{
    struct done d = { 0 };
    struct kc_err err = { 0 };

    get(&d, "projects/proj-1/global/images");
    run();
    gcp_call_release(&d.call);
    sim_proc_set_faults(sp, "[{\"match\":\"^GET /gcp/compute/\","
                            "\"status\":401,\"count\":1}]");
    get(&d, "projects/proj-1/global/images");
    run();
    cr_assert_eq(d.status, 0);
    cr_assert_eq(d.call.code, 200);
    cr_assert_eq(fetches(), 2);
    gcp_call_release(&d.call);
    /* Two 401s in a row: the second is final. */
    sim_proc_set_faults(sp, "[{\"match\":\"^GET /gcp/compute/\","
                            "\"status\":401,\"count\":2}]");
    get(&d, "projects/proj-1/global/images");
    run();
    cr_assert_eq(d.call.code, 401);
    cr_assert_eq(gcp_call_check(&d.call, d.status, "list images", &err),
                 KC_EPERM);
    cr_assert_eq(fetches(), 3);
    gcp_call_release(&d.call);
}

Test(gcp_client, a_403_fails_at_once_with_googles_message)
{
    struct done d = { 0 };
    struct kc_err err = { 0 };

    get(&d, "projects/denied-proj/global/images");
    run();
    cr_assert_eq(d.call.code, 403);
    cr_assert_eq(d.call.req.attempts, 1);
    cr_assert_eq(gcp_call_check(&d.call, d.status, "gcp.image.x", &err),
                 KC_EPERM);
    cr_assert_str_eq(err.msg, "gcp.image.x: 403 forbidden: Required "
                              "'compute.images.list' permission for "
                              "'projects/denied-proj'");
    gcp_call_release(&d.call);
}

Test(gcp_client, a_storm_of_429_and_503_is_survived)
{
    struct done d = { 0 };

    get(&d, "projects/proj-1/global/images"); /* token first */
    run();
    gcp_call_release(&d.call);
    sim_proc_set_faults(
        sp, "[{\"match\":\"^GET /gcp/compute/\",\"status\":429,"
            "\"retry_after\":0,\"count\":2},"
            "{\"match\":\"^GET /gcp/compute/\",\"status\":503,\"count\":2}]");
    get(&d, "projects/proj-1/global/images");
    run();
    cr_assert_eq(d.status, 0);
    cr_assert_eq(d.call.code, 200);
    cr_assert_eq(d.call.req.attempts, 5);
    gcp_call_release(&d.call);
}

struct waited {
    struct gcp_wait w;
    int status, calls;
};

static void on_waited(struct gcp_wait *w, int status)
{
    struct waited *x = kc_container_of(w, struct waited, w);

    x->status = status;
    x->calls++;
}

static void post(struct done *d, const char *path, const char *json)
{
    char *url = gcp_compute_url(g, "%s", path);
    struct json_object *body = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_json_parse(json, strlen(json), "body", &body, &err), 0);
    d->call.safe = true;
    cr_assert_eq(
        gcp_call_start(g, &d->call, KC_HTTP_POST, url, body, on_done, &err), 0,
        "%s", err.msg);
    free(url);
}

Test(gcp_client, operations_are_polled_to_done_and_errors_surface)
{
    struct done d = { 0 };
    struct waited w = { 0 };
    struct kc_err err = { 0 };

    post(&d, "projects/proj-1/global/firewalls?requestId=1",
         "{\"name\":\"kms-allow-tcp-12001\",\"allowed\":[{\"IPProtocol\":"
         "\"tcp\",\"ports\":[\"12001\"]}],\"targetTags\":[\"fw-kms\"]}");
    run();
    cr_assert_eq(gcp_call_check(&d.call, d.status, "fw", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(gcp_op_wait(g, &w.w, d.call.resp,
                             "gcp.firewall.kms-allow-tcp-12001", on_waited,
                             &err),
                 0);
    run();
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.status, 0, "%s", w.w.err.msg);
    cr_assert_str_eq(kc_json_opt_str(w.w.op, "status"), "DONE");
    gcp_wait_release(&w.w);
    gcp_call_release(&d.call);
    /* An image from a missing tarball: the operation ends in error. */
    post(&d, "projects/proj-1/global/images",
         "{\"name\":\"boot\",\"rawDisk\":{\"source\":"
         "\"https://storage.googleapis.com/bk/none.tar.gz\"}}");
    run();
    cr_assert_eq(
        gcp_op_wait(g, &w.w, d.call.resp, "gcp.image.boot", on_waited, &err),
        0);
    run();
    cr_assert_eq(w.status, KC_EREMOTE);
    cr_assert_not_null(strstr(w.w.err.msg, "gcp.image.boot: operation "), "%s",
                       w.w.err.msg);
    cr_assert_not_null(strstr(w.w.err.msg, "RESOURCE_NOT_FOUND"));
    cr_assert_not_null(strstr(w.w.err.msg, "none.tar.gz"));
    gcp_wait_release(&w.w);
    gcp_call_release(&d.call);
    /* 409 with Google's reason. */
    post(&d, "projects/proj-1/global/firewalls",
         "{\"name\":\"kms-allow-tcp-12001\",\"allowed\":[{\"IPProtocol\":"
         "\"tcp\"}]}");
    run();
    cr_assert_eq(gcp_call_check(&d.call, d.status, "fw", &err), KC_EEXIST);
    cr_assert_str_eq(gcp_call_reason(&d.call), "alreadyExists");
    gcp_call_release(&d.call);
}

/* ---- uploads ---- */

struct up {
    struct gcp_upload u;
    struct gcp_digest dg;
    int status, calls;
    int progress_calls;
    uint64_t progress_bytes, progress_total;
};

static void on_progress(void *arg, uint64_t bytes, uint64_t total, double rate)
{
    struct up *x = arg;

    cr_assert_geq(rate, 0.0);
    x->progress_calls++;
    x->progress_bytes = bytes;
    x->progress_total = total;
}

static void on_digest(struct gcp_digest *dg, int status)
{
    struct up *x = kc_container_of(dg, struct up, dg);

    x->status = status;
    x->calls++;
}

static void on_upload(struct gcp_upload *u, int status)
{
    struct up *x = kc_container_of(u, struct up, u);

    x->status = status;
    x->calls++;
}

static int make_file(const char *path, size_t size)
{
    unsigned char *buf = kc_xmalloc(size);
    int fd;

    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)((i * 2654435761u) >> 11);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, buf, size), (ssize_t)size);
    free(buf);
    return fd;
}

static void upload(struct up *x, int fd, const char *name, uint64_t chunk)
{
    struct gcp_upload_opts o = { 0 };
    struct kc_err err = { 0 };
    struct json_object *md = json_object_new_object();

    x->calls = 0;
    cr_assert_eq(gcp_digest_start(&loop, &x->dg, fd, on_digest, &err), 0);
    run();
    cr_assert_eq(x->status, 0, "%s", x->dg.err.msg);
    json_object_object_add(md, "kmsctl-deployment",
                           json_object_new_string("t1"));
    o.bucket = "bk";
    o.name = name;
    o.fd = fd;
    o.size = x->dg.size;
    o.crc32c = x->dg.crc32c;
    o.md5 = x->dg.md5;
    o.metadata = md;
    o.chunk = chunk;
    o.progress = on_progress;
    o.progress_arg = x;
    x->calls = 0;
    x->progress_calls = 0;
    cr_assert_eq(gcp_upload_start(g, &x->u, &o, on_upload, &err), 0, "%s",
                 err.msg);
    json_object_put(md);
    run();
    cr_assert_eq(x->calls, 1);
}

static const char *inventory_crc(const char *key)
{
    static char out[16];
    struct json_object *inv = sim_proc_inventory(sp);

    out[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(inv); i++) {
        struct json_object *o = json_object_array_get_idx(inv, i);

        if (strcmp(kc_json_opt_str(o, "name"), key) == 0)
            snprintf(out, sizeof(out), "%s",
                     kc_json_opt_str(o, "attrs.crc32c"));
    }
    json_object_put(inv);
    return out;
}

Test(gcp_client, upload_in_chunks_stores_the_file_with_its_crc32c)
{
    struct up x = { 0 };
    char path[] = "/tmp/kc-gcp-up-XXXXXX";
    char want[GCP_CRC32C_B64_LEN];
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    close(fd);
    fd = make_file(path, 3 * 256 * 1024 + 12345);
    upload(&x, fd, "boot/disk.tar.gz", 512 * 1024);
    cr_assert_eq(x.status, 0, "%s", x.u.err.msg);
    gcp_crc32c_b64(x.dg.crc32c, want);
    cr_assert_str_eq(kc_json_opt_str(x.u.object, "crc32c"), want);
    cr_assert_str_eq(inventory_crc("bk/boot/disk.tar.gz"), want);
    cr_assert_eq(x.u.bytes_sent, x.dg.size);
    cr_assert_eq(x.u.resumes, 0);
    /* One 308 (after the first 512 KiB chunk), one progress report. */
    cr_assert_eq(x.progress_calls, 1);
    cr_assert_eq(x.progress_bytes, 512 * 1024);
    cr_assert_eq(x.progress_total, x.dg.size);
    /* 4 chunks of 512 KiB at most, one session. */
    cr_assert_eq(sim_proc_route_count(
                     sp, "PUT /gcp/storage/upload/storage/v1/b/{bucket}/o"),
                 2);
    gcp_upload_release(&x.u);
    close(fd);
    unlink(path);
}

Test(gcp_client, dropped_connection_resumes_from_the_committed_offset)
{
    struct up x = { 0 };
    char path[] = "/tmp/kc-gcp-up-XXXXXX";
    char want[GCP_CRC32C_B64_LEN];
    int fd = mkstemp(path);
    uint64_t size = 6 * 256 * 1024 + 7;

    cr_assert_geq(fd, 0);
    close(fd);
    fd = make_file(path, size);
    /* The first chunk is stored, then the connection drops before the
     * answer: the client must ask and go on from 256 KiB. */
    sim_proc_set_faults(sp, "[{\"match\":\"^PUT /gcp/storage/upload/\","
                            "\"drop_after\":true,\"count\":1}]");
    upload(&x, fd, "data.tar.gz", 256 * 1024);
    cr_assert_eq(x.status, 0, "%s", x.u.err.msg);
    cr_assert_geq(x.u.resumes, 1);
    gcp_crc32c_b64(x.dg.crc32c, want);
    cr_assert_str_eq(inventory_crc("bk/data.tar.gz"), want);
    /* Resumed, not restarted: at most one chunk sent twice. */
    cr_assert_leq(x.u.bytes_sent, size + 256 * 1024);
    gcp_upload_release(&x.u);
    sim_proc_clear_faults(sp);
    /* A 503 on a chunk: asked and resumed too. */
    sim_proc_set_faults(sp, "[{\"match\":\"^PUT /gcp/storage/upload/\","
                            "\"status\":503,\"count\":2}]");
    upload(&x, fd, "data2.tar.gz", 256 * 1024);
    cr_assert_eq(x.status, 0, "%s", x.u.err.msg);
    cr_assert_str_eq(inventory_crc("bk/data2.tar.gz"), want);
    gcp_upload_release(&x.u);
    close(fd);
    unlink(path);
}
