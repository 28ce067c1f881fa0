/* tests/unit/test_aws_ec2.c: the EC2 client against kmsctl-sim's ec2
 * service: SigV4 accepted and refused (bad signature, stale date), IMDSv2
 * credentials and their refresh, retries (5xx, dropped responses),
 * ClientToken idempotency, eventual consistency, security group and key
 * pair semantics. Every cloud-side effect is checked through the admin API.
 */
#include "resources/aws/ec2.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t sim_pid;
static char sim_url[64], ec2_url[80];
static uv_loop_t loop;
static struct kc_http *http;
static struct aws_ec2 *ec2;
static char *creds_env, *imds_env;

/* ---- a private kmsctl-sim child (blocking: tests only) ---- */

static void sim_up(void)
{
    const char *bdir = getenv("KC_BUILD_DIR") ? getenv("KC_BUILD_DIR") : ".";
    char *bin = kc_xasprintf("%s/kmsctl-sim", bdir);
    char line[128] = "";
    int fds[2];
    FILE *f;

    cr_assert_eq(pipe(fds), 0);
    sim_pid = fork();
    cr_assert_neq(sim_pid, -1);
    if (sim_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        if (!getenv("SIM_PROC_STDERR"))
            freopen("/dev/null", "w", stderr);
        close(fds[0]);
        execl(bin, bin, "--listen", "127.0.0.1:0", "--services", "ec2",
              "--seed", "42", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    f = fdopen(fds[0], "r");
    cr_assert_not_null(fgets(line, sizeof(line), f),
                       "kmsctl-sim did not "
                       "start (%s)",
                       bin);
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    cr_assert_eq(strncmp(line, "listening on ", 13), 0, "%s", line);
    (void)kc_snprintf(sim_url, sizeof(sim_url), "%s", line + 13);
    (void)kc_snprintf(ec2_url, sizeof(ec2_url), "%s/ec2", sim_url);
    free(bin);
}

static void sim_down(void)
{
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        waitpid(sim_pid, NULL, 0);
    }
    sim_pid = 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    struct kc_buf *b = arg;

    cr_assert_eq(kc_buf_add(b, p, size * n), 0);
    return size * n;
}

/* One request to the simulator; returns the status, *OUT the body. */
static long sim_call(const char *method, const char *path,
                     const struct curl_slist *headers, const char *body,
                     char **out)
{
    CURL *c = curl_easy_init();
    struct kc_buf b = { 0 };
    char *url = kc_xasprintf("%s%s", sim_url, path);
    long code = 0;

    cr_assert_not_null(c);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write),
                 CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_WRITEDATA, &b), CURLE_OK);
    if (headers)
        cr_assert_eq(curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers),
                     CURLE_OK);
    if (body)
        cr_assert_eq(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body), CURLE_OK);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    cr_assert_eq(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code), CURLE_OK);
    curl_easy_cleanup(c);
    free(url);
    if (out)
        *out = b.data ? kc_buf_detach(&b, NULL) : kc_xstrdup("");
    kc_buf_release(&b);
    return code;
}

static struct json_object *sim_json(const char *path)
{
    char *text = NULL;
    struct json_object *j;

    cr_assert_eq(sim_call("GET", path, NULL, NULL, &text), 200);
    j = json_tokener_parse(text);
    cr_assert_not_null(j, "%s", text);
    free(text);
    return j;
}

static int64_t mutating(void)
{
    struct json_object *r = sim_json("/_sim/requests");
    int64_t n = json_object_get_int64(json_object_object_get(r, "mutating"));

    json_object_put(r);
    return n;
}

/* Inventory objects of KIND. */
static int count_kind(const char *kind)
{
    struct json_object *inv = sim_json("/_sim/inventory?service=ec2");
    int n = 0;

    for (size_t i = 0; i < json_object_array_length(inv); i++) {
        struct json_object *o = json_object_array_get_idx(inv, i);

        if (strcmp(json_object_get_string(json_object_object_get(o, "kind")),
                   kind) == 0)
            n++;
    }
    json_object_put(inv);
    return n;
}

