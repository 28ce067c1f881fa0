/* resources/aws/security_group.c: aws.security_group, the Nitro host's own
 * security group: in the default VPC (or the given one), tagged with
 * kmsctl's ownership tags, ingress 22/tcp only from the manifest's CIDRs (no
 * CIDR: no SSH rule). Unlike the guide's deploy_host.sh, the VPC's default
 * group is never touched. A revoked rule is authorised again, a rule added
 * outside for port 22 revoked; tags set back. Deleting retries
 * DependencyViolation while a terminated instance's interface goes away.
 */
#include "resources/aws/kinds.h"

#include <libxml/tree.h>

static const struct kc_field sg_fields[] = {
    { "group_name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "description", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "vpc_id", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "ssh_from", KC_VALUE_LIST, 0 },
    { "tags", KC_VALUE_MAP, 0 },
    { "group_id", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL },
};

enum {
    STEP_AUTHORIZE,
    STEP_REVOKE,
    STEP_TAGS,
    STEP_DONE
};

/* The CIDRs allowed to port 22/tcp by the group ITEM. */
static struct kc_value *ssh_cidrs(struct _xmlNode *item)
{
    struct kc_value *l = kc_value_new_list();

    for (struct _xmlNode *p = aws_xml_child(item, "ipPermissions/item"); p;
         p = aws_xml_next(p)) {
        const char *proto = aws_xml_text(p, "ipProtocol");
        const char *from = aws_xml_text(p, "fromPort");
        const char *to = aws_xml_text(p, "toPort");

        if (!proto || strcmp(proto, "tcp") != 0 || !from || !to ||
            strcmp(from, "22") != 0 || strcmp(to, "22") != 0)
            continue;
        for (struct _xmlNode *r = aws_xml_child(p, "ipRanges/item"); r;
             r = aws_xml_next(r)) {
            const char *cidr = aws_xml_text(r, "cidrIp");

            if (cidr)
                kc_value_list_push(l, kc_value_new_str(cidr));
        }
    }
    return l;
}

static bool list_has(const struct kc_value *l, const char *s)
{
    for (size_t i = 0; l && i < kc_value_list_len(l); i++) {
        const char *v = kc_value_reveal(kc_value_list_get(l, i), NULL);

        if (v && strcmp(v, s) == 0)
            return true;
    }
    return false;
}

/* LIVE reordered like DESIRED (so equal sets compare equal), extras last. */
static struct kc_value *ordered_like(struct kc_value *live,
                                     const struct kc_value *desired)
{
    struct kc_value *out = kc_value_new_list();

    for (size_t i = 0; desired && i < kc_value_list_len(desired); i++) {
        const char *v = kc_value_reveal(kc_value_list_get(desired, i), NULL);

        if (v && list_has(live, v) && !list_has(out, v))
            kc_value_list_push(out, kc_value_new_str(v));
    }
    for (size_t i = 0; i < kc_value_list_len(live); i++) {
        const char *v = kc_value_reveal(kc_value_list_get(live, i), NULL);

        if (v && !list_has(out, v))
            kc_value_list_push(out, kc_value_new_str(v));
    }
    kc_value_free(live);
    return out;
}

static void observe_item(struct aws_job *j, struct _xmlNode *it)
{
    struct kc_op *op = j->op;
    const char *id = aws_xml_text(it, "groupId");
    const char *vpc = aws_xml_text(it, "vpcId");
    struct kc_value *obs = kc_value_new_map(), *tags;

    kc_value_map_set(obs, "group_name",
                     kc_value_new_str(aws_xml_text(it, "groupName")
                                          ? aws_xml_text(it, "groupName")
                                          : ""));
    kc_value_map_set(obs, "description",
                     kc_value_new_str(aws_xml_text(it, "groupDescription")
                                          ? aws_xml_text(it, "groupDescription")
                                          : ""));
    if (kc_op_desired(op, "vpc_id"))
        kc_value_map_set(obs, "vpc_id", kc_value_new_str(vpc ? vpc : ""));
    kc_value_map_set(
        obs, "ssh_from",
        ordered_like(ssh_cidrs(it), kc_op_desired(op, "ssh_from")));
    tags = aws_tags_from_xml(it);
    kc_value_map_set(obs, "tags",
                     aws_tags_managed(tags, kc_op_desired(op, "tags")));
    kc_value_free(tags);
    kc_value_map_set(obs, "group_id", kc_value_new_str(id ? id : ""));
    kc_op_set_observed(op, obs);
    kc_op_set_id(op, id ? id : "");
    kc_op_set_output(op, "group_id", kc_value_new_str(id ? id : ""));
    kc_op_set_output(op, "vpc_id", kc_value_new_str(vpc ? vpc : ""));
}

/* --- observe ----------------------------------------------------------- */

static void on_observe(struct aws_job *j, int status)
{
    struct _xmlNode *it;

    if (status == KC_EREMOTE &&
        strcmp(j->call.error.code, "InvalidGroup.NotFound") == 0) {
        aws_job_finish(j, 0); /* deleted outside: absent */
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    for (it = aws_xml_child(j->call.root, "securityGroupInfo/item"); it;
         it = aws_xml_next(it)) {
        /* Found by name: ours only if it carries our tags. */
        if (kc_op_id(j->op) || aws_owned(j, it))
            break;
    }
    if (it)
        observe_item(j, it);
    aws_job_finish(j, 0);
}

static int sg_observe(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const char *id = kc_op_id(op);

    aws_ec2_call_init(&j->call, "DescribeSecurityGroups");
    if (id && *id) {
        aws_query_add(&j->call.q, "GroupId.1", id);
    } else {
        aws_query_add(&j->call.q, "Filter.1.Name", "group-name");
        aws_query_add(&j->call.q, "Filter.1.Value.1",
                      aws_desired_str(op, "group_name"));
        aws_query_add(&j->call.q, "Filter.2.Name", "tag:" AWS_TAG_ADDRESS);
        aws_query_add(&j->call.q, "Filter.2.Value.1", kc_op_address(op));
    }
    aws_job_send(j, 0, on_observe);
    return 0;
}

/* --- rules and tags (create and update) -------------------------------- */

static void next_step(struct aws_job *j, int status);

/* Adds IpPermissions.1 for 22/tcp from each CIDR of WANT not in HAVE (when
 * ADD), or of HAVE not in WANT (when not ADD). Returns how many. */
static size_t add_rules(struct aws_query *q, const struct kc_value *want,
                        const struct kc_value *have, bool add)
{
    const struct kc_value *from = add ? want : have;
    const struct kc_value *other = add ? have : want;
    size_t n = 0;

    aws_query_add(q, "IpPermissions.1.IpProtocol", "tcp");
    aws_query_add(q, "IpPermissions.1.FromPort", "22");
    aws_query_add(q, "IpPermissions.1.ToPort", "22");
    for (size_t i = 0; from && i < kc_value_list_len(from); i++) {
        const char *c = kc_value_reveal(kc_value_list_get(from, i), NULL);

        if (!c || list_has(other, c))
            continue;
        n++;
        aws_query_addf(q, c, "IpPermissions.1.IpRanges.%zu.CidrIp", n);
        if (add)
            aws_query_addf(q, "ssh (kmsctl)",
                           "IpPermissions.1.IpRanges.%zu.Description", n);
    }
    return n;
}

/* Runs the remaining steps: authorise, revoke, tags; then finishes with the
 * group observed again. */
static void run_step(struct aws_job *j)
{
    struct kc_op *op = j->op;
    const struct kc_value *want = kc_op_desired(op, "ssh_from");
    const struct kc_value *have =
        j->values ? kc_value_map_get(j->values, "ssh_from") : NULL;
    const struct kc_value *tags = kc_op_desired(op, "tags");
    const struct kc_value *have_tags =
        j->values ? kc_value_map_get(j->values, "tags") : NULL;

    aws_ec2_call_release(&j->call);
    for (; j->step < STEP_DONE; j->step++) {
        if (j->step == STEP_AUTHORIZE || j->step == STEP_REVOKE) {
            bool add = j->step == STEP_AUTHORIZE;

            aws_ec2_call_init(&j->call, add ? "AuthorizeSecurityGroupIngress"
                                            : "RevokeSecurityGroupIngress");
            aws_query_add(&j->call.q, "GroupId", j->id);
            if (add_rules(&j->call.q, want, have, add) == 0) {
                aws_ec2_call_release(&j->call);
                continue;
            }
            j->step++;
            kc_op_progress(op, "%s ssh rules",
                           add ? "authorising" : "revoking");
            /* Right after CreateSecurityGroup the id may not be known yet. */
            aws_job_send(j, AWS_EC2_EVENTUAL, next_step);
            return;
        }
        if (j->step == STEP_TAGS) {
            size_t n = 0;

            aws_ec2_call_init(&j->call, "CreateTags");
            aws_query_add(&j->call.q, "ResourceId.1", j->id);
            for (size_t i = 0; tags && i < kc_value_map_len(tags); i++) {
                const char *k = kc_value_map_key(tags, i);
                const struct kc_value *v = kc_value_map_val(tags, i);
                const struct kc_value *h =
                    have_tags ? kc_value_map_get(have_tags, k) : NULL;

                if (h && kc_value_equal(h, v))
                    continue;
                n++;
                aws_query_addf(&j->call.q, k, "Tag.%zu.Key", n);
                aws_query_addf(&j->call.q, kc_value_reveal(v, NULL),
                               "Tag.%zu.Value", n);
            }
            if (n == 0) {
                aws_ec2_call_release(&j->call);
                continue;
            }
            j->step++;
            aws_job_send(j, AWS_EC2_EVENTUAL, next_step);
            return;
        }
    }
    /* Read it back for the state. */
    aws_ec2_call_init(&j->call, "DescribeSecurityGroups");
    aws_query_add(&j->call.q, "GroupId.1", j->id);
    j->step = STEP_DONE + 1;
    aws_job_send(j, AWS_EC2_EVENTUAL, next_step);
}

static void next_step(struct aws_job *j, int status)
{
    struct _xmlNode *it;

    if (status < 0) {
        /* A retried call may meet its own first success. */
        if (status == KC_EREMOTE &&
            (strcmp(j->call.error.code, "InvalidPermission.Duplicate") == 0 ||
             strcmp(j->call.error.code, "InvalidPermission.NotFound") == 0)) {
            run_step(j);
            return;
        }
        aws_job_fail_call(j, status);
        return;
    }
    if (j->step <= STEP_DONE) {
        run_step(j);
        return;
    }
    it = aws_xml_child(j->call.root, "securityGroupInfo/item");
    if (!it) {
        aws_job_fail(j, KC_ENOENT, "security group '%s' vanished", j->id);
        return;
    }
    observe_item(j, it);
    aws_job_finish(j, 0);
}

/* --- create ------------------------------------------------------------ */

static void on_created(struct aws_job *j, int status);

static void on_duplicate_lookup(struct aws_job *j, int status)
{
    struct _xmlNode *it;

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    it = aws_xml_child(j->call.root, "securityGroupInfo/item");
    if (!it || !aws_owned(j, it)) {
        aws_job_fail(j, KC_ECONFLICT,
                     "security group '%s' exists in %s and is not kmsctl's "
                     "(no %s=%s tag): rename it or delete it",
                     aws_desired_str(j->op, "group_name"), j->aux,
                     AWS_TAG_ADDRESS, kc_op_address(j->op));
        return;
    }
    /* Ours already (a retried create): carry on with its rules. */
    (void)kc_snprintf(j->id, sizeof(j->id), "%s", aws_xml_text(it, "groupId"));
    j->values = kc_value_new_map();
    kc_value_map_set(j->values, "ssh_from", ssh_cidrs(it));
    kc_value_map_set(j->values, "tags", aws_tags_from_xml(it));
    j->step = STEP_AUTHORIZE;
    run_step(j);
}

static void on_created(struct aws_job *j, int status)
{
    const char *id;

    if (status == KC_EREMOTE &&
        strcmp(j->call.error.code, "InvalidGroup.Duplicate") == 0) {
        aws_ec2_call_release(&j->call);
        aws_ec2_call_init(&j->call, "DescribeSecurityGroups");
        aws_query_add(&j->call.q, "Filter.1.Name", "group-name");
        aws_query_add(&j->call.q, "Filter.1.Value.1",
                      aws_desired_str(j->op, "group_name"));
        aws_query_add(&j->call.q, "Filter.2.Name", "vpc-id");
        aws_query_add(&j->call.q, "Filter.2.Value.1", j->aux);
        aws_job_send(j, 0, on_duplicate_lookup);
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    id = aws_xml_text(j->call.root, "groupId");
    if (!id || !*id) {
        aws_job_fail(j, KC_EPARSE, "ec2 CreateSecurityGroup: no groupId");
        return;
    }
    (void)kc_snprintf(j->id, sizeof(j->id), "%s", id);
    kc_op_set_id(j->op, id);
    j->values = kc_value_new_map();
    /* Tags were set by TagSpecification; new groups have no ingress. */
    kc_value_map_set(j->values, "tags",
                     kc_value_dup(kc_op_desired(j->op, "tags")));
    j->step = STEP_AUTHORIZE;
    run_step(j);
}

static void create_in_vpc(struct aws_job *j)
{
    struct kc_op *op = j->op;

    aws_ec2_call_release(&j->call);
    aws_ec2_call_init(&j->call, "CreateSecurityGroup");
    aws_query_add(&j->call.q, "GroupName", aws_desired_str(op, "group_name"));
    aws_query_add(&j->call.q, "GroupDescription",
                  aws_desired_str(op, "description"));
    aws_query_add(&j->call.q, "VpcId", j->aux);
    aws_query_tag_spec(&j->call.q, 1, "security-group",
                       kc_op_desired(op, "tags"));
    aws_job_send(j, 0, on_created);
}

static void on_default_vpc(struct aws_job *j, int status)
{
    const char *vpc;

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    vpc = aws_xml_text(j->call.root, "vpcSet/item/vpcId");
    if (!vpc) {
        aws_job_fail(j, KC_ENOENT,
                     "no default VPC in %s: set nitro_hosts.<host>.vpc_id",
                     aws_ec2_region(j->prov->ec2));
        return;
    }
    (void)kc_snprintf(j->aux, sizeof(j->aux), "%s", vpc);
    create_in_vpc(j);
}

static int sg_create(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const char *vpc = aws_desired_str(op, "vpc_id");

    if (vpc) {
        (void)kc_snprintf(j->aux, sizeof(j->aux), "%s", vpc);
        create_in_vpc(j);
        return 0;
    }
    aws_ec2_call_init(&j->call, "DescribeVpcs");
    aws_query_add(&j->call.q, "Filter.1.Name", "isDefault");
    aws_query_add(&j->call.q, "Filter.1.Value.1", "true");
    aws_job_send(j, 0, on_default_vpc);
    return 0;
}

/* --- update ------------------------------------------------------------ */

static int sg_update(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const struct kc_value *have = kc_op_observed(op, "ssh_from");
    const struct kc_value *tags = kc_op_observed(op, "tags");

    (void)kc_snprintf(j->id, sizeof(j->id), "%s",
                      kc_op_id(op) ? kc_op_id(op) : "");
    j->values = kc_value_new_map();
    kc_value_map_set(j->values, "ssh_from",
                     have ? kc_value_dup(have) : kc_value_new_list());
    kc_value_map_set(j->values, "tags",
                     tags ? kc_value_dup(tags) : kc_value_new_map());
    j->step = STEP_AUTHORIZE;
    run_step(j);
    return 0;
}

/* --- delete ------------------------------------------------------------ */

static void on_deleted(struct aws_job *j, int status)
{
    if (status == KC_EREMOTE &&
        strcmp(j->call.error.code, "InvalidGroup.NotFound") == 0)
        status = 0; /* already gone */
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    aws_job_finish(j, 0);
}

static int sg_delete(struct kc_op *op)
{
    struct aws_job *j;
    const char *id = kc_op_id(op);

    if (!id || !*id)
        return kc_err_set(kc_op_err(op), KC_ENOENT,
                          "no security group id recorded");
    j = aws_job_new(op);
    kc_op_progress(op, "deleting %s (waits for instances to let go)", id);
    aws_ec2_call_init(&j->call, "DeleteSecurityGroup");
    aws_query_add(&j->call.q, "GroupId", id);
    aws_job_send(j, AWS_EC2_DEPENDENCY, on_deleted);
    return 0;
}

const struct kc_resource_type kc_aws_security_group = {
    .kind = "aws.security_group",
    .fields = sg_fields,
    .observe = sg_observe,
    .create = sg_create,
    .update = sg_update,
    .delete = sg_delete,
    .list = aws_list,
};
