/* tests/fuzz/fuzz_aws.c: what the AWS provider parses from EC2, IMDS and
 * the user's files: EC2 XML success responses walked along the paths the
 * kinds read (resources/aws/{instance,security_group,key_pair,ami}.c), EC2
 * error bodies, IMDS credential JSON, INI files, ISO 8601 and X-Amz-Date
 * times, URI decoding, form bodies, Authorization headers (the simulator's
 * parser) and OpenSSH public key lines. The first input byte picks the
 * parser; the rest is its input.
 *
 * Replayed by ctest (fuzz_aws: driver.c, corpus/aws).
 */
#include "resources/aws/aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const roots[] = {
    "DescribeInstancesResponse",   "DescribeSecurityGroupsResponse",
    "DescribeKeyPairsResponse",    "DescribeImagesResponse",
    "RunInstancesResponse",        "TerminateInstancesResponse",
    "CreateSecurityGroupResponse", "ImportKeyPairResponse",
};

/* Reads every text a path names, checking that texts are terminated. */
static size_t touch(struct _xmlNode *n, const char *path)
{
    const char *t = aws_xml_text(n, path);

    return t ? strlen(t) : 0;
}

static void walk(struct _xmlNode *root)
{
    static const char *const inst_fields[] = {
        "instanceId",
        "ipAddress",
        "privateIpAddress",
        "imageId",
        "instanceType",
        "keyName",
        "instanceState/name",
        "stateReason/message",
        "enclaveOptions/enabled",
        "clientToken",
        "metadataOptions/httpTokens",
    };
    size_t total = 0;

    for (struct _xmlNode *r = aws_xml_child(root, "reservationSet/item"); r;
         r = aws_xml_next(r))
        for (struct _xmlNode *it = aws_xml_child(r, "instancesSet/item"); it;
             it = aws_xml_next(it)) {
            for (size_t i = 0; i < KC_ARRAY_SIZE(inst_fields); i++)
                total += touch(it, inst_fields[i]);
            for (struct _xmlNode *t = aws_xml_child(it, "tagSet/item"); t;
                 t = aws_xml_next(t))
                total += touch(t, "key") + touch(t, "value");
            for (struct _xmlNode *g = aws_xml_child(it, "groupSet/item"); g;
                 g = aws_xml_next(g))
                total += touch(g, "groupId");
        }
    for (struct _xmlNode *it = aws_xml_child(root, "instancesSet/item"); it;
         it = aws_xml_next(it))
        total += touch(it, "instanceId") + touch(it, "currentState/name");
    for (struct _xmlNode *g = aws_xml_child(root, "securityGroupInfo/item"); g;
         g = aws_xml_next(g)) {
        total +=
            touch(g, "groupId") + touch(g, "groupName") + touch(g, "vpcId");
        for (struct _xmlNode *p = aws_xml_child(g, "ipPermissions/item"); p;
             p = aws_xml_next(p)) {
            total += touch(p, "ipProtocol") + touch(p, "fromPort") +
                     touch(p, "toPort");
            for (struct _xmlNode *c = aws_xml_child(p, "ipRanges/item"); c;
                 c = aws_xml_next(c))
                total += touch(c, "cidrIp");
        }
    }
    for (struct _xmlNode *k = aws_xml_child(root, "keySet/item"); k;
         k = aws_xml_next(k))
        total += touch(k, "keyName") + touch(k, "keyFingerprint") +
                 touch(k, "keyPairId");
    for (struct _xmlNode *im = aws_xml_child(root, "imagesSet/item"); im;
         im = aws_xml_next(im))
        total += touch(im, "imageId") + touch(im, "creationDate") +
                 touch(im, "name") + touch(im, "imageState");
    total += touch(root, "requestId") + touch(root, "groupId") +
             touch(root, "keyFingerprint");
    (void)total;
}

static void on_ini(void *data, const char *key, const char *value)
{
    size_t *n = data;

    *n += strlen(key) + strlen(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body;
    size_t len;
    char *s;
    struct kc_err err = { 0 };

    if (size < 1)
        return 0;
    body = (const char *)data + 1;
    len = size - 1;
    s = kc_xstrndup(body, len); /* for the string parsers */
    switch (data[0] % 10) {
    case 0:
    case 1:
    case 2: {
        struct _xmlDoc *doc = NULL;
        const char *root = roots[(data[0] / 10) % KC_ARRAY_SIZE(roots)];
        if (aws_xml_parse(body, len, root, &doc, &err) == 0) {
            if (!aws_xml_root(doc))
                KC_BUG("parsed document without a root");
            walk(aws_xml_root(doc));
            aws_xml_free(doc);
        } else if (doc || !err.msg[0]) {
            KC_BUG("failed parse: document left or no message");
        }
        break;
    }
    case 3: {
        struct aws_error e;
        memset(&e, 0x5a, sizeof(e));
        if (aws_xml_parse_error(body, len, &e, &err) == 0 &&
            (!memchr(e.code, 0, sizeof(e.code)) ||
             !memchr(e.message, 0, sizeof(e.message)) ||
             !memchr(e.request_id, 0, sizeof(e.request_id))))
            KC_BUG("error fields not terminated");
        break;
    }
    case 4: {
        struct aws_creds c = { 0 };
        if (aws_creds_from_imds_json(body, len, &c, &err) == 0 &&
            !memchr(c.access_key, 0, sizeof(c.access_key)))
            KC_BUG("access key not terminated");
        aws_creds_release(&c);
        break;
    }
    case 5: {
        size_t n = 0;
        (void)aws_ini_section(s, "default", on_ini, &n);
        (void)aws_ini_section(s, "profile kmsctl", on_ini, &n);
        break;
    }
    case 6:
        (void)aws_parse_iso8601(s);
        (void)aws_sigv4_parse_amz_date(s);
        break;
    case 7: {
        struct kc_buf out = { 0 };
        (void)aws_uri_decode(&out, body, len, data[0] & 16);
        kc_buf_release(&out);
        struct aws_query q = { 0 };
        (void)aws_query_parse(&q, body, len, &err);
        (void)aws_query_get(&q, "Action");
        aws_query_release(&q);
        break;
    }
    case 8: {
        struct aws_sigv4_auth a;
        memset(&a, 0, sizeof(a));
        (void)aws_sigv4_parse_authorization(s, &a, &err);
        break;
    }
    default: {
        char fp[128];
        const char *type = NULL;
        (void)aws_key_import_fingerprint(s, fp, sizeof(fp), &type);
        break;
    }
    }
    free(s);
    return 0;
}