static long admin(const char *method, const char *path, const char *body)
{
    struct curl_slist *h =
        curl_slist_append(NULL, "Content-Type: application/json");
    long code = sim_call(method, path, h, body, NULL);

    curl_slist_free_all(h);
    return code;
}

/* ---- the client under test ---- */

static void client_up(char **env)
{
    struct kc_http_config hc = { .loop = &loop, .seed = 7 };
    struct aws_ec2_config ec = { 0 };
    struct kc_err err = { 0 };

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(kc_http_new(&hc, &http, &err), 0, "%s", err.msg);
    ec.http = http;
    ec.endpoint = ec2_url;
    ec.region = "us-east-1";
    ec.env = env;
    cr_assert_eq(aws_ec2_new(&ec, &ec2, &err), 0, "%s", err.msg);
}

static void setup(void)
{
    const char *src = getenv("KC_SRC_DIR") ? getenv("KC_SRC_DIR") : ".";
    static char *env[4];

    sim_up();
    creds_env = kc_xasprintf(
        "AWS_SHARED_CREDENTIALS_FILE=%s/tests/sim/creds/aws-credentials", src);
    imds_env =
        kc_xasprintf("AWS_EC2_METADATA_SERVICE_ENDPOINT=%s/imds", sim_url);
    env[0] = creds_env;
    env[1] = "AWS_CONFIG_FILE=/nonexistent";
    env[2] = imds_env;
    env[3] = NULL;
    client_up(env);
}

static void teardown(void)
{
    aws_ec2_free(ec2);
    ec2 = NULL;
    kc_http_close(http);
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    cr_assert_eq(uv_loop_close(&loop), 0);
    sim_down();
    free(creds_env);
    free(imds_env);
}

TestSuite(aws_ec2, .init = setup, .fini = teardown, .timeout = 60);

struct waiter {
    bool done;
    int status;
};

static void on_done(struct aws_ec2_call *c, int status)
{
    struct waiter *w = c->data;

    w->done = true;
    w->status = status;
}

static int call_sync(struct aws_ec2_call *c, unsigned flags)
{
    struct waiter w = { 0 };
    struct kc_err err = { 0 };
    int ret;

    c->data = &w;
    ret = aws_ec2_send(ec2, c, flags, on_done, &err);
    if (ret < 0)
        return ret;
    while (!w.done)
        uv_run(&loop, UV_RUN_ONCE);
    return w.status;
}

static char *text_dup(struct aws_ec2_call *c, const char *path)
{
    const char *t = aws_xml_text(c->root, path);

    cr_assert_not_null(t, "no %s in %s response", path, c->action);
    return kc_xstrdup(t);
}

static char *default_vpc(void)
{
    struct aws_ec2_call c = { 0 };
    char *id;

    aws_ec2_call_init(&c, "DescribeVpcs");
    aws_query_add(&c.q, "Filter.1.Name", "isDefault");
    aws_query_add(&c.q, "Filter.1.Value.1", "true");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    id = text_dup(&c, "vpcSet/item/vpcId");
    cr_assert_str_eq(aws_xml_text(c.root, "vpcSet/item/isDefault"), "true");
    aws_ec2_call_release(&c);
    return id;
}

static char *create_group(const char *name)
{
    struct aws_ec2_call c = { 0 };
    char *vpc = default_vpc(), *id;

    aws_ec2_call_init(&c, "CreateSecurityGroup");
    aws_query_add(&c.q, "GroupName", name);
    aws_query_add(&c.q, "GroupDescription", "kmsctl test");
    aws_query_add(&c.q, "VpcId", vpc);
    aws_query_add(&c.q, "TagSpecification.1.ResourceType", "security-group");
    aws_query_add(&c.q, "TagSpecification.1.Tag.1.Key", "kmsctl-deployment");
    aws_query_add(&c.q, "TagSpecification.1.Tag.1.Value", "test");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    id = text_dup(&c, "groupId");
    aws_ec2_call_release(&c);
    free(vpc);
    return id;
}

