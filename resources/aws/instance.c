/* resources/aws/instance.c: aws.instance, the Nitro Enclave host.
 *
 * RunInstances (EC2 API reference) with EnclaveOptions.Enabled=true,
 * MetadataOptions.HttpTokens=required (IMDSv2 only), the root volume, the
 * host's own security group and key pair, Name and ownership tags, and a
 * cloud-init user-data that does what the guide's deploy_host.sh does over
 * SSH (dstack.md §6.1 step 6) plus the allocator settings of §6.2 step 4:
 * install aws-nitro-enclaves-cli, -devel and docker, write
 * /etc/nitro_enclaves/allocator.yaml, enable and start the allocator and
 * docker, add the login user to the ne and docker groups.
 *
 * Idempotency: the ClientToken is derived from the deployment, the address
 * and a generation number kept in the state, so a retried RunInstances
 * (lost response, crash) never makes a second instance; a terminated
 * instance is re-created with the next generation (EC2 would answer a
 * reused token with the terminated instance). Before RunInstances the token
 * is written to the state as an intent; a crashed run's successor finds the
 * instance by token or by its ownership tags.
 *
 * Drift: stopped -> started; terminated -> re-created; tags set back; AMI,
 * type, enclave settings, key, group or subnet changed -> replace.
 */
#include "resources/aws/kinds.h"

#include <libxml/tree.h>
#include <openssl/evp.h>

#define POLL_FIRST_MS 1000
#define POLL_MAX_MS   5000
#define WAIT_MAX_MS   (15 * 60 * 1000)

