/* tests/unit/test_aws_xml.c: EC2 XML responses (namespaces, errors, hostile
 * input) and Query API form encoding (list flattening, round trip). */
#include "resources/aws/aws.h"

#include <criterion/criterion.h>

/* The shape of a DescribeInstances response (EC2 API reference). */
static const char DESCRIBE[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<DescribeInstancesResponse "
    "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n"
    "  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>\n"
    "  <reservationSet>\n"
    "    <item>\n"
    "      <reservationId>r-1234567890abcdef0</reservationId>\n"
    "      <instancesSet>\n"
    "        <item>\n"
    "          <instanceId>i-1234567890abcdef0</instanceId>\n"
    "          <instanceState><code>16</code><name>running</name>"
    "</instanceState>\n"
    "          <tagSet><item><key>Name</key><value>a &amp; b</value></item>"
    "<item><key>x</key><value/></item></tagSet>\n"
    "        </item>\n"
    "        <item><instanceId>i-2</instanceId></item>\n"
    "      </instancesSet>\n"
    "      <other:instanceId xmlns:other=\"urn:other\">i-evil</other:instanceId>"
    "\n"
    "    </item>\n"
    "  </reservationSet>\n"
    "</DescribeInstancesResponse>\n";

Test(aws_xml, reads_nested_items_in_the_ec2_namespace)
{
    struct _xmlDoc *doc = NULL;
    struct _xmlNode *root, *inst, *tag;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse(DESCRIBE, strlen(DESCRIBE),
                               "DescribeInstancesResponse", &doc, &err),
                 0, "%s", err.msg);
    root = aws_xml_root(doc);
    cr_assert_str_eq(aws_xml_text(root, "requestId"),
                     "8f7724cf-496f-496e-8fe3-example");
    inst = aws_xml_child(root, "reservationSet/item/instancesSet/item");
    cr_assert_not_null(inst);
    cr_assert_str_eq(aws_xml_text(inst, "instanceId"), "i-1234567890abcdef0");
    cr_assert_str_eq(aws_xml_text(inst, "instanceState/name"), "running");
    tag = aws_xml_child(inst, "tagSet/item");
    cr_assert_str_eq(aws_xml_text(tag, "value"), "a & b");
    tag = aws_xml_next(tag);
    cr_assert_str_eq(aws_xml_text(tag, "key"), "x");
    cr_assert_str_eq(aws_xml_text(tag, "value"), "");
    cr_assert_null(aws_xml_next(tag));
    inst = aws_xml_next(inst);
    cr_assert_str_eq(aws_xml_text(inst, "instanceId"), "i-2");
    cr_assert_null(aws_xml_text(inst, "instanceState/name"));
    cr_assert_null(aws_xml_next(inst));
    aws_xml_free(doc);
}

Test(aws_xml, elements_of_another_namespace_are_not_seen)
{
    static const char foreign[] =
        "<R xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\" "
        "xmlns:o=\"urn:o\"><o:requestId>evil</o:requestId>"
        "<requestId>good</requestId></R>";
    struct _xmlDoc *doc = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse(foreign, strlen(foreign), "R", &doc, &err), 0);
    cr_assert_str_eq(aws_xml_text(aws_xml_root(doc), "requestId"), "good");
    aws_xml_free(doc);
}

Test(aws_xml, root_outside_the_ec2_namespace_is_refused)
{
    static const char nons[] =
        "<DescribeInstancesResponse><requestId>x</requestId>"
        "</DescribeInstancesResponse>";
    struct _xmlDoc *doc = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse(nons, strlen(nons), "DescribeInstancesResponse",
                               &doc, &err),
                 KC_EPARSE);
    cr_assert_not_null(strstr(err.msg, "namespace"), "%s", err.msg);
    cr_assert_eq(aws_xml_parse(DESCRIBE, strlen(DESCRIBE),
                               "RunInstancesResponse", &doc, &err),
                 KC_EPARSE);
    cr_assert_not_null(strstr(err.msg, "expected <RunInstancesResponse>"));
    cr_assert_null(doc);
}

Test(aws_xml, error_response_gives_code_message_and_request_id)
{
    /* "Example error response" of the EC2 API reference. */
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code>"
        "<Message>The instance ID 'i-1a2b3c4d' does not exist</Message>"
        "</Error></Errors>"
        "<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>";
    struct aws_error e;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse_error(body, strlen(body), &e, &err), 0);
    cr_assert_str_eq(e.code, "InvalidInstanceID.NotFound");
    cr_assert_str_eq(e.message, "The instance ID 'i-1a2b3c4d' does not exist");
    cr_assert_str_eq(e.request_id, "ea966190-f9aa-478e-9ede-example");
}