static void add_ssh_rule(struct aws_ec2_call *c, const char *gid,
                         const char *cidr)
{
    aws_ec2_call_init(c, "AuthorizeSecurityGroupIngress");
    aws_query_add(&c->q, "GroupId", gid);
    aws_query_add(&c->q, "IpPermissions.1.IpProtocol", "tcp");
    aws_query_add(&c->q, "IpPermissions.1.FromPort", "22");
    aws_query_add(&c->q, "IpPermissions.1.ToPort", "22");
    aws_query_add(&c->q, "IpPermissions.1.IpRanges.1.CidrIp", cidr);
}

static char *newest_al2023(void)
{
    struct aws_ec2_call c = { 0 };
    struct _xmlNode *it;
    char *best = NULL, best_date[40] = "";
    int n = 0;

    aws_ec2_call_init(&c, "DescribeImages");
    aws_query_add(&c.q, "Owner.1", "amazon");
    aws_query_add(&c.q, "Filter.1.Name", "name");
    aws_query_add(&c.q, "Filter.1.Value.1", "al2023-ami-2023.*-x86_64");
    aws_query_add(&c.q, "Filter.2.Name", "state");
    aws_query_add(&c.q, "Filter.2.Value.1", "available");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    for (it = aws_xml_child(c.root, "imagesSet/item"); it;
         it = aws_xml_next(it), n++) {
        const char *d = aws_xml_text(it, "creationDate");

        if (strcmp(d, best_date) > 0) {
            (void)kc_snprintf(best_date, sizeof(best_date), "%s", d);
            free(best);
            best = kc_xstrdup(aws_xml_text(it, "imageId"));
        }
    }
    cr_assert_eq(n, 3, "three available x86_64 AL2023 standard images");
    cr_assert_str_eq(best_date, "2025-05-12T21:05:00.000Z");
    aws_ec2_call_release(&c);
    return best;
}

static void run_instance(struct aws_ec2_call *c, const char *ami,
                         const char *gid, const char *token)
{
    aws_ec2_call_init(c, "RunInstances");
    aws_query_add(&c->q, "ImageId", ami);
    aws_query_add(&c->q, "InstanceType", "c5.xlarge");
    aws_query_add(&c->q, "MinCount", "1");
    aws_query_add(&c->q, "MaxCount", "1");
    aws_query_add(&c->q, "EnclaveOptions.Enabled", "true");
    aws_query_add(&c->q, "MetadataOptions.HttpTokens", "required");
    aws_query_add(&c->q, "SecurityGroupId.1", gid);
    aws_query_add(&c->q, "ClientToken", token);
}

/* ---- tests ---- */

Test(aws_ec2, signed_describe_finds_the_default_vpc)
{
    char *vpc = default_vpc();

    cr_assert_eq(strncmp(vpc, "vpc-", 4), 0);
    cr_assert_not_null(strstr(aws_ec2_creds_source(ec2), "profile 'default'"));
    cr_assert_not_null(strstr(aws_ec2_creds_source(ec2), "aws-credentials"));
    cr_assert_eq(mutating(), 0);
    free(vpc);
}

