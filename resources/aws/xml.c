/* resources/aws/xml.c: EC2 XML responses read with libxml2, namespaces
 * respected.
 *
 * Success responses are <ActionResponse xmlns="http://ec2.amazonaws.com/doc/
 * 2016-11-15/"> documents; errors are
 * <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/>
 * </Response> without a namespace ("Example error response" in
 * https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
 * Both are hostile input: size-limited, no network, no DTD, no entities.
 */
#include "resources/aws/aws.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#define EC2_XMLNS_PREFIX "http://ec2.amazonaws.com/doc/"

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t len = src ? strlen(src) : 0;

    if (len >= size)
        len = size - 1;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
    /* Keep the message on one line and printable. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = ' ';
}

static int xml_read(const char *body, size_t len, xmlDoc **out,
                    struct kc_err *err)
{
    xmlDoc *doc;

    *out = NULL;
    if (len > AWS_XML_MAX_BYTES)
        return kc_err_set(err, KC_ERANGE, "xml response over %u bytes",
                          AWS_XML_MAX_BYTES);
    if (len == 0)
        return kc_err_set(err, KC_EPARSE, "empty xml response");
    /* No XML_PARSE_NOENT (entities are not substituted) nor DTDLOAD; NONET
     * forbids any fetch; errors are reported here, not printed by libxml2. */
    doc = xmlReadMemory(body, (int)len, "response.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                            XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        char msg[160];

        copy_text(msg, sizeof(msg),
                  e && e->message ? e->message : "parse error");
        /* libxml2 ends its messages with a newline, now a space. */
        for (size_t n = strlen(msg); n > 0 && msg[n - 1] == ' '; n--)
            msg[n - 1] = '\0';
        return kc_err_set(err, KC_EPARSE, "malformed xml response: line %d: %s",
                          e ? e->line : 0, msg);
    }
    /* A DTD can declare entities (billion laughs); EC2 never sends one. */
    if (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        return kc_err_set(err, KC_EPARSE,
                          "xml response has a DTD or no root element");
    }
    *out = doc;
    return 0;
}

static const char *node_ns(const xmlNode *n)
{
    return n->ns && n->ns->href ? (const char *)n->ns->href : "";
}

static bool same_ns(const xmlNode *a, const xmlNode *b)
{
    return strcmp(node_ns(a), node_ns(b)) == 0;
}

static xmlNode *child_named(xmlNode *node, const char *name, size_t len)
{
    for (xmlNode *c = node ? node->children : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && same_ns(c, node) &&
            strlen((const char *)c->name) == len &&
            memcmp(c->name, name, len) == 0)
            return c;
    }
    return NULL;
}

struct _xmlNode *aws_xml_child(struct _xmlNode *node, const char *path)
{
    const char *p = path;

    while (node && *p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);

        node = child_named(node, p, len);
        p = slash ? slash + 1 : p + len;
    }
    return node;
}

struct _xmlNode *aws_xml_next(struct _xmlNode *node)
{
    for (xmlNode *c = node ? node->next : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && same_ns(c, node) &&
            strcmp((const char *)c->name, (const char *)node->name) == 0)
            return c;
    }
    return NULL;
}

const char *aws_xml_text(struct _xmlNode *node, const char *path)
{
    xmlNode *n = aws_xml_child(node, path);

    if (!n)
        return NULL;
    if (!n->children)
        return "";
    if (n->children->next || n->children->type != XML_TEXT_NODE)
        return NULL;
    return (const char *)n->children->content;
}

int aws_xml_parse_error(const char *body, size_t len, struct aws_error *out,
                        struct kc_err *err)
{
    xmlDoc *doc = NULL;
    xmlNode *root, *e;
    const char *code, *rid;
    int ret;

    memset(out, 0, sizeof(*out));
    ret = xml_read(body, len, &doc, err);
    if (ret < 0)
        return ret;
    root = xmlDocGetRootElement(doc);
    if (strcmp((const char *)root->name, "Response") == 0 && !root->ns) {
        e = aws_xml_child(root, "Errors/Error");
        rid = aws_xml_text(root, "RequestID");
    } else if (strcmp((const char *)root->name, "ErrorResponse") == 0) {
        /* The shape of the other Query services (STS, IAM). */
        e = aws_xml_child(root, "Error");
        rid = aws_xml_text(root, "RequestId");
    } else {
        e = NULL;
        rid = NULL;
    }
    code = e ? aws_xml_text(e, "Code") : NULL;
    if (!code || !*code) {
        ret = kc_err_set(err, KC_EPARSE, "not an ec2 error response (<%s>)",
                         (const char *)root->name);
        goto out;
    }
    copy_text(out->code, sizeof(out->code), code);
    copy_text(out->message, sizeof(out->message), aws_xml_text(e, "Message"));
    copy_text(out->request_id, sizeof(out->request_id), rid);
out:
    xmlFreeDoc(doc);
    return ret;
}

int aws_xml_parse(const char *body, size_t len, const char *expect_root,
                  struct _xmlDoc **out, struct kc_err *err)
{
    xmlDoc *doc = NULL;
    xmlNode *root;
    int ret;

    *out = NULL;
    ret = xml_read(body, len, &doc, err);
    if (ret < 0)
        return ret;
    root = xmlDocGetRootElement(doc);
    if (strncmp(node_ns(root), EC2_XMLNS_PREFIX, strlen(EC2_XMLNS_PREFIX))) {
        ret = kc_err_set(err, KC_EPARSE,
                         "<%s> is not in the ec2 namespace ('%s')",
                         (const char *)root->name, node_ns(root));
        goto fail;
    }
    if (expect_root && strcmp((const char *)root->name, expect_root) != 0) {
        ret = kc_err_set(err, KC_EPARSE, "expected <%s>, got <%s>", expect_root,
                         (const char *)root->name);
        goto fail;
    }
    *out = doc;
    return 0;
fail:
    xmlFreeDoc(doc);
    return ret;
}

void aws_xml_free(struct _xmlDoc *doc)
{
    if (doc)
        xmlFreeDoc(doc);
}

struct _xmlNode *aws_xml_root(struct _xmlDoc *doc)
{
    return doc ? xmlDocGetRootElement(doc) : NULL;
}