Test(aws_xml, hostile_documents_fail_cleanly)
{
    static const char *const bad[] = {
        "",
        "<Response><Errors>",
        "not xml at all",
        /* An entity bomb's first step: any DTD is refused. */
        "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;\">]>"
        "<Response><Errors><Error><Code>&b;</Code></Error></Errors>"
        "</Response>",
        "<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/x.dtd\"><Response/>",
        "<Response><Errors><Error><Message>no code</Message></Error>"
        "</Errors></Response>",
        "<Other/>",
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(bad); i++) {
        struct aws_error e;
        struct kc_err err = { 0 };

        cr_assert_lt(aws_xml_parse_error(bad[i], strlen(bad[i]), &e, &err), 0,
                     "accepted '%s'", bad[i]);
        cr_assert(err.msg[0]);
        cr_assert_null(strchr(err.msg, '\n'), "multi-line: %s", err.msg);
    }
}

Test(aws_xml, oversized_body_is_refused_before_parsing)
{
    struct aws_error e;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse_error("<a/>", AWS_XML_MAX_BYTES + 1u, &e, &err),
                 KC_ERANGE);
}

Test(aws_xml, control_characters_in_messages_are_flattened)
{
    static const char body[] =
        "<Response><Errors><Error><Code>X</Code><Message>a&#10;b&#9;c"
        "</Message></Error></Errors><RequestID>r</RequestID></Response>";
    struct aws_error e;
    struct kc_err err = { 0 };

    cr_assert_eq(aws_xml_parse_error(body, strlen(body), &e, &err), 0);
    cr_assert_str_eq(e.message, "a b c");
}

Test(aws_query, flattens_lists_and_encodes_like_sigv4)
{
    struct aws_query q;
    struct kc_buf b = { 0 };

    aws_query_init(&q, "RunInstances");
    aws_query_addf(&q, "instance", "TagSpecification.%d.ResourceType", 1);
    aws_query_addf(&q, "Name", "TagSpecification.%d.Tag.%d.Key", 1, 1);
    aws_query_addf(&q, "enclave host/1", "TagSpecification.%d.Tag.%d.Value", 1,
                   1);
    aws_query_add(&q, "UserData", "I2Nsb3VkLWNvbmZpZwo+=");
    cr_assert_eq(aws_query_encode(&q, &b), 0);
    cr_assert_str_eq(kc_buf_str(&b),
                     "Action=RunInstances&Version=2016-11-15"
                     "&TagSpecification.1.ResourceType=instance"
                     "&TagSpecification.1.Tag.1.Key=Name"
                     "&TagSpecification.1.Tag.1.Value=enclave%20host%2F1"
                     "&UserData=I2Nsb3VkLWNvbmZpZwo%2B%3D");
    cr_assert_str_eq(aws_query_get(&q, "Version"), "2016-11-15");
    cr_assert_null(aws_query_get(&q, "Nope"));
    kc_buf_release(&b);
    aws_query_release(&q);
}

Test(aws_query, parse_round_trips_and_reads_plus_as_space)
{
    struct aws_query q, p;
    struct kc_buf b = { 0 };
    struct kc_err err = { 0 };

    aws_query_init(&q, "CreateTags");
    aws_query_add(&q, "Tag.1.Value", "x = y & z/ü");
    cr_assert_eq(aws_query_encode(&q, &b), 0);
    aws_query_init(&p, NULL);
    cr_assert_eq(aws_query_parse(&p, b.data, b.len, &err), 0, "%s", err.msg);
    cr_assert_eq(p.n, 3);
    cr_assert_str_eq(aws_query_get(&p, "Tag.1.Value"), "x = y & z/ü");
    aws_query_release(&p);
    aws_query_init(&p, NULL);
    cr_assert_eq(aws_query_parse(&p, "a=b+c&&d=", 9, &err), 0);
    cr_assert_str_eq(aws_query_get(&p, "a"), "b c");
    cr_assert_str_eq(aws_query_get(&p, "d"), "");
    aws_query_release(&p);
    aws_query_init(&p, NULL);
    cr_assert_eq(aws_query_parse(&p, "a=%zz", 5, &err), KC_EINVAL);
    cr_assert_eq(aws_query_parse(&p, "noequals", 8, &err), KC_EINVAL);
    cr_assert_eq(aws_query_parse(&p, "a=%00", 5, &err), KC_EINVAL);
    aws_query_release(&p);
    aws_query_release(&q);
    kc_buf_release(&b);
}