Test(aws_ec2, wrong_secret_is_signature_does_not_match)
{
    char *tmp = kc_xasprintf("/tmp/kc-aws-badcreds-%d", (int)getpid());
    char *env0 = kc_xasprintf("AWS_SHARED_CREDENTIALS_FILE=%s", tmp);
    char *env[] = { env0, "AWS_CONFIG_FILE=/nonexistent",
                    "AWS_EC2_METADATA_DISABLED=true", NULL };
    FILE *f = fopen(tmp, "w");
    struct aws_ec2_call c = { 0 };

    cr_assert_not_null(f);
    fputs("[default]\naws_access_key_id = AKIDKMSCTLSANDBOX01\n"
          "aws_secret_access_key = notTheSandboxSecret\n",
          f);
    fclose(f);
    aws_ec2_free(ec2);
    {
        struct aws_ec2_config ec = {
            .http = http, .endpoint = ec2_url, .region = "us-east-1", .env = env
        };
        struct kc_err err = { 0 };

        cr_assert_eq(aws_ec2_new(&ec, &ec2, &err), 0, "%s", err.msg);
    }
    aws_ec2_call_init(&c, "DescribeVpcs");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "SignatureDoesNotMatch");
    cr_assert_str_neq(c.error.request_id, "");
    cr_assert_not_null(strstr(c.err.msg, "ec2 DescribeVpcs: "
                                         "SignatureDoesNotMatch"),
                       "%s", c.err.msg);
    cr_assert_not_null(strstr(c.err.msg, "request id sim-"), "%s", c.err.msg);
    /* Not retried: one request only. */
    cr_assert_eq(c.http.attempts, 1);
    aws_ec2_call_release(&c);
    unlink(tmp);
    free(tmp);
    free(env0);
}

Test(aws_ec2, stale_date_is_request_expired)
{
    /* Sign a request dated 20 minutes ago by hand. */
    struct kc_secret *secret =
        kc_secret_new("kmsctlSandboxSecretKey0000000000000000000", 41);
    const char *body = "Action=DescribeVpcs&Version=2016-11-15";
    char date[17], *host = strstr(sim_url, "//") + 2, *hd, *ad;
    struct aws_header h[3];
    struct aws_sigv4_req r = { 0 };
    struct kc_buf auth = { 0 };
    struct kc_err err = { 0 };
    struct curl_slist *hl = NULL;
    char *out = NULL;

    aws_sigv4_amz_date(time(NULL) - 20 * 60, date);
    h[0] = (struct aws_header){ "Content-Type",
                                "application/x-www-form-urlencoded" };
    h[1] = (struct aws_header){ "Host", host };
    h[2] = (struct aws_header){ "X-Amz-Date", date };
    r = (struct aws_sigv4_req){ .method = "POST",
                                .path = "/ec2/",
                                .headers = h,
                                .nheaders = 3,
                                .body = body,
                                .body_len = strlen(body),
                                .amz_date = date,
                                .region = "us-east-1",
                                .service = "ec2" };
    cr_assert_eq(
        aws_sigv4_authorization(&r, "AKIDKMSCTLSANDBOX01", secret, &auth, &err),
        0);
    hd = kc_xasprintf("X-Amz-Date: %s", date);
    ad = kc_xasprintf("Authorization: %s", kc_buf_str(&auth));
    hl = curl_slist_append(hl,
                           "Content-Type: application/x-www-form-urlencoded");
    hl = curl_slist_append(hl, hd);
    hl = curl_slist_append(hl, ad);
    cr_assert_eq(sim_call("POST", "/ec2/", hl, body, &out), 400);
    cr_assert_not_null(strstr(out, "<Code>RequestExpired</Code>"), "%s", out);
    free(out);
    /* The same request dated now passes: only the date was wrong. */
    curl_slist_free_all(hl);
    kc_buf_reset(&auth);
    aws_sigv4_amz_date(time(NULL), date);
    cr_assert_eq(
        aws_sigv4_authorization(&r, "AKIDKMSCTLSANDBOX01", secret, &auth, &err),
        0);
    free(hd);
    free(ad);
    hd = kc_xasprintf("X-Amz-Date: %s", date);
    ad = kc_xasprintf("Authorization: %s", kc_buf_str(&auth));
    hl = curl_slist_append(NULL,
                           "Content-Type: application/x-www-form-urlencoded");
    hl = curl_slist_append(hl, hd);
    hl = curl_slist_append(hl, ad);
    cr_assert_eq(sim_call("POST", "/ec2/", hl, body, &out), 200, "%s", out);
    cr_assert_not_null(strstr(out, "DescribeVpcsResponse"));
    free(out);
    curl_slist_free_all(hl);
    free(hd);
    free(ad);
    kc_buf_release(&auth);
    kc_secret_free(secret);
}

