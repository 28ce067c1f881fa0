/* resources/aws/ami.c: aws.ami, a data source: the newest available image
 * of an owner whose name matches a pattern (the guide's AMI lookup: owner
 * amazon, al2023-ami-2023.*-x86_64, state available, newest CreationDate;
 * DescribeImages in the EC2 API reference). Read at plan time, so the plan
 * shows the AMI the instance will use. */
#include "resources/aws/kinds.h"

#include <libxml/tree.h>

static const struct kc_field ami_fields[] = {
    { "owner", KC_VALUE_STRING, 0 },
    { "name_pattern", KC_VALUE_STRING, 0 },
    { "architecture", KC_VALUE_STRING, 0 },
    { "image_id", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "name", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "creation_date", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL },
};

static void on_images(struct aws_job *j, int status)
{
    const char *best = NULL, *best_date = "", *best_name = NULL;
    const char *pattern = aws_desired_str(j->op, "name_pattern");

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    /* ISO 8601 dates of one format compare as strings. */
    for (struct _xmlNode *it = aws_xml_child(j->call.root, "imagesSet/item");
         it; it = aws_xml_next(it)) {
        const char *d = aws_xml_text(it, "creationDate");
        const char *id = aws_xml_text(it, "imageId");
        const char *state = aws_xml_text(it, "imageState");

        if (!d || !id || !state || strcmp(state, "available") != 0)
            continue;
        if (strcmp(d, best_date) > 0) {
            best = id;
            best_date = d;
            best_name = aws_xml_text(it, "name");
        }
    }
    if (!best) {
        aws_job_fail(j, KC_ENOENT,
                     "no available image named '%s' of owner '%s' in %s",
                     pattern ? pattern : "", aws_desired_str(j->op, "owner"),
                     aws_ec2_region(j->prov->ec2));
        return;
    }
    kc_op_set_output(j->op, "image_id", kc_value_new_str(best));
    kc_op_set_output(j->op, "name",
                     kc_value_new_str(best_name ? best_name : ""));
    kc_op_set_output(j->op, "creation_date", kc_value_new_str(best_date));
    kc_op_set_id(j->op, best);
    aws_job_finish(j, 0);
}

static int ami_read(struct kc_op *op)
{
    struct aws_job *j = aws_job_new(op);
    const char *owner = aws_desired_str(op, "owner");
    const char *pattern = aws_desired_str(op, "name_pattern");
    const char *arch = aws_desired_str(op, "architecture");

    aws_ec2_call_init(&j->call, "DescribeImages");
    aws_query_add(&j->call.q, "Owner.1", owner ? owner : "amazon");
    aws_query_add(&j->call.q, "Filter.1.Name", "name");
    aws_query_add(&j->call.q, "Filter.1.Value.1",
                  pattern ? pattern : "al2023-ami-2023.*-x86_64");
    aws_query_add(&j->call.q, "Filter.2.Name", "state");
    aws_query_add(&j->call.q, "Filter.2.Value.1", "available");
    aws_query_add(&j->call.q, "Filter.3.Name", "architecture");
    aws_query_add(&j->call.q, "Filter.3.Value.1", arch ? arch : "x86_64");
    aws_job_send(j, 0, on_images);
    return 0;
}

const struct kc_resource_type kc_aws_ami = {
    .kind = "aws.ami",
    .fields = ami_fields,
    .flags = KC_KIND_DATA,
    .read = ami_read,
};