static const struct kc_field inst_fields[] = {
    { "ami", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "instance_type", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "enclave_cpu_count", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "enclave_memory_mib", KC_VALUE_INT, KC_FIELD_FORCE_NEW },
    { "root_volume_size_gb", KC_VALUE_INT,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "root_volume_type", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "subnet_id", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "key_name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "security_group_id", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "ssh_user", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "tags", KC_VALUE_MAP, 0 },
    { "state", KC_VALUE_STRING, 0 },
    { "instance_id", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "public_ip", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "private_ip", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL },
};

/* ------------------------------------------------------------------ */
/* User-data. */

/* The cloud-config (cloud-init's documented modules: packages, write_files
 * with defer so the file is written after the packages are installed,
 * runcmd). Built from integers and a validated user name only. */
static char *cloud_config(struct kc_op *op)
{
    const char *user = aws_desired_str(op, "ssh_user");
    int64_t cpus = kc_value_int(kc_op_desired(op, "enclave_cpu_count"), 2);
    int64_t mem = kc_value_int(kc_op_desired(op, "enclave_memory_mib"), 512);

    if (!user)
        user = "ec2-user";
    return kc_xasprintf(
        "#cloud-config\n"
        "# Written by kmsctl for %s: the Nitro Enclaves host.\n"
        "packages:\n"
        "  - aws-nitro-enclaves-cli\n"
        "  - aws-nitro-enclaves-cli-devel\n"
        "  - docker\n"
        "write_files:\n"
        "  - path: /etc/nitro_enclaves/allocator.yaml\n"
        "    owner: root:root\n"
        "    permissions: '0644'\n"
        "    defer: true\n"
        "    content: |\n"
        "      ---\n"
        "      # Resources of the Nitro Enclaves allocator (kmsctl).\n"
        "      memory_mib: %lld\n"
        "      cpu_count: %lld\n"
        "runcmd:\n"
        "  - [usermod, -aG, 'ne,docker', '%s']\n"
        "  - [systemctl, enable, --now, nitro-enclaves-allocator.service]\n"
        "  - [systemctl, enable, --now, docker.service]\n",
        kc_op_address(op), (long long)mem, (long long)cpus, user);
}

static char *base64(const char *s)
{
    size_t len = strlen(s);
    unsigned char *out = kc_xcalloc(1, 4 * (len / 3 + 2));

    EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
    return (char *)out;
}

/* ------------------------------------------------------------------ */
/* Reading an instance. */

static const char *simple_state(const char *s)
{
    if (!s)
        return "unknown";
    if (strcmp(s, "pending") == 0)
        return "running";
    if (strcmp(s, "stopping") == 0)
        return "stopped";
    return s;
}

static bool gone(const char *state)
{
    return state && (strcmp(state, "terminated") == 0 ||
                     strcmp(state, "shutting-down") == 0);
}

/* The settings EC2 cannot tell back (they live in user-data and on the
 * volume): a digest of them rides along as the kmsctl-spec tag, so an
 * instance found without a state record (lost state, a run killed after
 * RunInstances) is adopted only if it was launched with these settings. */
#define SPEC_TAG "kmsctl-spec"
static const char *const SPEC_FIELDS[] = {
    "enclave_cpu_count", "enclave_memory_mib", "root_volume_size_gb",
    "root_volume_type",  "ssh_user",
};

static void spec_digest(struct kc_op *op, char out[24])
{
    struct kc_buf b = { 0 };
    char d[72];

    for (size_t i = 0; i < KC_ARRAY_SIZE(SPEC_FIELDS); i++) {
        const struct kc_value *v = kc_op_desired(op, SPEC_FIELDS[i]);

        if (v && v->type == KC_VALUE_INT)
            (void)kc_buf_addf(&b, "%s=%lld\n", SPEC_FIELDS[i],
                              (long long)kc_value_int(v, 0));
        else
            (void)kc_buf_addf(
                &b, "%s=%s\n", SPEC_FIELDS[i],
                v && kc_value_reveal(v, NULL) ? kc_value_reveal(v, NULL) : "");
    }
    kc_secret_digest(kc_buf_str(&b), b.len, NULL, d);
    kc_buf_release(&b);
    (void)kc_snprintf(out, 24, "%.16s", d + 7);
}

static void observe_item(struct aws_job *j, struct _xmlNode *it)
{
    struct kc_op *op = j->op;
    struct kc_value *obs = kc_value_new_map(), *tags;
    const char *id = aws_xml_text(it, "instanceId");
    const char *pub = aws_xml_text(it, "ipAddress");
    const char *priv = aws_xml_text(it, "privateIpAddress");
    const char *ami = aws_xml_text(it, "imageId");
    const char *v;

#define OBS_STR(field, path)                                        \
    do {                                                            \
        v = aws_xml_text(it, path);                                 \
        kc_value_map_set(obs, field, kc_value_new_str(v ? v : "")); \
    } while (0)
    OBS_STR("ami", "imageId");
    OBS_STR("instance_type", "instanceType");
    if (kc_op_desired(op, "subnet_id"))
        OBS_STR("subnet_id", "subnetId");
    if (kc_op_desired(op, "key_name"))
        OBS_STR("key_name", "keyName");
    OBS_STR("security_group_id", "groupSet/item/groupId");
#undef OBS_STR
    tags = aws_tags_from_xml(it);
    kc_value_map_set(obs, "tags",
                     aws_tags_managed(tags, kc_op_desired(op, "tags")));
    kc_value_free(tags);
    kc_value_map_set(
        obs, "state",
        kc_value_new_str(simple_state(aws_xml_text(it, "instanceState/name"))));
    kc_value_map_set(obs, "instance_id", kc_value_new_str(id ? id : ""));
    kc_value_map_set(obs, "public_ip", kc_value_new_str(pub ? pub : ""));
    kc_value_map_set(obs, "private_ip", kc_value_new_str(priv ? priv : ""));
    /* Enclave settings and the root volume are not in the answer: they are
     * compared with the last applied values. EnclaveOptions off means the
     * instance is not the one we asked for. */
    v = aws_tag(it, SPEC_TAG);
    if (v && !kc_op_prior_all(op)) {
        char want[24];

        spec_digest(op, want);
        /* Not in the state: trust the spec tag, or nothing. */
        for (size_t i = 0;
             strcmp(v, want) == 0 && i < KC_ARRAY_SIZE(SPEC_FIELDS); i++)
            if (kc_op_desired(op, SPEC_FIELDS[i]))
                kc_value_map_set(
                    obs, SPEC_FIELDS[i],
                    kc_value_dup(kc_op_desired(op, SPEC_FIELDS[i])));
    }
    v = aws_xml_text(it, "enclaveOptions/enabled");
    if (!v || strcmp(v, "true") != 0)
        kc_value_map_set(obs, "enclave_cpu_count", kc_value_new_int(0));
    kc_op_set_observed(op, obs);
    kc_op_set_id(op, id ? id : "");
    kc_op_set_output(op, "instance_id", kc_value_new_str(id ? id : ""));
    kc_op_set_output(op, "public_ip", kc_value_new_str(pub ? pub : ""));
    kc_op_set_output(op, "private_ip", kc_value_new_str(priv ? priv : ""));
    kc_op_set_output(op, "ami", kc_value_new_str(ami ? ami : ""));
}

static struct _xmlNode *first_instance(struct aws_ec2_call *c)
{
    return aws_xml_child(c->root, "reservationSet/item/instancesSet/item");
}

static void describe_id(struct aws_job *j, const char *id, aws_job_fn next)
{
    aws_ec2_call_release(&j->call);
    aws_ec2_call_init(&j->call, "DescribeInstances");
    aws_query_add(&j->call.q, "InstanceId.1", id);
    aws_job_send(j, AWS_EC2_EVENTUAL, next);
}

static void wait_running(struct aws_job *j, int status);

/* --- observe ----------------------------------------------------------- */

/* True when J's call failed because its instance does not exist. */
static bool instance_not_found(const struct aws_job *j, int status)
{
    return status == KC_EREMOTE &&
           strcmp(j->call.error.code, "InvalidInstanceID.NotFound") == 0;
}

static void on_observe(struct aws_job *j, int status)
{
    struct _xmlNode *it;

    if (instance_not_found(j, status)) {
        aws_job_finish(j, 0); /* long gone: absent */
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    for (struct _xmlNode *r =
             aws_xml_child(j->call.root, "reservationSet/item");
         r; r = aws_xml_next(r))
        for (it = aws_xml_child(r, "instancesSet/item"); it;
             it = aws_xml_next(it))
            if (!gone(aws_xml_text(it, "instanceState/name"))) {
                observe_item(j, it);
                aws_job_finish(j, 0);
                return;
            }
    aws_job_finish(j, 0); /* terminated (re-created) or absent */
}

static int inst_observe(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const char *id = kc_op_id(op);

    aws_ec2_call_init(&j->call, "DescribeInstances");
    if (id && *id) {
        aws_query_add(&j->call.q, "InstanceId.1", id);
    } else {
        /* Never recorded (lost state, crash): find it by its tags. */
        aws_query_add(&j->call.q, "Filter.1.Name", "tag:" AWS_TAG_ADDRESS);
        aws_query_add(&j->call.q, "Filter.1.Value.1", kc_op_address(op));
        aws_query_add(&j->call.q, "Filter.2.Name", "tag:" AWS_TAG_DEPLOYMENT);
        aws_query_add(&j->call.q, "Filter.2.Value.1", j->prov->deployment);
    }
    aws_job_send(j, 0, on_observe);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Waiting for a state. */

static void poll_state(struct aws_job *j, int status);

static void poll_again(struct aws_job *j, int status)
{
    (void)status;
    describe_id(j, j->id, poll_state);
}

/* J->aux holds the state waited for ("running", "stopped", "terminated");
 * j->step counts the polls. Finishes with the instance observed. */
static void poll_state(struct aws_job *j, int status)
{
    struct _xmlNode *it;
    const char *state;
    uint64_t wait;

    if (instance_not_found(j, status) && strcmp(j->aux, "terminated") == 0) {
        aws_job_finish(j, 0);
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    it = first_instance(&j->call);
    state = it ? aws_xml_text(it, "instanceState/name") : NULL;
    if (state && strcmp(state, j->aux) == 0) {
        aws_job_fn then = j->then;

        if (strcmp(j->aux, "terminated") != 0)
            observe_item(j, it);
        if (then) {
            j->then = NULL;
            then(j, 0);
            return;
        }
        aws_job_finish(j, 0);
        return;
    }
    if (state && strcmp(j->aux, "terminated") != 0 && gone(state)) {
        aws_job_fail(j, KC_EREMOTE,
                     "instance %s is %s while waiting for %s (%s)", j->id,
                     state, j->aux,
                     aws_xml_text(it, "stateReason/message")
                         ? aws_xml_text(it, "stateReason/message")
                         : "no reason given");
        return;
    }
    if (kc_op_is_canceled(j->op) && it && strcmp(j->aux, "terminated") != 0) {
        /* Interrupted: the instance exists, so it goes into the state; the
         * next run waits for it again. */
        observe_item(j, it);
        aws_job_finish(j, 0);
        return;
    }
    if (aws_job_elapsed(j) > WAIT_MAX_MS || kc_op_is_canceled(j->op)) {
        kc_err_set(kc_op_err(j->op),
                   kc_op_is_canceled(j->op) ? KC_ECANCELED : KC_ETIMEDOUT,
                   "instance %s still %s, not %s", j->id,
                   state ? state : "unknown", j->aux);
        if (it && strcmp(j->aux, "terminated") != 0)
            observe_item(j, it); /* it exists: keep it in the state */
        aws_job_finish(j, kc_op_err(j->op)->code);
        return;
    }
    kc_op_progress(j->op, "%s is %s, waiting for %s", j->id,
                   state ? state : "not visible yet", j->aux);
    wait = (uint64_t)POLL_FIRST_MS << (j->step < 3 ? j->step : 3);
    j->step++;
    aws_job_sleep(j, wait < POLL_MAX_MS ? wait : POLL_MAX_MS, poll_again);
}

/* Polls until STATE; then THEN(j, 0), or (NULL) finishes the op. */
static void wait_for(struct aws_job *j, const char *state, aws_job_fn then)
{
    j->then = then;
    (void)kc_snprintf(j->aux, sizeof(j->aux), "%s", state);
    j->step = 0;
    describe_id(j, j->id, poll_state);
}

/* ------------------------------------------------------------------ */
/* Create. */

static const char *generation_key(struct kc_op *op, char *buf, size_t size)
{
    (void)kc_snprintf(buf, size, "%s.generation", kc_op_address(op));
    return buf;
}

/* kmsctl-<first 40 hex digits of sha256(deployment, address, gen)>: at most
 * 64 ASCII characters, as ClientToken requires. */
static void client_token(struct aws_job *j, int64_t gen, char out[64])
{
    char *in = kc_xasprintf("%s\n%s\n%lld", j->prov->deployment,
                            kc_op_address(j->op), (long long)gen);
    char digest[72];

    kc_secret_digest(in, strlen(in), NULL, digest);
    free(in);
    /* digest is "sha256:<64 hex>". */
    (void)kc_snprintf(out, 64, "kmsctl-%.40s", digest + 7);
}

static void on_run(struct aws_job *j, int status);

static void run_instances(struct aws_job *j, int status)
{
    struct kc_op *op = j->op;
    const char *v;
    char *ud, *ud64, num[24], spec[24];
    struct kc_value *tags;
    int64_t size = kc_value_int(kc_op_desired(op, "root_volume_size_gb"), 20);

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    aws_ec2_call_release(&j->call);
    aws_ec2_call_init(&j->call, "RunInstances");
    aws_query_add(&j->call.q, "ImageId", aws_desired_str(op, "ami"));
    aws_query_add(&j->call.q, "InstanceType",
                  aws_desired_str(op, "instance_type"));
    aws_query_add(&j->call.q, "MinCount", "1");
    aws_query_add(&j->call.q, "MaxCount", "1");
    aws_query_add(&j->call.q, "ClientToken", j->id);
    if ((v = aws_desired_str(op, "key_name")))
        aws_query_add(&j->call.q, "KeyName", v);
    if ((v = aws_desired_str(op, "subnet_id")))
        aws_query_add(&j->call.q, "SubnetId", v);
    if ((v = aws_desired_str(op, "security_group_id")))
        aws_query_add(&j->call.q, "SecurityGroupId.1", v);
    aws_query_add(&j->call.q, "EnclaveOptions.Enabled", "true");
    aws_query_add(&j->call.q, "MetadataOptions.HttpTokens", "required");
    aws_query_add(&j->call.q, "MetadataOptions.HttpEndpoint", "enabled");
    aws_query_add(&j->call.q, "BlockDeviceMapping.1.DeviceName", "/dev/xvda");
    snprintf(num, sizeof(num), "%lld", (long long)size);
    aws_query_add(&j->call.q, "BlockDeviceMapping.1.Ebs.VolumeSize", num);
    aws_query_add(&j->call.q, "BlockDeviceMapping.1.Ebs.VolumeType",
                  aws_desired_str(op, "root_volume_type")
                      ? aws_desired_str(op, "root_volume_type")
                      : "gp3");
    aws_query_add(&j->call.q, "BlockDeviceMapping.1.Ebs.DeleteOnTermination",
                  "true");
    tags = kc_value_dup(kc_op_desired(op, "tags"));
    if (!tags)
        tags = kc_value_new_map();
    spec_digest(op, spec);
    kc_value_map_set(tags, SPEC_TAG, kc_value_new_str(spec));
    aws_query_tag_spec(&j->call.q, 1, "instance", tags);
    kc_value_free(tags);
    aws_query_tag_spec(&j->call.q, 2, "volume", kc_op_desired(op, "tags"));
    ud = cloud_config(op);
    ud64 = base64(ud);
    aws_query_add(&j->call.q, "UserData", ud64);
    free(ud);
    free(ud64);
    kc_op_progress(op, "launching (client token %s)", j->id);
    aws_job_send(j, 0, on_run);
}

static void record_intent(struct aws_job *j);

/* Moves the address to the next generation: a new ClientToken, kept in the
 * state's generated values. */
static int next_generation(struct aws_job *j)
{
    char key[256];
    int64_t gen =
        kc_value_int(
            kc_op_generated(j->op, generation_key(j->op, key, sizeof(key))),
            1) +
        1;
    struct kc_value *g = kc_value_new_int(gen);
    int ret = kc_op_generated_put(j->op, key, g, kc_op_err(j->op));

    kc_value_free(g);
    if (ret == 0)
        client_token(j, gen, j->id);
    return ret;
}

/* Tokens of earlier lives tried in one create, at most. */
#define TOKEN_RETRIES 8

static void on_run(struct aws_job *j, int status)
{
    const char *id;
    bool stale;

    /* EC2 keeps a ClientToken "valid for at least 24 hours after the
     * termination of the instance" (EC2 API reference, "Ensuring
     * idempotency"), longer than a terminated instance stays visible to
     * the DescribeInstances lookup before the call. So an address
     * destroyed and applied again (the generation is gone with its record)
     * may send a token of an earlier life: EC2 answers that life's
     * terminated reservation, or IdempotentParameterMismatch when the
     * arguments changed (a new security group). Either way: the next
     * generation, a new token. */
    stale = status < 0
                ? strcmp(j->call.error.code, "IdempotentParameterMismatch") == 0
                : gone(aws_xml_text(j->call.root,
                                    "instancesSet/item/instanceState/name"));
    if (stale && j->step < TOKEN_RETRIES) {
        j->step++;
        kc_op_progress(j->op,
                       "client token %s was used by an earlier "
                       "instance; taking the next one",
                       j->id);
        if (next_generation(j) < 0) {
            aws_job_finish(j, kc_op_err(j->op)->code);
            return;
        }
        record_intent(j);
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    if (stale) {
        aws_job_fail(j, KC_ECONFLICT,
                     "ec2 RunInstances: %d client tokens in a row belong to "
                     "terminated instances (last %s)",
                     TOKEN_RETRIES + 1, j->id);
        return;
    }
    id = aws_xml_text(j->call.root, "instancesSet/item/instanceId");
    if (!id || !*id) {
        aws_job_fail(j, KC_EPARSE, "ec2 RunInstances: no instanceId");
        return;
    }
    (void)kc_snprintf(j->id, sizeof(j->id), "%s", id);
    kc_op_set_id(j->op, id);
    kc_op_intent_clear(j->op);
    wait_for(j, "running", NULL);
}

static void record_intent(struct aws_job *j)
{
    struct kc_value *data = kc_value_new_map();
    int ret;

    kc_value_map_set(data, "client_token", kc_value_new_str(j->id));
    ret = kc_op_intent_put(j->op, "run_instances", data, kc_op_err(j->op));
    kc_value_free(data);
    if (ret < 0) {
        aws_job_finish(j, ret);
        return;
    }
    aws_job_persist(j, run_instances);
}

static void on_token_lookup(struct aws_job *j, int status)
{
    struct _xmlNode *it;

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    it = first_instance(&j->call);
    if (it && !gone(aws_xml_text(it, "instanceState/name"))) {
        /* Launched by an earlier run that did not record it: adopt. */
        (void)kc_snprintf(j->id, sizeof(j->id), "%s",
                          aws_xml_text(it, "instanceId"));
        kc_op_set_id(j->op, j->id);
        kc_op_intent_clear(j->op);
        wait_for(j, "running", NULL);
        return;
    }
    if (it && next_generation(j) < 0) {
        /* This token's instance was terminated: the next generation. */
        aws_job_finish(j, kc_op_err(j->op)->code);
        return;
    }
    record_intent(j);
}

static int inst_create(struct kc_op *op)
{
    struct aws_job *j;
    const struct kc_state_intent *intent = kc_op_intent(op);
    char key[256];
    int64_t gen;

    if (!aws_desired_str(op, "ami") || !aws_desired_str(op, "instance_type"))
        return kc_err_set(kc_op_err(op), KC_EINVAL, "no ami or instance_type");
    j = aws_job_new(op);
    gen = kc_value_int(
        kc_op_generated(op, generation_key(op, key, sizeof(key))), 1);
    client_token(j, gen, j->id);
    (void)intent; /* the token is derived again: same as the intent's */
    aws_ec2_call_init(&j->call, "DescribeInstances");
    aws_query_add(&j->call.q, "Filter.1.Name", "client-token");
    aws_query_add(&j->call.q, "Filter.1.Value.1", j->id);
    aws_job_send(j, 0, on_token_lookup);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Update: set tags back, start a stopped instance. */

static void start_instance(struct aws_job *j, int status)
{
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    aws_ec2_call_release(&j->call);
    aws_ec2_call_init(&j->call, "StartInstances");
    aws_query_add(&j->call.q, "InstanceId.1", j->id);
    kc_op_progress(j->op, "starting %s", j->id);
    aws_job_send(j, 0, wait_running);
}

static void wait_running(struct aws_job *j, int status)
{
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    wait_for(j, "running", NULL);
}

static void update_state(struct aws_job *j, int status)
{
    struct kc_op *op = j->op;
    const char *want = aws_desired_str(op, "state");
    const char *have = kc_value_str(kc_op_observed(op, "state"));

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    if (want && strcmp(want, "running") == 0 && have &&
        strcmp(have, "stopped") == 0) {
        /* A stopping instance cannot be started yet: wait for stopped. */
        wait_for(j, "stopped", start_instance);
        return;
    }
    wait_for(j, "running", NULL);
}

static int inst_update(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const struct kc_value *want = kc_op_desired(op, "tags");
    const struct kc_value *have = kc_op_observed(op, "tags");
    size_t n = 0;

    (void)kc_snprintf(j->id, sizeof(j->id), "%s",
                      kc_op_id(op) ? kc_op_id(op) : "");
    aws_ec2_call_init(&j->call, "CreateTags");
    aws_query_add(&j->call.q, "ResourceId.1", j->id);
    for (size_t i = 0; want && i < kc_value_map_len(want); i++) {
        const char *k = kc_value_map_key(want, i);
        const struct kc_value *v = kc_value_map_val(want, i);
        const struct kc_value *h = have ? kc_value_map_get(have, k) : NULL;

        if (h && kc_value_equal(h, v))
            continue;
        n++;
        aws_query_addf(&j->call.q, k, "Tag.%zu.Key", n);
        aws_query_addf(&j->call.q, kc_value_reveal(v, NULL), "Tag.%zu.Value",
                       n);
    }
    if (n) {
        kc_op_progress(op, "setting %zu tag(s) back", n);
        aws_job_send(j, 0, update_state);
        return 0;
    }
    aws_ec2_call_release(&j->call);
    update_state(j, 0);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Delete: terminate and wait. */

static void on_terminate(struct aws_job *j, int status)
{
    if (instance_not_found(j, status)) {
        aws_job_finish(j, 0);
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    wait_for(j, "terminated", NULL);
}

static int inst_delete(struct kc_op *op)
{
    struct aws_job *j;
    const char *id = kc_op_id(op);

    if (!id || !*id)
        return kc_err_set(kc_op_err(op), KC_ENOENT, "no instance id recorded");
    j = aws_job_new(op);
    (void)kc_snprintf(j->id, sizeof(j->id), "%s", id);
    aws_ec2_call_init(&j->call, "TerminateInstances");
    aws_query_add(&j->call.q, "InstanceId.1", id);
    kc_op_progress(op, "terminating %s", id);
    aws_job_send(j, 0, on_terminate);
    return 0;
}

/* Plan-time note on what a replacement means for the host. */
static void inst_review(struct kc_op *op)
{
    if (kc_op_action(op) == KC_ACTION_REPLACE)
        kc_op_warn(op,
                   "replacing terminates %s: its enclaves stop, and the "
                   "new host has a new IP address",
                   kc_op_id(op) ? kc_op_id(op) : "the instance");
    else if (kc_op_action(op) == KC_ACTION_DELETE)
        kc_op_warn(op, "terminating %s stops its enclaves",
                   kc_op_id(op) ? kc_op_id(op) : "the instance");
}

const struct kc_resource_type kc_aws_instance = {
    .kind = "aws.instance",
    .fields = inst_fields,
    .observe = inst_observe,
    .create = inst_create,
    .update = inst_update,
    .delete = inst_delete,
    .review = inst_review,
    .list = aws_list,
};