Test(aws_ec2, imds_credentials_are_fetched_and_refreshed_before_expiry)
{
    char *env[] = { "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
                    "AWS_CONFIG_FILE=/nonexistent", imds_env, NULL };
    struct aws_ec2_config ec = {
        .http = http, .endpoint = ec2_url, .region = "us-east-1", .env = env
    };
    struct aws_ec2_call c = { 0 };
    struct kc_err err = { 0 };

    aws_ec2_free(ec2);
    cr_assert_eq(aws_ec2_new(&ec, &ec2, &err), 0, "%s", err.msg);
    cr_assert_eq(aws_ec2_imds_fetches(ec2), 0);
    /* Credentials that expire within the refresh margin are fetched again
     * before the next call. */
    cr_assert_eq(admin("PATCH",
                       "/_sim/objects/ec2/imds_role/"
                       "kmsctl-sandbox-role",
                       "{\"attrs\":{\"ttl_seconds\":120}}"),
                 200);
    for (unsigned i = 1; i <= 2; i++) {
        aws_ec2_call_init(&c, "DescribeVpcs");
        cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
        aws_ec2_call_release(&c);
        cr_assert_eq(aws_ec2_imds_fetches(ec2), i);
    }
    cr_assert_not_null(strstr(aws_ec2_creds_source(ec2), "IMDSv2"));
    /* Long-lived ones are fetched once more (the cached ones were about to
     * expire), then reused. */
    cr_assert_eq(admin("PATCH",
                       "/_sim/objects/ec2/imds_role/"
                       "kmsctl-sandbox-role",
                       "{\"attrs\":{\"ttl_seconds\":21600}}"),
                 200);
    for (unsigned i = 0; i < 3; i++) {
        aws_ec2_call_init(&c, "DescribeSubnets");
        cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
        aws_ec2_call_release(&c);
        cr_assert_eq(aws_ec2_imds_fetches(ec2), 3);
    }
}

Test(aws_ec2, imds_without_token_is_refused)
{
    cr_assert_eq(sim_call("GET",
                          "/imds/latest/meta-data/iam/security-credentials/",
                          NULL, NULL, NULL),
                 401);
}

Test(aws_ec2, server_errors_are_retried)
{
    struct aws_ec2_call c = { 0 };
    struct json_object *r;

    cr_assert_eq(admin("POST", "/_sim/faults",
                       "[{\"match\":\"^POST /ec2/$\",\"status\":503,"
                       "\"count\":2}]"),
                 200);
    aws_ec2_call_init(&c, "DescribeVpcs");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    cr_assert_eq(c.http.attempts, 3);
    aws_ec2_call_release(&c);
    r = sim_json("/_sim/requests");
    cr_assert_eq(json_object_get_int(json_object_object_get(r, "faulted")), 2);
    json_object_put(r);
}

Test(aws_ec2, client_token_makes_run_instances_idempotent)
{
    struct aws_ec2_call c = { 0 };
    char *ami = newest_al2023(), *gid = create_group("idem"), *first;

    run_instance(&c, ami, gid, "kmsctl-test-token-1");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    first = text_dup(&c, "instancesSet/item/instanceId");
    cr_assert_str_eq(aws_xml_text(c.root, "instancesSet/item/instanceState/"
                                          "name"),
                     "pending");
    aws_ec2_call_release(&c);
    run_instance(&c, ami, gid, "kmsctl-test-token-1");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    cr_assert_str_eq(aws_xml_text(c.root, "instancesSet/item/instanceId"),
                     first);
    aws_ec2_call_release(&c);
    run_instance(&c, ami, gid, "kmsctl-test-token-1");
    aws_query_add(&c.q, "KeyName", "other");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "IdempotentParameterMismatch");
    aws_ec2_call_release(&c);
    cr_assert_eq(count_kind("instance"), 1);
    free(first);
    free(ami);
    free(gid);
}

Test(aws_ec2, dropped_run_instances_response_yields_one_instance)
{
    struct aws_ec2_call c = { 0 };
    char *ami = newest_al2023(), *gid = create_group("drop");
    struct json_object *r;

    cr_assert_eq(admin("POST", "/_sim/faults",
                       "[{\"match\":\"^POST /ec2/$\",\"drop_after\":true,"
                       "\"count\":1}]"),
                 200);
    run_instance(&c, ami, gid, "kmsctl-test-token-drop");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    aws_ec2_call_release(&c);
    /* Sent twice (libcurl itself resends on a reused connection that died,
     * else our retry does), made once. */
    r = sim_json("/_sim/requests");
    cr_assert_eq(json_object_get_int(json_object_object_get(
                     json_object_object_get(r, "by_route"),
                     "POST /ec2/?Action=RunInstances")),
                 2);
    json_object_put(r);
    cr_assert_eq(count_kind("instance"), 1);
    free(ami);
    free(gid);
}

Test(aws_ec2, instance_becomes_running_and_is_visible_eventually)
{
    struct aws_ec2_call c = { 0 };
    char *ami = newest_al2023(), *gid = create_group("run"), *id;
    const char *state = "pending";

    run_instance(&c, ami, gid, "kmsctl-test-token-run");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    id = text_dup(&c, "instancesSet/item/instanceId");
    aws_ec2_call_release(&c);
    for (int i = 0; i < 60 && strcmp(state, "running") != 0; i++) {
        aws_ec2_call_init(&c, "DescribeInstances");
        aws_query_add(&c.q, "InstanceId.1", id);
        /* Right after RunInstances the id may be unknown for a moment. */
        cr_assert_eq(call_sync(&c, AWS_EC2_EVENTUAL), 0, "%s", c.err.msg);
        state = strcmp(aws_xml_text(c.root, "reservationSet/item/"
                                            "instancesSet/item/"
                                            "instanceState/name"),
                       "running") == 0
                    ? "running"
                    : "pending";
        if (strcmp(state, "running") == 0) {
            cr_assert_str_eq(aws_xml_text(c.root, "reservationSet/item/"
                                                  "instancesSet/item/"
                                                  "enclaveOptions/enabled"),
                             "true");
            cr_assert_str_eq(aws_xml_text(c.root, "reservationSet/item/"
                                                  "instancesSet/item/"
                                                  "metadataOptions/"
                                                  "httpTokens"),
                             "required");
            cr_assert_not_null(aws_xml_text(c.root, "reservationSet/item/"
                                                    "instancesSet/item/"
                                                    "ipAddress"));
        }
        aws_ec2_call_release(&c);
        if (strcmp(state, "running") != 0)
            usleep(100 * 1000);
    }
    cr_assert_str_eq(state, "running");
    free(id);
    free(ami);
    free(gid);
}

Test(aws_ec2, security_group_rules_and_dependency_violation)
{
    struct aws_ec2_call c = { 0 };
    char *ami = newest_al2023(), *gid = create_group("deps"), *id;
    bool deleted = false;

    add_ssh_rule(&c, gid, "203.0.113.7/32");
    cr_assert_eq(call_sync(&c, AWS_EC2_EVENTUAL), 0, "%s", c.err.msg);
    aws_ec2_call_release(&c);
    add_ssh_rule(&c, gid, "203.0.113.7/32");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "InvalidPermission.Duplicate");
    aws_ec2_call_release(&c);
    run_instance(&c, ami, gid, "kmsctl-test-token-deps");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    id = text_dup(&c, "instancesSet/item/instanceId");
    aws_ec2_call_release(&c);
    aws_ec2_call_init(&c, "DeleteSecurityGroup");
    aws_query_add(&c.q, "GroupId", gid);
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "DependencyViolation");
    aws_ec2_call_release(&c);
    aws_ec2_call_init(&c, "TerminateInstances");
    aws_query_add(&c.q, "InstanceId.1", id);
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    cr_assert_str_eq(aws_xml_text(c.root, "instancesSet/item/currentState/"
                                          "name"),
                     "shutting-down");
    aws_ec2_call_release(&c);
    /* The group frees up once the instance's interface is gone. */
    for (int i = 0; i < 50 && !deleted; i++) {
        aws_ec2_call_init(&c, "DeleteSecurityGroup");
        aws_query_add(&c.q, "GroupId", gid);
        if (call_sync(&c, 0) == 0)
            deleted = true;
        else
            cr_assert_str_eq(c.error.code, "DependencyViolation");
        aws_ec2_call_release(&c);
        if (!deleted)
            usleep(100 * 1000);
    }
    cr_assert(deleted);
    cr_assert_eq(count_kind("security_group"), 1, "only the VPC's default");
    free(id);
    free(ami);
    free(gid);
}

Test(aws_ec2, imported_ed25519_key_has_the_sha256_fingerprint)
{
    /* An OpenSSH ed25519 public key (32 bytes 0x01..0x20). */
    static const char pub[] =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGB"
        "kaGxwdHh8g test";
    unsigned char b64[256];
    struct aws_ec2_call c = { 0 };

    EVP_EncodeBlock(b64, (const unsigned char *)pub, (int)strlen(pub));
    aws_ec2_call_init(&c, "ImportKeyPair");
    aws_query_add(&c.q, "KeyName", "nitro-enclave-key");
    aws_query_add(&c.q, "PublicKeyMaterial", (const char *)b64);
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    /* base64(sha256(blob)) without padding, as ssh-keygen -l prints. */
    cr_assert_str_eq(aws_xml_text(c.root, "keyFingerprint"),
                     "mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4");
    aws_ec2_call_release(&c);
    aws_ec2_call_init(&c, "ImportKeyPair");
    aws_query_add(&c.q, "KeyName", "nitro-enclave-key");
    aws_query_add(&c.q, "PublicKeyMaterial", (const char *)b64);
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "InvalidKeyPair.Duplicate");
    aws_ec2_call_release(&c);
    aws_ec2_call_init(&c, "DescribeKeyPairs");
    aws_query_add(&c.q, "KeyName.1", "absent");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "InvalidKeyPair.NotFound");
    aws_ec2_call_release(&c);
    cr_assert_eq(count_kind("key_pair"), 1);
}

Test(aws_ec2, created_rsa_key_pair_returns_pem_material)
{
    struct aws_ec2_call c = { 0 };
    const char *fp;

    aws_ec2_call_init(&c, "CreateKeyPair");
    aws_query_add(&c.q, "KeyName", "made-here");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    cr_assert_not_null(strstr(aws_xml_text(c.root, "keyMaterial"),
                              "-----BEGIN RSA PRIVATE KEY-----"));
    fp = aws_xml_text(c.root, "keyFingerprint");
    cr_assert_eq(strlen(fp), 59, "SHA-1 in colon hex: %s", fp);
    aws_ec2_call_release(&c);
    cr_assert_eq(mutating(), 1);
}

Test(aws_ec2, request_limit_exceeded_is_retried_with_backoff)
{
    struct aws_ec2_call c = { 0 };

    cr_assert_eq(admin("PATCH", "/_sim/objects/ec2/config/faults",
                       "{\"attrs\":{\"throttle\":{\"DescribeVpcs\":2}}}"),
                 200);
    aws_ec2_call_init(&c, "DescribeVpcs");
    cr_assert_eq(call_sync(&c, 0), 0, "%s", c.err.msg);
    cr_assert_eq(c.http.attempts, 3);
    aws_ec2_call_release(&c);
    /* Other errors are not retried: one attempt, code and message kept. */
    aws_ec2_call_init(&c, "DescribeVpcs");
    aws_query_add(&c.q, "VpcId.1", "vpc-00000000000000000");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_eq(c.http.attempts, 1);
    cr_assert_str_eq(c.error.code, "InvalidVpcID.NotFound");
    cr_assert_not_null(strstr(c.err.msg, "vpc-00000000000000000"));
    aws_ec2_call_release(&c);
}

Test(aws_ec2, throttle_codes_are_the_documented_ones)
{
    cr_assert(aws_ec2_code_is_throttle("RequestLimitExceeded"));
    cr_assert(aws_ec2_code_is_throttle("Unavailable"));
    cr_assert(aws_ec2_code_is_throttle("InternalError"));
    cr_assert(aws_ec2_code_is_throttle("ServiceUnavailable"));
    cr_assert_not(aws_ec2_code_is_throttle("InvalidGroup.NotFound"));
    cr_assert_not(aws_ec2_code_is_throttle("DependencyViolation"));
}

Test(aws_ec2, unknown_filter_names_are_refused_like_ec2)
{
    struct aws_ec2_call c = { 0 };

    aws_ec2_call_init(&c, "DescribeVpcs");
    aws_query_add(&c.q, "Filter.1.Name", "is-default");
    aws_query_add(&c.q, "Filter.1.Value.1", "true");
    cr_assert_eq(call_sync(&c, 0), KC_EREMOTE);
    cr_assert_str_eq(c.error.code, "InvalidParameterValue");
    cr_assert_not_null(strstr(c.error.message, "'is-default'"));
    aws_ec2_call_release(&c);
}

Test(aws_ec2, no_credentials_anywhere_fails_naming_each_source)
{
    /* Nothing listens on the discard port of loopback. */
    char *env[] = { "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
                    "AWS_CONFIG_FILE=/nonexistent",
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9",
                    NULL };
    struct aws_ec2_config ec = {
        .http = http, .endpoint = ec2_url, .region = "us-east-1", .env = env
    };
    struct aws_ec2_call c = { 0 };
    struct kc_err err = { 0 };

    aws_ec2_free(ec2);
    cr_assert_eq(aws_ec2_new(&ec, &ec2, &err), 0, "%s", err.msg);
    aws_ec2_call_init(&c, "DescribeVpcs");
    cr_assert_lt(call_sync(&c, 0), 0);
    cr_assert_not_null(strstr(c.err.msg, "none in the environment or "
                                         "profile 'default'"),
                       "%s", c.err.msg);
    cr_assert_not_null(strstr(c.err.msg, "instance metadata token"), "%s",
                       c.err.msg);
    cr_assert_not_null(strstr(c.err.msg, "http://127.0.0.1:9"), "%s",
                       c.err.msg);
    aws_ec2_call_release(&c);
    cr_assert_eq(mutating(), 0);
}

Test(aws_ec2, imds_disabled_and_no_keys_is_refused_up_front)
{
    char *env[] = { "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
                    "AWS_CONFIG_FILE=/nonexistent",
                    "AWS_EC2_METADATA_DISABLED=true", NULL };
    struct aws_ec2_config ec = {
        .http = http, .endpoint = ec2_url, .region = "us-east-1", .env = env
    };
    struct aws_ec2 *other = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_ec2_new(&ec, &other, &err), KC_ENOENT);
    cr_assert_null(other);
    cr_assert_not_null(strstr(err.msg, "AWS_EC2_METADATA_DISABLED"), "%s",
                       err.msg);
}
