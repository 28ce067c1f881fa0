/* tests/sim/svc_ec2.c: the simulated EC2 Query API (POST /, XML responses in
 * the 2016-11-15 namespace, SigV4-verified) and the IMDSv2 endpoints kmsctl's
 * credential chain uses.
 *
 * Served under /ec2/ and /imds/ (the sandbox manifest's endpoints).
 *
 * Behaviour modelled on the EC2 API reference
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/):
 *   - every request is SigV4-signed for service "ec2" with the test-only
 *     credentials of tests/sim/creds/aws-credentials or with temporary ones
 *     handed out by the IMDS role; a wrong signature is SignatureDoesNotMatch,
 *     an X-Amz-Date more than 15 minutes away is RequestExpired, an unknown
 *     key is AuthFailure;
 *   - RunInstances is idempotent on ClientToken: the same token with the same
 *     arguments returns the first reservation, with other arguments
 *     IdempotentParameterMismatch;
 *   - instances go pending -> running after a seeded 300-1200 ms, stopping ->
 *     stopped, shutting-down -> terminated; terminated ones stay visible for
 *     60 s (config/faults "terminated_keep_ms" changes it; their network
 *     interface lingers 0.5-1.5 s, "eni_linger_ms"), then vanish from
 *     every Describe* while their ClientToken stays taken (EC2: "at least 24
 *     hours after the termination"); for 50-250 ms after a create, Describe*
 *     by id answers NotFound (eventual consistency);
 *   - security groups: InvalidGroup.Duplicate, InvalidPermission.Duplicate,
 *     DependencyViolation while a non-terminated instance uses the group;
 *   - key pairs with AWS's fingerprints (CreateKeyPair: SHA-1 of the PKCS#8
 *     private key; ImportKeyPair: MD5 of the DER public key for RSA, base64
 *     SHA-256 of the key blob for ED25519);
 *   - a default VPC with one default subnet per zone, a few Amazon Linux
 *     images of different dates (x86_64 and arm64, AL2 and AL2023, minimal,
 *     one not yet available).
 * Pagination: MaxResults/NextToken for DescribeInstances and
 * DescribeSecurityGroups (config/faults "page_size" makes pages small).
 * Not modelled: pagination of the other Describe* calls, VPCs and subnets other
 * than the default ones, IPv6, Elastic IPs, volumes as objects.
 *
 * Inventory (GET /_sim/inventory): kinds vpc, subnet, image, key_pair,
 * security_group, instance, imds_role. An object's labels are its EC2 tags;
 * PATCH /_sim/objects/ec2/instance/<id> {"attrs":{"state":"stopped"}} stops
 * an instance, {"labels":{"Name":null}} removes a tag,
 * PATCH .../security_group/<id> {"attrs":{"ingress":[]}} revokes every rule,
 * PATCH .../imds_role/<role> {"attrs":{"ttl_seconds":N}} shortens the life of
 * the credentials IMDS hands out, PATCH .../config/faults
 * {"attrs":{"drop_after":{"RunInstances":1}}} drops the answer of the next
 * RunInstances after it ran, {"attrs":{"throttle":{"DescribeVpcs":2}}}
 * answers the next two DescribeVpcs with RequestLimitExceeded.
 */
#include "tests/sim/sim.h"

#include "resources/aws/aws.h"

#include <ctype.h>
#include <fnmatch.h>
#include <libxml/tree.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define EC2_OWNER        "123456789012"
#define EC2_SKEW_S       (15 * 60)
#define TERMINATED_KEEP  60000
#define IMDS_ROLE        "kmsctl-sandbox-role"
#define IMDS_TOKEN_MAX_S 21600

/* tests/sim/creds/aws-credentials: the only long-term key accepted. */
static const char SANDBOX_AKID[] = "AKIDKMSCTLSANDBOX01";
static const char SANDBOX_SECRET[] =
    "kmsctlSandboxSecretKey0000000000000000000";

struct ec2_state {
    char region[32]; /* from the first signed request's scope */
    int nimds_tokens;
};

/* ------------------------------------------------------------------ */
/* Small helpers. */

static char *new_id(struct sim *sim, const char *prefix)
{
    static const char hex[] = "0123456789abcdef";
    char tail[18];

    for (int i = 0; i < 17; i++)
        tail[i] = hex[sim_rand(sim) & 15];
    tail[17] = '\0';
    return kc_xasprintf("%s-%s", prefix, tail);
}

static const char *attr_str(const struct sim_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o->attrs, key, &v) || !v)
        return NULL;
    return json_object_get_string(v);
}

static int64_t attr_int(const struct sim_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o->attrs, key, &v) || !v)
        return 0;
    return json_object_get_int64(v);
}

static void attr_set_str(struct sim_object *o, const char *key, const char *v)
{
    json_object_object_add(o->attrs, key,
                           v ? json_object_new_string(v) : NULL); /* steals */
}

static void attr_set_int(struct sim_object *o, const char *key, int64_t v)
{
    json_object_object_add(o->attrs, key, json_object_new_int64(v));
}

static void iso_now(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

/* ------------------------------------------------------------------ */
/* XML out: libxml2's tree API, so every value is escaped. */

struct xout {
    xmlDoc *doc;
    xmlNode *root;
    xmlNs *ns;
};

static void xout_init(struct xout *x, const char *root, const char *reqid)
{
    x->doc = xmlNewDoc(BAD_CAST "1.0");
    x->root = xmlNewNode(NULL, BAD_CAST root);
    x->ns = xmlNewNs(x->root, BAD_CAST AWS_EC2_XMLNS, NULL);
    xmlSetNs(x->root, x->ns);
    xmlDocSetRootElement(x->doc, x->root);
    xmlNewTextChild(x->root, x->ns, BAD_CAST "requestId", BAD_CAST reqid);
}

static xmlNode *xel(struct xout *x, xmlNode *parent, const char *name)
{
    return xmlNewChild(parent, x->ns, BAD_CAST name, NULL);
}

static void xtext(struct xout *x, xmlNode *parent, const char *name,
                  const char *value)
{
    xmlNewTextChild(parent, x->ns, BAD_CAST name, BAD_CAST(value ? value : ""));
}

static void xint(struct xout *x, xmlNode *parent, const char *name, int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    xtext(x, parent, name, buf);
}

static void xbool(struct xout *x, xmlNode *parent, const char *name, bool v)
{
    xtext(x, parent, name, v ? "true" : "false");
}

static void xout_send(struct xout *x, struct sim_req *req)
{
    xmlChar *mem = NULL;
    int len = 0;

    xmlDocDumpFormatMemoryEnc(x->doc, &mem, &len, "UTF-8", 1);
    sim_resp_body(req, 200, "text/xml;charset=UTF-8", mem, (size_t)len);
    xmlFree(mem);
    xmlFreeDoc(x->doc);
}

static void tagset(struct xout *x, xmlNode *parent, const struct sim_object *o)
{
    xmlNode *set = xel(x, parent, "tagSet");

    json_object_object_foreach (o->labels, k, v) {
        xmlNode *item = xel(x, set, "item");

        xtext(x, item, "key", k);
        xtext(x, item, "value", json_object_get_string(v));
    }
}

/* The error document of the EC2 API reference ("Example error response"). */
static void ec2_error(struct sim_req *req, int status, const char *code,
                      const char *fmt, ...) KC_PRINTF(4, 5);
static void ec2_error(struct sim_req *req, int status, const char *code,
                      const char *fmt, ...)
{
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = xmlNewNode(NULL, BAD_CAST "Response");
    xmlNode *errs, *e;
    char msg[512];
    xmlChar *mem = NULL;
    int len = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    xmlDocSetRootElement(doc, root);
    errs = xmlNewChild(root, NULL, BAD_CAST "Errors", NULL);
    e = xmlNewChild(errs, NULL, BAD_CAST "Error", NULL);
    xmlNewTextChild(e, NULL, BAD_CAST "Code", BAD_CAST code);
    xmlNewTextChild(e, NULL, BAD_CAST "Message", BAD_CAST msg);
    xmlNewTextChild(root, NULL, BAD_CAST "RequestID", BAD_CAST sim_req_id(req));
    xmlDocDumpFormatMemoryEnc(doc, &mem, &len, "UTF-8", 0);
    sim_resp_body(req, status, "text/xml;charset=UTF-8", mem, (size_t)len);
    xmlFree(mem);
    xmlFreeDoc(doc);
}

/* ------------------------------------------------------------------ */
/* Request parameters. */

struct ec2_call {
    struct sim *sim;
    struct sim_req *req;
    struct ec2_state *st;
    struct aws_query q;
};

static const char *param(const struct ec2_call *c, const char *key)
{
    return aws_query_get(&c->q, key);
}

static const char *paramf(const struct ec2_call *c, const char *fmt, ...)
    KC_PRINTF(2, 3);
static const char *paramf(const struct ec2_call *c, const char *fmt, ...)
{
    char key[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    return aws_query_get(&c->q, key);
}

/* Values of PREFIX.1, PREFIX.2, ... (borrowed; caller frees the array). */
static const char **param_list(const struct ec2_call *c, const char *prefix,
                               size_t *n)
{
    const char **out = NULL;
    size_t cap = 0;

    *n = 0;
    for (int i = 1;; i++) {
        const char *v = paramf(c, "%s.%d", prefix, i);

        if (!v)
            break;
        kc_xgrow(&out, &cap, *n + 1, sizeof(*out));
        out[(*n)++] = v;
    }
    return out;
}

static bool in_list(const char **list, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (v && strcmp(list[i], v) == 0)
            return true;
    return false;
}

/* The value a filter name has on an object, or NULL. */
typedef const char *(*filter_value_fn)(const struct sim_object *o,
                                       const char *name, char *buf,
                                       size_t size);

/* EC2 filters: Filter.N.Name with Filter.N.Value.M, OR within a filter, AND
 * between filters; values may use * and ? wildcards. */
static bool filters_match(const struct ec2_call *c, const struct sim_object *o,
                          filter_value_fn get)
{
    for (int i = 1;; i++) {
        const char *name = paramf(c, "Filter.%d.Name", i);
        char buf[256];
        const char *have;
        bool any = false;

        if (!name)
            return true;
        if (strncmp(name, "tag:", 4) == 0) {
            struct json_object *v;

            have = json_object_object_get_ex(o->labels, name + 4, &v)
                       ? json_object_get_string(v)
                       : NULL;
        } else if (strcmp(name, "tag-key") == 0) {
            have = NULL;
            for (int j = 1; !any; j++) {
                const char *want = paramf(c, "Filter.%d.Value.%d", i, j);

                if (!want)
                    break;
                json_object_object_foreach (o->labels, k, v) {
                    (void)v;
                    if (fnmatch(want, k, 0) == 0)
                        any = true;
                }
            }
            if (!any)
                return false;
            continue;
        } else {
            have = get(o, name, buf, sizeof(buf));
        }
        for (int j = 1; have && !any; j++) {
            const char *want = paramf(c, "Filter.%d.Value.%d", i, j);

            if (!want)
                break;
            any = fnmatch(want, have, 0) == 0;
        }
        if (!any)
            return false;
    }
}

/* EC2 refuses a filter name it does not know ("The filter 'x' is invalid");
 * so does the simulator, with the names each Describe* documents that it
 * models. Sends the error and returns false. */
static bool filters_valid(struct ec2_call *c, const char *const *names)
{
    for (int i = 1;; i++) {
        const char *name = paramf(c, "Filter.%d.Name", i);
        bool ok = false;

        if (!name)
            return true;
        ok = strncmp(name, "tag:", 4) == 0 || strcmp(name, "tag-key") == 0;
        for (size_t k = 0; !ok && names[k]; k++)
            ok = strcmp(names[k], name) == 0;
        if (!ok) {
            ec2_error(c->req, 400, "InvalidParameterValue",
                      "The filter '%s' is invalid", name);
            return false;
        }
    }
}

/* Tags of TagSpecification.N for RESOURCE_TYPE into O's labels. Returns false
 * (error sent) on a malformed specification. */
static bool apply_tag_specs(struct ec2_call *c, struct sim_object *o,
                            const char *resource_type)
{
    for (int i = 1;; i++) {
        const char *rt = paramf(c, "TagSpecification.%d.ResourceType", i);

        if (!rt)
            return true;
        if (strcmp(rt, resource_type) != 0)
            continue;
        for (int j = 1;; j++) {
            const char *k = paramf(c, "TagSpecification.%d.Tag.%d.Key", i, j);
            const char *v = paramf(c, "TagSpecification.%d.Tag.%d.Value", i, j);

            if (!k)
                break;
            if (!*k || strncmp(k, "aws:", 4) == 0) {
                ec2_error(c->req, 400, "InvalidParameterValue",
                          "Tag keys starting with 'aws:' are reserved for "
                          "internal use");
                return false;
            }
            json_object_object_add(o->labels, k,
                                   json_object_new_string(v ? v : ""));
        }
    }
}

/* ------------------------------------------------------------------ */
/* The fixed world: default VPC, subnets, images, IMDS role. */

static const struct {
    const char *name, *arch, *date, *state;
    const char *owner_alias;
} IMAGES[] = {
    { "al2023-ami-2023.5.20240624.0-kernel-6.1-x86_64", "x86_64",
      "2024-06-24T20:10:00.000Z", "available", "amazon" },
    { "al2023-ami-2023.6.20241010.0-kernel-6.1-x86_64", "x86_64",
      "2024-10-10T18:32:00.000Z", "available", "amazon" },
    { "al2023-ami-2023.7.20250512.0-kernel-6.1-x86_64", "x86_64",
      "2025-05-12T21:05:00.000Z", "available", "amazon" },
    { "al2023-ami-2023.7.20250601.0-kernel-6.1-arm64", "arm64",
      "2025-06-01T19:40:00.000Z", "available", "amazon" },
    { "al2023-ami-minimal-2023.7.20250610.0-kernel-6.1-x86_64", "x86_64",
      "2025-06-10T17:00:00.000Z", "available", "amazon" },
    { "al2023-ami-2023.8.20250701.0-kernel-6.1-x86_64", "x86_64",
      "2025-07-01T16:00:00.000Z", "pending", "amazon" },
    { "amzn2-ami-hvm-2.0.20250512.0-x86_64-gp2", "x86_64",
      "2025-05-13T03:00:00.000Z", "available", "amazon" },
};

/* Instance types: vCPUs, memory and Nitro Enclaves support ("Nitro
 * Enclaves requirements": Nitro-based, at least 4 vCPUs, not t3/t3a). */
static const struct ec2_type {
    const char *name;
    int vcpus;
    int mem_mib;
    bool enclaves;
} TYPES[] = {
    { "t2.micro", 1, 1024, false },   { "t3.micro", 2, 1024, false },
    { "t3.xlarge", 4, 16384, false }, { "c5.large", 2, 4096, false },
    { "c5.xlarge", 4, 8192, true },   { "c5.2xlarge", 8, 16384, true },
    { "m5.xlarge", 4, 16384, true },  { "m5.2xlarge", 8, 32768, true },
    { "r5.xlarge", 4, 32768, true },  { "c6i.xlarge", 4, 8192, true },
    { "c6a.xlarge", 4, 8192, true },  { "m6i.xlarge", 4, 16384, true },
    { "c7i.xlarge", 4, 8192, true },
};

static const struct ec2_type *find_type(const char *name)
{
    for (size_t i = 0; name && i < KC_ARRAY_SIZE(TYPES); i++)
        if (strcmp(TYPES[i].name, name) == 0)
            return &TYPES[i];
    return NULL;
}

static void make_world(struct sim *sim, const char *region)
{
    struct sim_object *vpc, *o;
    char *id;

    if (sim_obj_next(sim, NULL, "ec2", "vpc"))
        return;
    id = new_id(sim, "vpc");
    vpc = sim_obj_add(sim, "ec2", "vpc", id, id);
    attr_set_str(vpc, "cidrBlock", "172.31.0.0/16");
    json_object_object_add(vpc->attrs, "isDefault",
                           json_object_new_boolean(true));
    attr_set_str(vpc, "state", "available");
    free(id);
    for (int z = 0; z < 3; z++) {
        char az[48], cidr[32];

        snprintf(az, sizeof(az), "%s%c", region, 'a' + z);
        snprintf(cidr, sizeof(cidr), "172.31.%d.0/20", z * 16);
        id = new_id(sim, "subnet");
        o = sim_obj_add(sim, "ec2", "subnet", id, id);
        attr_set_str(o, "vpcId", vpc->name);
        attr_set_str(o, "availabilityZone", az);
        attr_set_str(o, "cidrBlock", cidr);
        attr_set_int(o, "ipBase", z * 16);
        json_object_object_add(o->attrs, "defaultForAz",
                               json_object_new_boolean(true));
        free(id);
    }
    /* The VPC's default security group (kmsctl must never touch it). */
    id = new_id(sim, "sg");
    o = sim_obj_add(sim, "ec2", "security_group", id, id);
    attr_set_str(o, "groupName", "default");
    attr_set_str(o, "description", "default VPC security group");
    attr_set_str(o, "vpcId", vpc->name);
    json_object_object_add(o->attrs, "ingress", json_object_new_array());
    free(id);
    for (size_t i = 0; i < KC_ARRAY_SIZE(IMAGES); i++) {
        id = new_id(sim, "ami");
        o = sim_obj_add(sim, "ec2", "image", id, id);
        attr_set_str(o, "name", IMAGES[i].name);
        attr_set_str(o, "architecture", IMAGES[i].arch);
        attr_set_str(o, "creationDate", IMAGES[i].date);
        attr_set_str(o, "state", IMAGES[i].state);
        attr_set_str(o, "ownerAlias", IMAGES[i].owner_alias);
        free(id);
    }
}

static int ec2_init(struct sim *sim, void **state)
{
    struct ec2_state *st = kc_xcalloc(1, sizeof(*st));
    struct sim_object *role;

    (void)kc_snprintf(st->region, sizeof(st->region), "us-east-1");
    make_world(sim, st->region);
    role = sim_obj_add(sim, "ec2", "imds_role", IMDS_ROLE, NULL);
    if (role)
        attr_set_int(role, "ttl_seconds", 21600);
    /* Per-action faults the generic ones cannot aim at (every EC2 action
     * shares POST /ec2/): {"attrs":{"drop_after":{"RunInstances":1}}} makes
     * the next RunInstances run, then drops its response. */
    role = sim_obj_add(sim, "ec2", "config", "faults", NULL);
    if (role)
        json_object_object_add(role->attrs, "drop_after",
                               json_object_new_object());
    *state = st;
    return 0;
}

static void ec2_fini(struct sim *sim, void *state)
{
    (void)sim;
    free(state);
}

/* ------------------------------------------------------------------ */
/* SigV4 verification. */

static const char *secret_for(struct sim *sim, const char *akid,
                              const char **token, time_t *expires)
{
    struct sim_object *o;

    *token = NULL;
    *expires = 0;
    if (strcmp(akid, SANDBOX_AKID) == 0)
        return SANDBOX_SECRET;
    o = sim_obj_find(sim, "ec2", "imds_credentials", akid);
    if (!o)
        return NULL;
    *token = attr_str(o, "token");
    *expires = (time_t)attr_int(o, "expires");
    return attr_str(o, "secret");
}

static bool verify_sigv4(struct ec2_call *c)
{
    const char *auth = sim_req_header(c->req, "Authorization");
    const char *date = sim_req_header(c->req, "X-Amz-Date");
    struct aws_header hs[AWS_SIGV4_MAX_HEADERS];
    char names[512];
    struct aws_sigv4_auth a;
    struct aws_sigv4_req r = { 0 };
    struct kc_secret *secret = NULL;
    struct kc_err err = { 0 };
    const char *sk, *token, *body;
    char sig[65];
    size_t n = 0, blen = 0;
    time_t t, expires, now = time(NULL);
    bool ok = false;

    if (!auth) {
        ec2_error(c->req, 401, "MissingAuthenticationToken",
                  "The request must contain either a valid (registered) AWS "
                  "access key ID or X.509 certificate.");
        return false;
    }
    if (aws_sigv4_parse_authorization(auth, &a, &err) < 0) {
        ec2_error(c->req, 400, "IncompleteSignature",
                  "The request signature does not conform to AWS standards "
                  "(%s).",
                  err.msg);
        return false;
    }
    sk = secret_for(c->sim, a.access_key, &token, &expires);
    if (!sk) {
        ec2_error(c->req, 401, "AuthFailure",
                  "AWS was not able to validate the provided access "
                  "credentials");
        return false;
    }
    if (token) {
        const char *sent = sim_req_header(c->req, "X-Amz-Security-Token");

        if (!sent || strcmp(sent, token) != 0) {
            ec2_error(c->req, 401, "AuthFailure",
                      "The security token included in the request is "
                      "invalid");
            return false;
        }
        if (expires && now >= expires) {
            ec2_error(c->req, 400, "RequestExpired",
                      "The security token included in the request is "
                      "expired");
            return false;
        }
    }
    t = date ? aws_sigv4_parse_amz_date(date) : -1;
    if (t == -1) {
        ec2_error(c->req, 400, "IncompleteSignature",
                  "Authorization header requires existence of either a "
                  "'X-Amz-Date' or a 'Date' header.");
        return false;
    }
    if (t < now - EC2_SKEW_S || t > now + EC2_SKEW_S) {
        ec2_error(c->req, 400, "RequestExpired", "Request has expired.");
        return false;
    }
    if (strcmp(a.service, "ec2") != 0 || strncmp(a.date8, date, 8) != 0) {
        ec2_error(c->req, 403, "SignatureDoesNotMatch",
                  "Credential should be scoped to correct service: 'ec2' "
                  "and to the date of X-Amz-Date.");
        return false;
    }
    (void)kc_snprintf(names, sizeof(names), "%s", a.signed_headers);
    for (char *p = names, *semi; p && *p; p = semi) {
        semi = strchr(p, ';');
        if (semi)
            *semi++ = '\0';
        if (n == AWS_SIGV4_MAX_HEADERS)
            break;
        hs[n].name = p;
        hs[n].value = sim_req_header(c->req, p);
        if (!hs[n].value)
            hs[n].value = "";
        n++;
    }
    if (!strstr(a.signed_headers, "host")) {
        ec2_error(c->req, 403, "SignatureDoesNotMatch",
                  "'Host' must be a signed header.");
        return false;
    }
    body = sim_req_body(c->req, &blen);
    r.method = sim_req_method(c->req);
    r.path = sim_req_path(c->req);
    r.headers = hs;
    r.nheaders = n;
    r.body = body;
    r.body_len = blen;
    r.amz_date = date;
    r.region = a.region;
    r.service = "ec2";
    secret = kc_secret_new(sk, strlen(sk));
    if (aws_sigv4_signature(&r, secret, sig, &err) == 0 &&
        CRYPTO_memcmp(sig, a.signature, 64) == 0)
        ok = true;
    kc_secret_free(secret);
    if (!ok) {
        ec2_error(c->req, 403, "SignatureDoesNotMatch",
                  "The request signature we calculated does not match the "
                  "signature you provided. Check your AWS Secret Access Key "
                  "and signing method. Consult the service documentation for "
                  "details.");
        return false;
    }
    (void)kc_snprintf(c->st->region, sizeof(c->st->region), "%s", a.region);
    return true;
}

/* ------------------------------------------------------------------ */
/* VPCs, subnets, images. */

/* True when each of the N IDS names an ec2 KIND object (by its id when
 * BY_ID, else by name); else the error CODE "The WHAT 'ID' does not exist"
 * is sent. */
static bool all_exist(struct ec2_call *c, const char *kind, bool by_id,
                      const char **ids, size_t n, const char *code,
                      const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(by_id ? sim_obj_find_id(c->sim, "ec2", kind, ids[i])
                    : sim_obj_find(c->sim, "ec2", kind, ids[i]))) {
            ec2_error(c->req, 400, code, "The %s '%s' does not exist", what,
                      ids[i]);
            return false;
        }
    return true;
}

static const char *vpc_filter(const struct sim_object *o, const char *name,
                              char *buf, size_t size)
{
    (void)buf;
    (void)size;
    /* "isDefault" is the name in DescribeVpcs' filter list. */
    if (strcmp(name, "isDefault") == 0)
        return "true";
    if (strcmp(name, "vpc-id") == 0)
        return o->name;
    if (strcmp(name, "state") == 0)
        return attr_str(o, "state");
    if (strcmp(name, "cidr") == 0)
        return attr_str(o, "cidrBlock");
    return NULL;
}

static void describe_vpcs(struct ec2_call *c)
{
    static const char *const filters[] = { "isDefault", "vpc-id", "state",
                                           "cidr", NULL };
    size_t nids;
    const char **ids = param_list(c, "VpcId", &nids);
    struct xout x;
    xmlNode *set;

    if (!filters_valid(c, filters) ||
        !all_exist(c, "vpc", false, ids, nids, "InvalidVpcID.NotFound",
                   "vpc ID")) {
        free(ids);
        return;
    }
    xout_init(&x, "DescribeVpcsResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "vpcSet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "vpc"));) {
        xmlNode *it;

        if ((nids && !in_list(ids, nids, o->name)) ||
            !filters_match(c, o, vpc_filter))
            continue;
        it = xel(&x, set, "item");
        xtext(&x, it, "vpcId", o->name);
        xtext(&x, it, "ownerId", EC2_OWNER);
        xtext(&x, it, "state", attr_str(o, "state"));
        xtext(&x, it, "cidrBlock", attr_str(o, "cidrBlock"));
        xtext(&x, it, "dhcpOptionsId", "dopt-0a1b2c3d4e5f60718");
        xtext(&x, it, "instanceTenancy", "default");
        xbool(&x, it, "isDefault", true);
        tagset(&x, it, o);
    }
    free(ids);
    xout_send(&x, c->req);
}

static const char *subnet_filter(const struct sim_object *o, const char *name,
                                 char *buf, size_t size)
{
    (void)buf;
    (void)size;
    if (strcmp(name, "vpc-id") == 0)
        return attr_str(o, "vpcId");
    if (strcmp(name, "subnet-id") == 0)
        return o->name;
    if (strcmp(name, "default-for-az") == 0 ||
        strcmp(name, "defaultForAz") == 0)
        return "true";
    if (strcmp(name, "availability-zone") == 0 ||
        strcmp(name, "availabilityZone") == 0)
        return attr_str(o, "availabilityZone");
    return NULL;
}

static void describe_subnets(struct ec2_call *c)
{
    static const char *const filters[] = { "vpc-id",
                                           "subnet-id",
                                           "default-for-az",
                                           "defaultForAz",
                                           "availability-zone",
                                           "availabilityZone",
                                           NULL };
    size_t nids;
    const char **ids = param_list(c, "SubnetId", &nids);
    struct xout x;
    xmlNode *set;

    if (!filters_valid(c, filters) ||
        !all_exist(c, "subnet", false, ids, nids, "InvalidSubnetID.NotFound",
                   "subnet ID")) {
        free(ids);
        return;
    }
    xout_init(&x, "DescribeSubnetsResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "subnetSet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "subnet"));) {
        xmlNode *it;

        if ((nids && !in_list(ids, nids, o->name)) ||
            !filters_match(c, o, subnet_filter))
            continue;
        it = xel(&x, set, "item");
        xtext(&x, it, "subnetId", o->name);
        xtext(&x, it, "state", "available");
        xtext(&x, it, "vpcId", attr_str(o, "vpcId"));
        xtext(&x, it, "cidrBlock", attr_str(o, "cidrBlock"));
        xint(&x, it, "availableIpAddressCount", 4091);
        xtext(&x, it, "availabilityZone", attr_str(o, "availabilityZone"));
        xbool(&x, it, "defaultForAz", true);
        xbool(&x, it, "mapPublicIpOnLaunch", true);
        xtext(&x, it, "ownerId", EC2_OWNER);
        tagset(&x, it, o);
    }
    free(ids);
    xout_send(&x, c->req);
}

static const char *image_filter(const struct sim_object *o, const char *name,
                                char *buf, size_t size)
{
    (void)buf;
    (void)size;
    if (strcmp(name, "name") == 0)
        return attr_str(o, "name");
    if (strcmp(name, "architecture") == 0)
        return attr_str(o, "architecture");
    if (strcmp(name, "state") == 0)
        return attr_str(o, "state");
    if (strcmp(name, "image-id") == 0)
        return o->name;
    if (strcmp(name, "owner-alias") == 0)
        return attr_str(o, "ownerAlias");
    if (strcmp(name, "root-device-type") == 0)
        return "ebs";
    if (strcmp(name, "virtualization-type") == 0)
        return "hvm";
    return NULL;
}

static void describe_images(struct ec2_call *c)
{
    static const char *const filters[] = { "name",
                                           "architecture",
                                           "state",
                                           "image-id",
                                           "owner-alias",
                                           "root-device-type",
                                           "virtualization-type",
                                           NULL };
    size_t nids, nowners;
    const char **ids = param_list(c, "ImageId", &nids);
    const char **owners = param_list(c, "Owner", &nowners);
    struct xout x;
    xmlNode *set;

    if (!filters_valid(c, filters))
        goto out;
    for (size_t i = 0; i < nids; i++)
        if (!sim_obj_find(c->sim, "ec2", "image", ids[i])) {
            ec2_error(c->req, 400, "InvalidAMIID.NotFound",
                      "The image id '[%s]' does not exist", ids[i]);
            goto out;
        }
    xout_init(&x, "DescribeImagesResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "imagesSet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "image"));) {
        xmlNode *it, *bdm, *ebs;
        char loc[256];

        if ((nids && !in_list(ids, nids, o->name)) ||
            (nowners && !in_list(owners, nowners, "amazon") &&
             !in_list(owners, nowners, "137112412989")) ||
            !filters_match(c, o, image_filter))
            continue;
        it = xel(&x, set, "item");
        xtext(&x, it, "imageId", o->name);
        snprintf(loc, sizeof(loc), "amazon/%s", attr_str(o, "name"));
        xtext(&x, it, "imageLocation", loc);
        xtext(&x, it, "imageState", attr_str(o, "state"));
        xtext(&x, it, "imageOwnerId", "137112412989");
        xtext(&x, it, "creationDate", attr_str(o, "creationDate"));
        xbool(&x, it, "isPublic", true);
        xtext(&x, it, "architecture", attr_str(o, "architecture"));
        xtext(&x, it, "imageType", "machine");
        xtext(&x, it, "imageOwnerAlias", attr_str(o, "ownerAlias"));
        xtext(&x, it, "name", attr_str(o, "name"));
        xtext(&x, it, "description", "Amazon Linux AMI");
        xtext(&x, it, "rootDeviceType", "ebs");
        xtext(&x, it, "rootDeviceName", "/dev/xvda");
        bdm = xel(&x, xel(&x, it, "blockDeviceMapping"), "item");
        xtext(&x, bdm, "deviceName", "/dev/xvda");
        ebs = xel(&x, bdm, "ebs");
        xint(&x, ebs, "volumeSize", 8);
        xbool(&x, ebs, "deleteOnTermination", true);
        xtext(&x, ebs, "volumeType", "gp3");
        xtext(&x, it, "virtualizationType", "hvm");
        xbool(&x, it, "enaSupport", true);
        xtext(&x, it, "bootMode", "uefi-preferred");
        xtext(&x, it, "imdsSupport", "v2.0");
    }
    xout_send(&x, c->req);
out:
    free(ids);
    free(owners);
}

/* ------------------------------------------------------------------ */
/* Key pairs. */

static void colon_hex(const unsigned char *md, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 3 * i, 4, "%02x%s", md[i], i + 1 < n ? ":" : "");
}

static const char *key_filter(const struct sim_object *o, const char *name,
                              char *buf, size_t size)
{
    (void)buf;
    (void)size;
    if (strcmp(name, "key-name") == 0)
        return o->name;
    if (strcmp(name, "key-pair-id") == 0)
        return o->id;
    if (strcmp(name, "fingerprint") == 0)
        return attr_str(o, "fingerprint");
    return NULL;
}

static bool key_name_ok(struct ec2_call *c, const char *name)
{
    if (!name || !*name) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter KeyName");
        return false;
    }
    if (strlen(name) > 255) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "Value for parameter KeyName is too long");
        return false;
    }
    if (sim_obj_find(c->sim, "ec2", "key_pair", name)) {
        ec2_error(c->req, 400, "InvalidKeyPair.Duplicate",
                  "The keypair '%s' already exists.", name);
        return false;
    }
    return true;
}

static struct sim_object *key_add(struct ec2_call *c, const char *name,
                                  const char *fp, const char *type)
{
    char *id = new_id(c->sim, "key");
    struct sim_object *o = sim_obj_add(c->sim, "ec2", "key_pair", name, id);
    char now[32];

    free(id);
    iso_now(now);
    attr_set_str(o, "fingerprint", fp);
    attr_set_str(o, "keyType", type);
    attr_set_str(o, "createTime", now);
    return o;
}

static void create_key_pair(struct ec2_call *c)
{
    const char *name = param(c, "KeyName");
    const char *type = param(c, "KeyType");
    const char *fmt = param(c, "KeyFormat");
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char fp[64], *pem = NULL;
    long pemlen;
    int derlen;
    struct sim_object *o;
    struct xout x;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;

    if (!key_name_ok(c, name))
        return;
    if ((type && strcmp(type, "rsa") != 0) || (fmt && strcmp(fmt, "pem"))) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "kmsctl-sim creates only KeyType rsa in KeyFormat pem "
                  "(import ed25519 keys instead)");
        return;
    }
    pkey = EVP_RSA_gen(2048);
    bio = BIO_new(BIO_s_mem());
    p8 = pkey ? EVP_PKEY2PKCS8(pkey) : NULL;
    derlen = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    /* CreateKeyPair (RSA): "SHA-1 digest of the DER encoded private key"
     * (PKCS#8). The material is the PKCS#1 PEM AWS hands out. */
    if (!pkey || !bio || derlen <= 0 ||
        EVP_Digest(der, (size_t)derlen, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        !PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL,
                                              NULL))
        KC_BUG("key generation failed");
    colon_hex(md, mdlen, fp);
    pemlen = BIO_get_mem_data(bio, &pem);
    o = key_add(c, name, fp, "rsa");
    if (!apply_tag_specs(c, o, "key-pair")) {
        sim_obj_remove(c->sim, o);
        goto out;
    }
    attr_set_str(o, "created", "CreateKeyPair");
    xout_init(&x, "CreateKeyPairResponse", sim_req_id(c->req));
    xtext(&x, x.root, "keyName", name);
    xtext(&x, x.root, "keyFingerprint", fp);
    {
        char *mat = kc_xstrndup(pem, (size_t)pemlen);

        /* Trailing newline as in the service's answer. */
        xtext(&x, x.root, "keyMaterial", mat);
        kc_memzero(mat, strlen(mat));
        free(mat);
    }
    xtext(&x, x.root, "keyPairId", o->id);
    tagset(&x, x.root, o);
    xout_send(&x, c->req);
out:
    OPENSSL_clear_free(der, derlen > 0 ? (size_t)derlen : 0);
    PKCS8_PRIV_KEY_INFO_free(p8);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
}

static void import_key_pair(struct ec2_call *c)
{
    const char *name = param(c, "KeyName");
    const char *mat64 = param(c, "PublicKeyMaterial");
    unsigned char *mat = NULL;
    const char *type = NULL;
    char fp[96];
    struct sim_object *o;
    struct xout x;
    int n;

    if (!key_name_ok(c, name))
        return;
    if (!mat64 || !*mat64) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter "
                  "PublicKeyMaterial");
        return;
    }
    /* PublicKeyMaterial is base64 (the Query API's blob encoding) of the
     * OpenSSH public key line. */
    mat = kc_xcalloc(1, strlen(mat64) + 4);
    n = EVP_DecodeBlock(mat, (const unsigned char *)mat64, (int)strlen(mat64));
    if (n <= 0 ||
        !aws_key_import_fingerprint((const char *)mat, fp, sizeof(fp), &type)) {
        ec2_error(c->req, 400, "InvalidKey.Format",
                  "Key is not in valid OpenSSH public key format");
        free(mat);
        return;
    }
    free(mat);
    o = key_add(c, name, fp, type);
    if (!apply_tag_specs(c, o, "key-pair")) {
        sim_obj_remove(c->sim, o);
        return;
    }
    attr_set_str(o, "created", "ImportKeyPair");
    xout_init(&x, "ImportKeyPairResponse", sim_req_id(c->req));
    xtext(&x, x.root, "keyFingerprint", fp);
    xtext(&x, x.root, "keyName", name);
    xtext(&x, x.root, "keyPairId", o->id);
    tagset(&x, x.root, o);
    xout_send(&x, c->req);
}

static void describe_key_pairs(struct ec2_call *c)
{
    static const char *const filters[] = { "key-name", "key-pair-id",
                                           "fingerprint", NULL };
    size_t nnames, nids;
    const char **names = param_list(c, "KeyName", &nnames);
    const char **ids = param_list(c, "KeyPairId", &nids);
    struct xout x;
    xmlNode *set;

    if (!filters_valid(c, filters) ||
        !all_exist(c, "key_pair", false, names, nnames,
                   "InvalidKeyPair.NotFound", "key pair") ||
        !all_exist(c, "key_pair", true, ids, nids, "InvalidKeyPair.NotFound",
                   "key pair"))
        goto out;
    xout_init(&x, "DescribeKeyPairsResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "keySet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "key_pair"));) {
        xmlNode *it;

        if ((nnames && !in_list(names, nnames, o->name)) ||
            (nids && !in_list(ids, nids, o->id)) ||
            !filters_match(c, o, key_filter))
            continue;
        it = xel(&x, set, "item");
        xtext(&x, it, "keyPairId", o->id);
        xtext(&x, it, "keyName", o->name);
        xtext(&x, it, "keyFingerprint", attr_str(o, "fingerprint"));
        xtext(&x, it, "keyType", attr_str(o, "keyType"));
        tagset(&x, it, o);
        xtext(&x, it, "createTime", attr_str(o, "createTime"));
    }
    xout_send(&x, c->req);
out:
    free(names);
    free(ids);
}

static void send_return_true(struct ec2_call *c, const char *root)
{
    struct xout x;

    xout_init(&x, root, sim_req_id(c->req));
    xbool(&x, x.root, "return", true);
    xout_send(&x, c->req);
}

static void delete_key_pair(struct ec2_call *c)
{
    const char *name = param(c, "KeyName"), *id = param(c, "KeyPairId");
    struct sim_object *o = NULL;

    if (name)
        o = sim_obj_find(c->sim, "ec2", "key_pair", name);
    else if (id)
        o = sim_obj_find_id(c->sim, "ec2", "key_pair", id);
    else {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter KeyName or "
                  "KeyPairId");
        return;
    }
    /* DeleteKeyPair succeeds for a key that does not exist. */
    if (o)
        sim_obj_remove(c->sim, o);
    send_return_true(c, "DeleteKeyPairResponse");
}

/* ------------------------------------------------------------------ */
/* Security groups. */

static bool fresh(const struct sim_object *o)
{
    /* Eventual consistency: not visible by id until visibleAt. */
    return (uint64_t)attr_int(o, "visibleAt") > sim_now_ms();
}

static struct sim_object *find_group(struct ec2_call *c, const char *id,
                                     bool for_describe)
{
    struct sim_object *o = sim_obj_find(c->sim, "ec2", "security_group", id);

    if (!o || (for_describe && fresh(o))) {
        ec2_error(c->req, 400, "InvalidGroup.NotFound",
                  "The security group '%s' does not exist", id ? id : "");
        return NULL;
    }
    return o;
}

static const char *group_filter(const struct sim_object *o, const char *name,
                                char *buf, size_t size)
{
    (void)buf;
    (void)size;
    if (strcmp(name, "group-name") == 0)
        return attr_str(o, "groupName");
    if (strcmp(name, "group-id") == 0)
        return o->name;
    if (strcmp(name, "vpc-id") == 0)
        return attr_str(o, "vpcId");
    if (strcmp(name, "description") == 0)
        return attr_str(o, "description");
    return NULL;
}

static void create_security_group(struct ec2_call *c)
{
    const char *name = param(c, "GroupName");
    const char *desc = param(c, "GroupDescription");
    const char *vpc = param(c, "VpcId");
    struct sim_object *v, *o;
    struct json_object *egress, *rule;
    struct xout x;
    char *id;

    if (!name || !*name || !desc) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter %s",
                  !name || !*name ? "GroupName" : "GroupDescription");
        return;
    }
    if (strncasecmp(name, "sg-", 3) == 0 || strcmp(name, "default") == 0) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "Group names may not be in the format sg-* nor 'default'");
        return;
    }
    v = vpc ? sim_obj_find(c->sim, "ec2", "vpc", vpc)
            : sim_obj_next(c->sim, NULL, "ec2", "vpc");
    if (!v) {
        ec2_error(c->req, 400, "InvalidVpcID.NotFound",
                  "The vpc ID '%s' does not exist", vpc ? vpc : "");
        return;
    }
    for (o = NULL; (o = sim_obj_next(c->sim, o, "ec2", "security_group"));)
        if (strcmp(attr_str(o, "groupName"), name) == 0 &&
            strcmp(attr_str(o, "vpcId"), v->name) == 0) {
            ec2_error(c->req, 400, "InvalidGroup.Duplicate",
                      "The security group '%s' already exists for VPC '%s'",
                      name, v->name);
            return;
        }
    id = new_id(c->sim, "sg");
    o = sim_obj_add(c->sim, "ec2", "security_group", id, id);
    free(id);
    attr_set_str(o, "groupName", name);
    attr_set_str(o, "description", desc);
    attr_set_str(o, "vpcId", v->name);
    attr_set_int(o, "visibleAt",
                 (int64_t)(sim_now_ms() + sim_rand_range(c->sim, 50, 250)));
    json_object_object_add(o->attrs, "ingress", json_object_new_array());
    /* New groups allow all outbound traffic. */
    egress = json_object_new_array();
    rule = json_object_new_object();
    json_object_object_add(rule, "protocol", json_object_new_string("-1"));
    json_object_object_add(rule, "cidr", json_object_new_string("0.0.0.0/0"));
    json_object_array_add(egress, rule);
    json_object_object_add(o->attrs, "egress", egress);
    if (!apply_tag_specs(c, o, "security-group")) {
        sim_obj_remove(c->sim, o);
        return;
    }
    xout_init(&x, "CreateSecurityGroupResponse", sim_req_id(c->req));
    xbool(&x, x.root, "return", true);
    xtext(&x, x.root, "groupId", o->name);
    tagset(&x, x.root, o);
    xout_send(&x, c->req);
}

static void perms_xml(struct xout *x, xmlNode *parent, const char *name,
                      struct json_object *rules)
{
    xmlNode *set = xel(x, parent, name);
    size_t n = rules ? json_object_array_length(rules) : 0;

    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(rules, i), *v;
        xmlNode *it = xel(x, set, "item"), *ranges, *rng;
        const char *proto = json_object_get_string(
            json_object_object_get_ex(r, "protocol", &v) ? v : NULL);

        xtext(x, it, "ipProtocol", proto);
        if (strcmp(proto ? proto : "", "-1") != 0) {
            xint(x, it, "fromPort",
                 json_object_object_get_ex(r, "from", &v)
                     ? json_object_get_int(v)
                     : 0);
            xint(x, it, "toPort",
                 json_object_object_get_ex(r, "to", &v) ? json_object_get_int(v)
                                                        : 0);
        }
        xel(x, it, "groups");
        ranges = xel(x, it, "ipRanges");
        rng = xel(x, ranges, "item");
        xtext(x, rng, "cidrIp",
              json_object_object_get_ex(r, "cidr", &v)
                  ? json_object_get_string(v)
                  : "");
        if (json_object_object_get_ex(r, "description", &v) && v)
            xtext(x, rng, "description", json_object_get_string(v));
        xel(x, it, "ipv6Ranges");
        xel(x, it, "prefixListIds");
    }
}

/* Pagination (DescribeInstances, DescribeSecurityGroups): MaxResults 5-1000,
 * not together with ids (InvalidParameterCombination, as EC2), and the
 * NextToken of the previous page. Without MaxResults everything comes in one
 * answer. The config/faults attribute "page_size" makes pages smaller than
 * MaxResults (tests use 1 to make a client follow NextToken). Instances are
 * counted by reservation. Tokens are "<prefix>.<index of the next match>". */
struct pager {
    size_t skip, max, seen, emitted;
    bool on, more;
    const char *prefix;
};

static bool pager_init(struct ec2_call *c, struct pager *p, bool ids,
                       const char *prefix)
{
    const char *max = param(c, "MaxResults"), *tok = param(c, "NextToken");
    struct sim_object *cfg = sim_obj_find(c->sim, "ec2", "config", "faults");
    struct json_object *v;
    size_t plen = strlen(prefix);
    char *end;
    long n;

    memset(p, 0, sizeof(*p));
    p->prefix = prefix;
    if (!max && !tok)
        return true;
    if (ids) {
        ec2_error(c->req, 400, "InvalidParameterCombination",
                  "The parameter MaxResults/NextToken cannot be used with "
                  "ids");
        return false;
    }
    n = max ? strtol(max, &end, 10) : 1000;
    if (max && (*end || n < 5 || n > 1000)) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "Value ( %s ) for parameter maxResults is invalid. "
                  "Expecting a value between 5 and 1000.",
                  max);
        return false;
    }
    p->max = (size_t)n;
    if (cfg && json_object_object_get_ex(cfg->attrs, "page_size", &v) &&
        json_object_get_int(v) > 0 && (size_t)json_object_get_int(v) < p->max)
        p->max = (size_t)json_object_get_int(v);
    if (tok) {
        unsigned long long k;

        if (strncmp(tok, prefix, plen) != 0 || tok[plen] != '.' ||
            !isdigit((unsigned char)tok[plen + 1]) ||
            ((k = strtoull(tok + plen + 1, &end, 10)), *end)) {
            ec2_error(c->req, 400, "InvalidParameterValue",
                      "The nextToken '%s' is invalid", tok);
            return false;
        }
        p->skip = (size_t)k;
    }
    p->on = true;
    return true;
}

/* True when the next match goes into this page. */
static bool pager_take(struct pager *p)
{
    if (!p->on)
        return true;
    if (p->seen++ < p->skip)
        return false;
    if (p->emitted == p->max) {
        p->more = true;
        return false;
    }
    p->emitted++;
    return true;
}

static void pager_end(struct pager *p, struct xout *x)
{
    char tok[64];

    if (!p->more)
        return;
    (void)kc_snprintf(tok, sizeof(tok), "%s.%zu", p->prefix,
                      p->skip + p->emitted);
    xtext(x, x->root, "nextToken", tok);
}

static void describe_security_groups(struct ec2_call *c)
{
    static const char *const filters[] = { "group-name", "group-id", "vpc-id",
                                           "description", NULL };
    size_t nids, nnames;
    const char **ids = param_list(c, "GroupId", &nids);
    const char **names = param_list(c, "GroupName", &nnames);
    struct json_object *v;
    struct xout x;
    struct pager pg;
    xmlNode *set;

    if (!filters_valid(c, filters) ||
        !pager_init(c, &pg, nids || nnames, "sgpage"))
        goto out;
    for (size_t i = 0; i < nids; i++)
        if (!find_group(c, ids[i], true))
            goto out;
    xout_init(&x, "DescribeSecurityGroupsResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "securityGroupInfo");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "security_group"));) {
        xmlNode *it;

        if ((nids && !in_list(ids, nids, o->name)) ||
            (nnames && !in_list(names, nnames, attr_str(o, "groupName"))) ||
            !filters_match(c, o, group_filter) || !pager_take(&pg))
            continue;
        it = xel(&x, set, "item");
        xtext(&x, it, "ownerId", EC2_OWNER);
        xtext(&x, it, "groupId", o->name);
        xtext(&x, it, "groupName", attr_str(o, "groupName"));
        xtext(&x, it, "groupDescription", attr_str(o, "description"));
        xtext(&x, it, "vpcId", attr_str(o, "vpcId"));
        perms_xml(&x, it, "ipPermissions",
                  json_object_object_get_ex(o->attrs, "ingress", &v) ? v
                                                                     : NULL);
        perms_xml(&x, it, "ipPermissionsEgress",
                  json_object_object_get_ex(o->attrs, "egress", &v) ? v : NULL);
        tagset(&x, it, o);
    }
    pager_end(&pg, &x);
    xout_send(&x, c->req);
out:
    free(ids);
    free(names);
}

/* The rules of IpPermissions.N (one per CIDR), validated. */
static struct json_object *parse_perms(struct ec2_call *c)
{
    struct json_object *out = json_object_new_array();

    for (int i = 1;; i++) {
        const char *proto = paramf(c, "IpPermissions.%d.IpProtocol", i);
        const char *from = paramf(c, "IpPermissions.%d.FromPort", i);
        const char *to = paramf(c, "IpPermissions.%d.ToPort", i);

        if (!proto)
            break;
        if (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0 &&
            strcmp(proto, "-1") != 0) {
            ec2_error(c->req, 400, "InvalidParameterValue",
                      "Invalid value '%s' for IP protocol. Unknown protocol.",
                      proto);
            goto fail;
        }
        for (int j = 1;; j++) {
            const char *cidr =
                paramf(c, "IpPermissions.%d.IpRanges.%d.CidrIp", i, j);
            const char *desc =
                paramf(c, "IpPermissions.%d.IpRanges.%d.Description", i, j);
            unsigned a, b, cc, d, len;
            char tail;
            struct json_object *r;

            if (!cidr)
                break;
            if (sscanf(cidr, "%u.%u.%u.%u/%u%c", &a, &b, &cc, &d, &len,
                       &tail) != 5 ||
                a > 255 || b > 255 || cc > 255 || d > 255 || len > 32) {
                ec2_error(c->req, 400, "InvalidParameterValue",
                          "CIDR block %s is malformed", cidr);
                goto fail;
            }
            r = json_object_new_object();
            json_object_object_add(r, "protocol",
                                   json_object_new_string(proto));
            if (strcmp(proto, "-1") != 0) {
                char *end = NULL;
                long f = from ? strtol(from, &end, 10) : -1;
                long t = to ? strtol(to, NULL, 10) : -1;

                if (f < 0 || f > 65535 || t < f || t > 65535) {
                    json_object_put(r);
                    ec2_error(c->req, 400, "InvalidParameterValue",
                              "Invalid port range %s-%s", from ? from : "",
                              to ? to : "");
                    goto fail;
                }
                json_object_object_add(r, "from", json_object_new_int((int)f));
                json_object_object_add(r, "to", json_object_new_int((int)t));
            }
            json_object_object_add(r, "cidr", json_object_new_string(cidr));
            if (desc)
                json_object_object_add(r, "description",
                                       json_object_new_string(desc));
            json_object_array_add(out, r);
        }
    }
    if (json_object_array_length(out) == 0) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter ipPermissions");
        goto fail;
    }
    return out;
fail:
    json_object_put(out);
    return NULL;
}

static bool same_rule(struct json_object *a, struct json_object *b)
{
    static const char *const keys[] = { "protocol", "from", "to", "cidr" };

    for (size_t i = 0; i < KC_ARRAY_SIZE(keys); i++) {
        struct json_object *x = NULL, *y = NULL;

        json_object_object_get_ex(a, keys[i], &x);
        json_object_object_get_ex(b, keys[i], &y);
        if (strcmp(x ? json_object_get_string(x) : "",
                   y ? json_object_get_string(y) : "") != 0)
            return false;
    }
    return true;
}

static int rule_index(struct json_object *rules, struct json_object *r)
{
    for (size_t i = 0; i < json_object_array_length(rules); i++)
        if (same_rule(json_object_array_get_idx(rules, i), r))
            return (int)i;
    return -1;
}

static void change_ingress(struct ec2_call *c, bool add)
{
    const char *id = param(c, "GroupId");
    struct sim_object *o;
    struct json_object *perms, *ingress;
    size_t n;

    if (!id) {
        ec2_error(c->req, 400, "MissingParameter",
                  "kmsctl-sim needs GroupId (GroupName is for EC2-Classic)");
        return;
    }
    o = find_group(c, id, false);
    if (!o || !(perms = parse_perms(c)))
        return;
    if (!json_object_object_get_ex(o->attrs, "ingress", &ingress) ||
        !json_object_is_type(ingress, json_type_array)) {
        ingress = json_object_new_array();
        json_object_object_add(o->attrs, "ingress", ingress);
    }
    n = json_object_array_length(perms);
    /* All or nothing, as the service does. */
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(perms, i), *v;
        int at = rule_index(ingress, r);

        if (add && at >= 0) {
            json_object_object_get_ex(r, "cidr", &v);
            ec2_error(c->req, 400, "InvalidPermission.Duplicate",
                      "the specified rule \"peer: %s, TCP, from port: %d, to "
                      "port: %d, ALLOW\" already exists",
                      json_object_get_string(v),
                      json_object_get_int(json_object_object_get(r, "from")),
                      json_object_get_int(json_object_object_get(r, "to")));
            json_object_put(perms);
            return;
        }
        if (!add && at < 0) {
            ec2_error(c->req, 400, "InvalidPermission.NotFound",
                      "The specified rule does not exist in this security "
                      "group.");
            json_object_put(perms);
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(perms, i);

        if (add) {
            json_object_array_add(ingress, json_object_get(r));
        } else {
            int at = rule_index(ingress, r);

            json_object_array_del_idx(ingress, (size_t)at, 1);
        }
    }
    json_object_put(perms);
    send_return_true(c, add ? "AuthorizeSecurityGroupIngressResponse"
                            : "RevokeSecurityGroupIngressResponse");
}

/* An instance holds its groups until it is terminated and its network
 * interface is gone (a few seconds after "terminated"). */
static bool group_in_use(struct sim *sim, const char *gid)
{
    for (struct sim_object *i = NULL;
         (i = sim_obj_next(sim, i, "ec2", "instance"));) {
        struct json_object *gs;
        const char *state = attr_str(i, "state");

        if (strcmp(state, "terminated") == 0 &&
            (uint64_t)attr_int(i, "eniGoneAt") <= sim_now_ms())
            continue;
        if (json_object_object_get_ex(i->attrs, "securityGroups", &gs))
            for (size_t k = 0; k < json_object_array_length(gs); k++)
                if (strcmp(json_object_get_string(
                               json_object_array_get_idx(gs, k)),
                           gid) == 0)
                    return true;
    }
    return false;
}

static void delete_security_group(struct ec2_call *c)
{
    const char *id = param(c, "GroupId");
    struct sim_object *o;

    if (!id) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter GroupId");
        return;
    }
    o = find_group(c, id, false);
    if (!o)
        return;
    if (strcmp(attr_str(o, "groupName"), "default") == 0) {
        ec2_error(c->req, 400, "CannotDelete",
                  "the specified group: \"%s\" name: \"default\" cannot be "
                  "deleted by a user",
                  id);
        return;
    }
    if (group_in_use(c->sim, id)) {
        ec2_error(c->req, 400, "DependencyViolation",
                  "resource %s has a dependent object", id);
        return;
    }
    sim_obj_remove(c->sim, o);
    send_return_true(c, "DeleteSecurityGroupResponse");
}

/* ------------------------------------------------------------------ */
/* Instances. */

static const struct {
    const char *name;
    int code;
} STATES[] = {
    { "pending", 0 },     { "running", 16 },  { "shutting-down", 32 },
    { "terminated", 48 }, { "stopping", 64 }, { "stopped", 80 },
};

static int state_code(const char *name)
{
    for (size_t i = 0; i < KC_ARRAY_SIZE(STATES); i++)
        if (name && strcmp(STATES[i].name, name) == 0)
            return STATES[i].code;
    return -1;
}

struct transition {
    char id[32];
    char from[16];
    char to[16];
};

static void set_state(struct sim *sim, struct sim_object *o, const char *to);

static void on_transition(struct sim *sim, void *arg)
{
    struct transition *t = arg;
    struct sim_object *o = sim_obj_find(sim, "ec2", "instance", t->id);

    /* Drift injected meanwhile wins over the scheduled step. */
    if (o && strcmp(attr_str(o, "state"), t->from) == 0)
        set_state(sim, o, t->to);
}

static void on_expunge(struct sim *sim, void *arg)
{
    struct transition *t = arg;
    struct sim_object *o = sim_obj_find(sim, "ec2", "instance", t->id);

    /* Gone from every Describe* and by id; but EC2 keeps its ClientToken
     * "valid for at least 24 hours after the termination of the instance"
     * (EC2 API reference, "Ensuring idempotency"): a RunInstances with that
     * token still answers this reservation. Kept here until a reset. */
    if (o && strcmp(attr_str(o, "state"), "terminated") == 0 &&
        (uint64_t)attr_int(o, "expungeAt") <= sim_now_ms())
        json_object_object_add(o->attrs, "expunged",
                               json_object_new_boolean(true));
}

/* An instance expunged after termination: only its ClientToken remains. */
static bool expunged(const struct sim_object *o)
{
    struct json_object *v;

    return json_object_object_get_ex(o->attrs, "expunged", &v) &&
           json_object_get_boolean(v);
}

/* How long a terminated instance stays visible: TERMINATED_KEEP, or the
 * config/faults attribute "terminated_keep_ms" (tests shorten it). */
static uint32_t terminated_keep(struct sim *sim)
{
    struct sim_object *cfg = sim_obj_find(sim, "ec2", "config", "faults");
    struct json_object *v;

    if (cfg &&
        json_object_object_get_ex(cfg->attrs, "terminated_keep_ms", &v) &&
        json_object_get_int(v) > 0)
        return (uint32_t)json_object_get_int(v);
    return TERMINATED_KEEP;
}

/* How long a terminated instance's network interface lingers (its security
 * groups stay in use): 0.5 to 1.5 s, or the config/faults attribute
 * "eni_linger_ms" (a test that must see DependencyViolation whatever the
 * load makes it longer than kmsctl's reaction). */
static uint32_t eni_linger(struct sim *sim)
{
    struct sim_object *cfg = sim_obj_find(sim, "ec2", "config", "faults");
    struct json_object *v;

    if (cfg && json_object_object_get_ex(cfg->attrs, "eni_linger_ms", &v) &&
        json_object_get_int(v) > 0)
        return (uint32_t)json_object_get_int(v);
    return (uint32_t)sim_rand_range(sim, 500, 1500);
}

static void schedule(struct sim *sim, struct sim_object *o, const char *from,
                     const char *to, uint32_t ms)
{
    struct transition *t = kc_xcalloc(1, sizeof(*t));

    (void)kc_snprintf(t->id, sizeof(t->id), "%s", o->name);
    (void)kc_snprintf(t->from, sizeof(t->from), "%s", from);
    (void)kc_snprintf(t->to, sizeof(t->to), "%s", to);
    sim_timer_add(sim, ms, on_transition, t, free);
}

/* Moves O to state TO and schedules what follows. */
static void set_state(struct sim *sim, struct sim_object *o, const char *to)
{
    attr_set_str(o, "state", to);
    if (strcmp(to, "pending") == 0) {
        schedule(sim, o, "pending", "running",
                 (uint32_t)sim_rand_range(sim, 300, 1200));
    } else if (strcmp(to, "running") == 0) {
        char ip[32];

        snprintf(ip, sizeof(ip), "198.51.100.%u",
                 (unsigned)sim_rand_range(sim, 10, 250));
        attr_set_str(o, "publicIp", ip);
    } else if (strcmp(to, "stopping") == 0) {
        schedule(sim, o, "stopping", "stopped",
                 (uint32_t)sim_rand_range(sim, 200, 800));
    } else if (strcmp(to, "stopped") == 0) {
        attr_set_str(o, "publicIp", NULL);
    } else if (strcmp(to, "shutting-down") == 0) {
        schedule(sim, o, "shutting-down", "terminated",
                 (uint32_t)sim_rand_range(sim, 200, 800));
    } else if (strcmp(to, "terminated") == 0) {
        struct transition *t = kc_xcalloc(1, sizeof(*t));
        uint32_t keep = terminated_keep(sim);

        attr_set_str(o, "publicIp", NULL);
        attr_set_int(o, "eniGoneAt", (int64_t)(sim_now_ms() + eni_linger(sim)));
        attr_set_int(o, "expungeAt", (int64_t)(sim_now_ms() + keep));
        (void)kc_snprintf(t->id, sizeof(t->id), "%s", o->name);
        sim_timer_add(sim, keep, on_expunge, t, free);
    }
}

static const char *instance_filter(const struct sim_object *o, const char *name,
                                   char *buf, size_t size)
{
    (void)size;
    if (strcmp(name, "instance-state-name") == 0)
        return attr_str(o, "state");
    if (strcmp(name, "instance-state-code") == 0) {
        snprintf(buf, size, "%d", state_code(attr_str(o, "state")));
        return buf;
    }
    if (strcmp(name, "instance-id") == 0)
        return o->name;
    if (strcmp(name, "client-token") == 0)
        return attr_str(o, "clientToken");
    if (strcmp(name, "instance-type") == 0)
        return attr_str(o, "instanceType");
    if (strcmp(name, "image-id") == 0)
        return attr_str(o, "imageId");
    if (strcmp(name, "key-name") == 0)
        return attr_str(o, "keyName");
    if (strcmp(name, "subnet-id") == 0)
        return attr_str(o, "subnetId");
    if (strcmp(name, "vpc-id") == 0)
        return attr_str(o, "vpcId");
    if (strcmp(name, "reservation-id") == 0)
        return attr_str(o, "reservationId");
    return NULL;
}

static void state_xml(struct xout *x, xmlNode *parent, const char *name,
                      const char *state)
{
    xmlNode *s = xel(x, parent, name);

    xint(x, s, "code", state_code(state));
    xtext(x, s, "name", state);
}

static void instance_xml(struct ec2_call *c, struct xout *x, xmlNode *set,
                         const struct sim_object *o)
{
    xmlNode *it = xel(x, set, "item"), *n, *g;
    struct json_object *gs;
    const char *state = attr_str(o, "state");
    const char *pub = attr_str(o, "publicIp");
    char dns[96];

    xtext(x, it, "instanceId", o->name);
    xtext(x, it, "imageId", attr_str(o, "imageId"));
    state_xml(x, it, "instanceState", state);
    snprintf(dns, sizeof(dns), "ip-%s.ec2.internal", attr_str(o, "privateIp"));
    for (char *p = dns; *p; p++)
        if (*p == '.' && p < strstr(dns, ".ec2"))
            *p = '-';
    xtext(x, it, "privateDnsName", dns);
    xtext(x, it, "dnsName", "");
    if (attr_str(o, "keyName"))
        xtext(x, it, "keyName", attr_str(o, "keyName"));
    xint(x, it, "amiLaunchIndex", 0);
    xtext(x, it, "instanceType", attr_str(o, "instanceType"));
    xtext(x, it, "launchTime", attr_str(o, "launchTime"));
    n = xel(x, it, "placement");
    xtext(x, n, "availabilityZone", attr_str(o, "availabilityZone"));
    xtext(x, n, "tenancy", "default");
    n = xel(x, it, "monitoring");
    xtext(x, n, "state", "disabled");
    if (strcmp(state, "terminated") != 0) {
        xtext(x, it, "subnetId", attr_str(o, "subnetId"));
        xtext(x, it, "vpcId", attr_str(o, "vpcId"));
        xtext(x, it, "privateIpAddress", attr_str(o, "privateIp"));
    }
    if (pub)
        xtext(x, it, "ipAddress", pub);
    g = xel(x, it, "groupSet");
    if (json_object_object_get_ex(o->attrs, "securityGroups", &gs))
        for (size_t i = 0; i < json_object_array_length(gs); i++) {
            const char *gid =
                json_object_get_string(json_object_array_get_idx(gs, i));
            struct sim_object *grp =
                sim_obj_find(c->sim, "ec2", "security_group", gid);
            xmlNode *gi = xel(x, g, "item");

            xtext(x, gi, "groupId", gid);
            xtext(x, gi, "groupName", grp ? attr_str(grp, "groupName") : "");
        }
    xtext(x, it, "architecture", "x86_64");
    xtext(x, it, "rootDeviceType", "ebs");
    xtext(x, it, "rootDeviceName", "/dev/xvda");
    n = xel(x, xel(x, it, "blockDeviceMapping"), "item");
    xtext(x, n, "deviceName", "/dev/xvda");
    n = xel(x, n, "ebs");
    xtext(x, n, "volumeId", attr_str(o, "volumeId"));
    xtext(x, n, "status", "attached");
    xbool(x, n, "deleteOnTermination", true);
    xtext(x, it, "virtualizationType", "hvm");
    xtext(x, it, "clientToken", attr_str(o, "clientToken"));
    tagset(x, it, o);
    n = xel(x, it, "enclaveOptions");
    xbool(x, n, "enabled", attr_int(o, "enclave") != 0);
    n = xel(x, it, "metadataOptions");
    xtext(x, n, "state", "applied");
    xtext(x, n, "httpTokens", attr_str(o, "httpTokens"));
    xint(x, n, "httpPutResponseHopLimit", attr_int(o, "httpHopLimit"));
    xtext(x, n, "httpEndpoint", "enabled");
}

/* The digest of a RunInstances call's arguments, for ClientToken. */
static void params_digest(const struct ec2_call *c, char out[72])
{
    struct kc_buf b = { 0 };

    for (size_t i = 0; i < c->q.n; i++) {
        const char *k = c->q.params[i].key;

        if (strcmp(k, "ClientToken") == 0 || strcmp(k, "Version") == 0)
            continue;
        if (kc_buf_addf(&b, "%s=%s\n", k, c->q.params[i].value) < 0)
            KC_BUG("digest");
    }
    kc_secret_digest(kc_buf_str(&b), b.len, NULL, out);
    kc_buf_release(&b);
}

static void reservation_xml(struct ec2_call *c, struct xout *x, xmlNode *parent,
                            const char *rid, bool wrap)
{
    xmlNode *res = wrap ? xel(x, parent, "item") : parent, *set;

    xtext(x, res, "reservationId", rid);
    xtext(x, res, "ownerId", EC2_OWNER);
    xel(x, res, "groupSet");
    set = xel(x, res, "instancesSet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "instance"));)
        if (strcmp(attr_str(o, "reservationId"), rid) == 0)
            instance_xml(c, x, set, o);
}

static void run_instances(struct ec2_call *c)
{
    const char *image = param(c, "ImageId"), *type = param(c, "InstanceType");
    const char *token = param(c, "ClientToken"), *key = param(c, "KeyName");
    const char *subnet_id = param(c, "SubnetId");
    const char *min = param(c, "MinCount"), *max = param(c, "MaxCount");
    const char *enclave = param(c, "EnclaveOptions.Enabled");
    const char *tokens = param(c, "MetadataOptions.HttpTokens");
    const char *hop = param(c, "MetadataOptions.HttpPutResponseHopLimit");
    const char *user_data = param(c, "UserData");
    const struct ec2_type *t;
    struct sim_object *img, *sub = NULL, *o;
    struct json_object *groups;
    size_t ngroups;
    const char **gids = param_list(c, "SecurityGroupId", &ngroups);
    char digest[72], now[32], ip[32], *rid = NULL, *id;
    struct xout x;

    if (token && (strlen(token) > 64 || !*token)) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "ClientToken must be 1 to 64 ASCII characters");
        goto out;
    }
    params_digest(c, digest);
    if (token) {
        for (o = NULL; (o = sim_obj_next(c->sim, o, "ec2", "instance"));) {
            const char *ot = attr_str(o, "clientToken");

            if (!ot || strcmp(ot, token) != 0)
                continue;
            if (strcmp(attr_str(o, "paramsDigest"), digest) != 0) {
                ec2_error(c->req, 400, "IdempotentParameterMismatch",
                          "Arguments on this idempotent request are "
                          "inconsistent with arguments used in previous "
                          "request(s).");
                goto out;
            }
            /* Same token, same arguments: the first call's reservation,
             * whatever state its instance is in now. Not a mutation. */
            xout_init(&x, "RunInstancesResponse", sim_req_id(c->req));
            reservation_xml(c, &x, x.root, attr_str(o, "reservationId"), false);
            xout_send(&x, c->req);
            goto out;
        }
    }
    sim_req_mark_mutating(c->req);
    if (!image || !min || !max) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter %s",
                  !image ? "ImageId"
                  : !min ? "MinCount"
                         : "MaxCount");
        goto out;
    }
    if (strcmp(min, "1") != 0 || strcmp(max, "1") != 0) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "kmsctl-sim launches exactly one instance per call");
        goto out;
    }
    img = sim_obj_find(c->sim, "ec2", "image", image);
    if (!img || strcmp(attr_str(img, "state"), "available") != 0) {
        ec2_error(c->req, 400, "InvalidAMIID.NotFound",
                  "The image id '[%s]' does not exist", image);
        goto out;
    }
    t = find_type(type ? type : "m1.small");
    if (!t) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "Invalid value '%s' for InstanceType.", type ? type : "");
        goto out;
    }
    if (strcmp(attr_str(img, "architecture"), "x86_64") != 0) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "The architecture 'x86_64' of the specified instance type "
                  "does not match the architecture '%s' of the specified AMI.",
                  attr_str(img, "architecture"));
        goto out;
    }
    if (enclave && strcmp(enclave, "true") == 0 && !t->enclaves) {
        ec2_error(c->req, 400, "UnsupportedOperation",
                  "Nitro Enclaves is not supported for instance type '%s'.",
                  t->name);
        goto out;
    }
    if (key && !sim_obj_find(c->sim, "ec2", "key_pair", key)) {
        ec2_error(c->req, 400, "InvalidKeyPair.NotFound",
                  "The key pair '%s' does not exist", key);
        goto out;
    }
    if (subnet_id) {
        sub = sim_obj_find(c->sim, "ec2", "subnet", subnet_id);
        if (!sub) {
            ec2_error(c->req, 400, "InvalidSubnetID.NotFound",
                      "The subnet ID '%s' does not exist", subnet_id);
            goto out;
        }
    } else {
        sub = sim_obj_next(c->sim, NULL, "ec2", "subnet");
    }
    groups = json_object_new_array();
    for (size_t i = 0; i < ngroups; i++) {
        struct sim_object *g =
            sim_obj_find(c->sim, "ec2", "security_group", gids[i]);

        if (!g || strcmp(attr_str(g, "vpcId"), attr_str(sub, "vpcId"))) {
            json_object_put(groups);
            ec2_error(c->req, 400, "InvalidGroup.NotFound",
                      "The security group '%s' does not exist in VPC '%s'",
                      gids[i], attr_str(sub, "vpcId"));
            goto out;
        }
        json_object_array_add(groups, json_object_new_string(gids[i]));
    }
    if (ngroups == 0)
        for (o = NULL; (o = sim_obj_next(c->sim, o, "ec2", "security_group"));)
            if (strcmp(attr_str(o, "groupName"), "default") == 0)
                json_object_array_add(groups, json_object_new_string(o->name));
    if (tokens && strcmp(tokens, "required") && strcmp(tokens, "optional")) {
        json_object_put(groups);
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "Invalid value '%s' for HttpTokens", tokens);
        goto out;
    }
    id = new_id(c->sim, "i");
    o = sim_obj_add(c->sim, "ec2", "instance", id, id);
    free(id);
    if (!apply_tag_specs(c, o, "instance")) {
        json_object_put(groups);
        sim_obj_remove(c->sim, o);
        goto out;
    }
    rid = new_id(c->sim, "r");
    iso_now(now);
    snprintf(ip, sizeof(ip), "172.31.%d.%u", (int)attr_int(sub, "ipBase"),
             (unsigned)sim_rand_range(c->sim, 4, 250));
    attr_set_str(o, "reservationId", rid);
    attr_set_str(o, "imageId", image);
    attr_set_str(o, "instanceType", t->name);
    attr_set_str(o, "keyName", key);
    attr_set_str(o, "subnetId", sub->name);
    attr_set_str(o, "vpcId", attr_str(sub, "vpcId"));
    attr_set_str(o, "availabilityZone", attr_str(sub, "availabilityZone"));
    attr_set_str(o, "privateIp", ip);
    attr_set_str(o, "launchTime", now);
    attr_set_str(o, "clientToken", token ? token : "");
    attr_set_str(o, "paramsDigest", digest);
    json_object_object_add(o->attrs, "securityGroups", groups);
    attr_set_int(o, "enclave", enclave && strcmp(enclave, "true") == 0);
    attr_set_str(o, "httpTokens", tokens ? tokens : "optional");
    attr_set_int(o, "httpHopLimit", hop ? strtol(hop, NULL, 10) : 2);
    attr_set_str(o, "rootVolumeSize",
                 param(c, "BlockDeviceMapping.1.Ebs.VolumeSize"));
    attr_set_str(o, "rootVolumeType",
                 param(c, "BlockDeviceMapping.1.Ebs.VolumeType"));
    attr_set_str(o, "userData", user_data);
    if (user_data) {
        /* Decoded for the tests' checks (the real API hands it back only
         * through DescribeInstanceAttribute). */
        unsigned char *dec = kc_xcalloc(1, strlen(user_data) + 4);
        int n = EVP_DecodeBlock(dec, (const unsigned char *)user_data,
                                (int)strlen(user_data));

        if (n < 0) {
            free(dec);
            sim_obj_remove(c->sim, o);
            ec2_error(c->req, 400, "InvalidParameterValue",
                      "Invalid BASE64 encoding of user data.");
            goto out;
        }
        for (size_t i = strlen(user_data); i > 0 && user_data[i - 1] == '=';
             i--)
            n--;
        {
            char *text = kc_xstrndup((char *)dec, (size_t)n);

            attr_set_str(o, "userDataDecoded", text);
            free(text);
        }
        free(dec);
    }
    {
        char *vol = new_id(c->sim, "vol");

        attr_set_str(o, "volumeId", vol);
        free(vol);
    }
    attr_set_int(o, "visibleAt",
                 (int64_t)(sim_now_ms() + sim_rand_range(c->sim, 50, 250)));
    set_state(c->sim, o, "pending");
    xout_init(&x, "RunInstancesResponse", sim_req_id(c->req));
    reservation_xml(c, &x, x.root, rid, false);
    xout_send(&x, c->req);
out:
    free(rid);
    free(gids);
}

static void describe_instances(struct ec2_call *c)
{
    static const char *const filters[] = { "instance-state-name",
                                           "instance-state-code",
                                           "instance-id",
                                           "client-token",
                                           "instance-type",
                                           "image-id",
                                           "key-name",
                                           "subnet-id",
                                           "vpc-id",
                                           "reservation-id",
                                           NULL };
    size_t nids;
    const char **ids = param_list(c, "InstanceId", &nids);
    struct json_object *seen = json_object_new_object();
    struct xout x;
    struct pager pg;
    xmlNode *set;

    if (!filters_valid(c, filters) || !pager_init(c, &pg, nids, "ipage"))
        goto out;
    for (size_t i = 0; i < nids; i++) {
        struct sim_object *o = sim_obj_find(c->sim, "ec2", "instance", ids[i]);

        if (!o || fresh(o) || expunged(o)) {
            ec2_error(c->req, 400, "InvalidInstanceID.NotFound",
                      "The instance ID '%s' does not exist", ids[i]);
            goto out;
        }
    }
    xout_init(&x, "DescribeInstancesResponse", sim_req_id(c->req));
    set = xel(&x, x.root, "reservationSet");
    for (struct sim_object *o = NULL;
         (o = sim_obj_next(c->sim, o, "ec2", "instance"));) {
        const char *rid = attr_str(o, "reservationId");

        if ((nids && !in_list(ids, nids, o->name)) || expunged(o) ||
            !filters_match(c, o, instance_filter) ||
            json_object_object_get_ex(seen, rid, NULL))
            continue;
        json_object_object_add(seen, rid, NULL);
        if (pager_take(&pg))
            reservation_xml(c, &x, set, rid, true);
    }
    pager_end(&pg, &x);
    xout_send(&x, c->req);
out:
    json_object_put(seen);
    free(ids);
}

static void change_instances(struct ec2_call *c, const char *action)
{
    size_t nids;
    const char **ids = param_list(c, "InstanceId", &nids);
    const char *root = strcmp(action, "start") == 0 ? "StartInstancesResponse"
                       : strcmp(action, "stop") == 0
                           ? "StopInstancesResponse"
                           : "TerminateInstancesResponse";
    struct xout x;
    xmlNode *set;

    if (nids == 0) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter InstanceId");
        goto out;
    }
    for (size_t i = 0; i < nids; i++) {
        struct sim_object *o = sim_obj_find(c->sim, "ec2", "instance", ids[i]);
        const char *s = o ? attr_str(o, "state") : NULL;

        if (!o || expunged(o)) {
            ec2_error(c->req, 400, "InvalidInstanceID.NotFound",
                      "The instance ID '%s' does not exist", ids[i]);
            goto out;
        }
        if ((strcmp(action, "start") == 0 || strcmp(action, "stop") == 0) &&
            (strcmp(s, "terminated") == 0 || strcmp(s, "shutting-down") == 0)) {
            ec2_error(c->req, 400, "IncorrectInstanceState",
                      "The instance '%s' is not in a state from which it can "
                      "be %s.",
                      ids[i],
                      strcmp(action, "start") == 0 ? "started" : "stopped");
            goto out;
        }
        if (strcmp(action, "start") == 0 && strcmp(s, "stopping") == 0) {
            ec2_error(c->req, 400, "IncorrectInstanceState",
                      "The instance '%s' is not in a state from which it can "
                      "be started.",
                      ids[i]);
            goto out;
        }
    }
    xout_init(&x, root, sim_req_id(c->req));
    set = xel(&x, x.root, "instancesSet");
    for (size_t i = 0; i < nids; i++) {
        struct sim_object *o = sim_obj_find(c->sim, "ec2", "instance", ids[i]);
        char prev[16];
        xmlNode *it = xel(&x, set, "item");

        (void)kc_snprintf(prev, sizeof(prev), "%s", attr_str(o, "state"));
        if (strcmp(action, "start") == 0 && strcmp(prev, "stopped") == 0)
            set_state(c->sim, o, "pending");
        else if (strcmp(action, "stop") == 0 &&
                 (strcmp(prev, "running") == 0 || !strcmp(prev, "pending")))
            set_state(c->sim, o, "stopping");
        else if (strcmp(action, "terminate") == 0 &&
                 strcmp(prev, "terminated") != 0 &&
                 strcmp(prev, "shutting-down") != 0)
            set_state(c->sim, o, "shutting-down");
        xtext(&x, it, "instanceId", o->name);
        state_xml(&x, it, "currentState", attr_str(o, "state"));
        state_xml(&x, it, "previousState", prev);
    }
    xout_send(&x, c->req);
out:
    free(ids);
}

static void describe_instance_attribute(struct ec2_call *c)
{
    const char *id = param(c, "InstanceId"), *attr = param(c, "Attribute");
    struct sim_object *o =
        id ? sim_obj_find(c->sim, "ec2", "instance", id) : NULL;
    struct xout x;

    if (!o || fresh(o) || expunged(o)) {
        ec2_error(c->req, 400, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id ? id : "");
        return;
    }
    if (!attr || strcmp(attr, "userData") != 0) {
        ec2_error(c->req, 400, "InvalidParameterValue",
                  "kmsctl-sim answers DescribeInstanceAttribute for userData "
                  "only");
        return;
    }
    xout_init(&x, "DescribeInstanceAttributeResponse", sim_req_id(c->req));
    xtext(&x, x.root, "instanceId", o->name);
    if (attr_str(o, "userData"))
        xtext(&x, xel(&x, x.root, "userData"), "value",
              attr_str(o, "userData"));
    else
        xel(&x, x.root, "userData");
    xout_send(&x, c->req);
}

/* ------------------------------------------------------------------ */
/* Tags. */

static struct sim_object *find_resource(struct sim *sim, const char *id)
{
    static const char *const kinds[] = { "instance", "security_group", "vpc",
                                         "subnet", "image" };

    for (size_t i = 0; i < KC_ARRAY_SIZE(kinds); i++) {
        struct sim_object *o = sim_obj_find(sim, "ec2", kinds[i], id);

        if (o && !(i == 0 && expunged(o)))
            return o;
    }
    return sim_obj_find_id(sim, "ec2", "key_pair", id);
}

static void change_tags(struct ec2_call *c, bool add)
{
    size_t nids;
    const char **ids = param_list(c, "ResourceId", &nids);

    if (nids == 0) {
        ec2_error(c->req, 400, "MissingParameter",
                  "The request must contain the parameter ResourceId");
        goto out;
    }
    for (size_t i = 0; i < nids; i++)
        if (!find_resource(c->sim, ids[i])) {
            ec2_error(c->req, 400, "InvalidID", "The ID '%s' is not valid",
                      ids[i]);
            goto out;
        }
    for (size_t i = 0; i < nids; i++) {
        struct sim_object *o = find_resource(c->sim, ids[i]);

        for (int j = 1;; j++) {
            const char *k = paramf(c, "Tag.%d.Key", j);
            const char *v = paramf(c, "Tag.%d.Value", j);
            struct json_object *have;

            if (!k)
                break;
            if (add) {
                json_object_object_add(o->labels, k,
                                       json_object_new_string(v ? v : ""));
            } else if (json_object_object_get_ex(o->labels, k, &have) &&
                       (!v || strcmp(json_object_get_string(have), v) == 0)) {
                json_object_object_del(o->labels, k);
            }
        }
    }
    send_return_true(c, add ? "CreateTagsResponse" : "DeleteTagsResponse");
out:
    free(ids);
}

/* ------------------------------------------------------------------ */
/* Dispatch. */

struct ec2_action {
    const char *name;
    bool mutating;
    void (*fn)(struct ec2_call *c);
};

static void act_start(struct ec2_call *c)
{
    change_instances(c, "start");
}
static void act_stop(struct ec2_call *c)
{
    change_instances(c, "stop");
}
static void act_terminate(struct ec2_call *c)
{
    change_instances(c, "terminate");
}
static void act_authorize(struct ec2_call *c)
{
    change_ingress(c, true);
}
static void act_revoke(struct ec2_call *c)
{
    change_ingress(c, false);
}
static void act_create_tags(struct ec2_call *c)
{
    change_tags(c, true);
}
static void act_delete_tags(struct ec2_call *c)
{
    change_tags(c, false);
}

static const struct ec2_action ACTIONS[] = {
    { "DescribeVpcs", false, describe_vpcs },
    { "DescribeSubnets", false, describe_subnets },
    { "DescribeImages", false, describe_images },
    { "DescribeKeyPairs", false, describe_key_pairs },
    { "CreateKeyPair", true, create_key_pair },
    { "ImportKeyPair", true, import_key_pair },
    { "DeleteKeyPair", true, delete_key_pair },
    { "DescribeSecurityGroups", false, describe_security_groups },
    { "CreateSecurityGroup", true, create_security_group },
    { "DeleteSecurityGroup", true, delete_security_group },
    { "AuthorizeSecurityGroupIngress", true, act_authorize },
    { "RevokeSecurityGroupIngress", true, act_revoke },
    /* RunInstances marks itself mutating unless a ClientToken replay. */
    { "RunInstances", false, run_instances },
    { "DescribeInstances", false, describe_instances },
    { "DescribeInstanceAttribute", false, describe_instance_attribute },
    { "StartInstances", true, act_start },
    { "StopInstances", true, act_stop },
    { "TerminateInstances", true, act_terminate },
    { "CreateTags", true, act_create_tags },
    { "DeleteTags", true, act_delete_tags },
};

/* config/faults "throttle": {"Action": N}: the next N calls of Action get
 * EC2's throttling answer (RequestLimitExceeded, HTTP 503) unhandled. */
static bool maybe_throttle(struct sim *sim, struct sim_req *req,
                           const char *action)
{
    struct sim_object *cfg = sim_obj_find(sim, "ec2", "config", "faults");
    struct json_object *t, *n;

    if (!cfg || !json_object_object_get_ex(cfg->attrs, "throttle", &t) ||
        !json_object_object_get_ex(t, action, &n) ||
        json_object_get_int(n) <= 0)
        return false;
    json_object_object_add(t, action,
                           json_object_new_int(json_object_get_int(n) - 1));
    ec2_error(req, 503, "RequestLimitExceeded", "Request limit exceeded.");
    return true;
}

static void maybe_drop(struct sim *sim, struct sim_req *req, const char *action)
{
    struct sim_object *cfg = sim_obj_find(sim, "ec2", "config", "faults");
    struct json_object *drops, *n;

    if (!cfg || !json_object_object_get_ex(cfg->attrs, "drop_after", &drops) ||
        !json_object_object_get_ex(drops, action, &n) ||
        json_object_get_int(n) <= 0)
        return;
    json_object_object_add(drops, action,
                           json_object_new_int(json_object_get_int(n) - 1));
    sim_resp_drop(req);
}

static void handle_query(struct sim *sim, struct sim_req *req)
{
    struct ec2_call c = { .sim = sim, .req = req, .st = sim_req_state(req) };
    const char *ctype = sim_req_header(req, "Content-Type");
    const char *action, *version, *body;
    struct kc_err err = { 0 };
    char route[96];
    size_t len = 0;

    aws_query_init(&c.q, NULL);
    body = sim_req_body(req, &len);
    if (!ctype ||
        strncmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        ec2_error(req, 400, "InvalidParameterValue",
                  "kmsctl-sim expects a form-encoded POST body");
        goto out;
    }
    if (aws_query_parse(&c.q, body, len, &err) < 0) {
        ec2_error(req, 400, "MalformedQueryString", "%s", err.msg);
        goto out;
    }
    action = param(&c, "Action");
    version = param(&c, "Version");
    snprintf(route, sizeof(route), "POST /ec2/?Action=%.64s",
             action ? action : "");
    sim_req_set_route(req, route);
    if (!verify_sigv4(&c))
        goto out;
    if (!action) {
        ec2_error(req, 400, "MissingAction",
                  "The request must contain the parameter Action");
        goto out;
    }
    if (!version || strcmp(version, AWS_EC2_VERSION) != 0) {
        ec2_error(req, 400, "InvalidParameterValue",
                  "kmsctl-sim speaks API version " AWS_EC2_VERSION ", not '%s'",
                  version ? version : "");
        goto out;
    }
    for (size_t i = 0; i < KC_ARRAY_SIZE(ACTIONS); i++) {
        if (strcmp(ACTIONS[i].name, action) == 0) {
            if (maybe_throttle(sim, req, action))
                goto out;
            if (ACTIONS[i].mutating)
                sim_req_mark_mutating(req);
            ACTIONS[i].fn(&c);
            maybe_drop(sim, req, action);
            goto out;
        }
    }
    ec2_error(req, 400, "InvalidAction",
              "The action %s is not valid for this web service.", action);
out:
    aws_query_release(&c.q);
}

/* ------------------------------------------------------------------ */
/* IMDSv2 ("Use IMDSv2", EC2 user guide): PUT /latest/api/token with
 * X-aws-ec2-metadata-token-ttl-seconds (1..21600) gives a token; every GET
 * carries it in X-aws-ec2-metadata-token, else 401. */

static bool imds_token_ok(struct sim *sim, struct sim_req *req)
{
    const char *tok = sim_req_header(req, "X-aws-ec2-metadata-token");
    struct sim_object *o =
        tok ? sim_obj_find(sim, "ec2", "imds_token", tok) : NULL;

    if (!o || (uint64_t)attr_int(o, "expiresAtMs") <= sim_now_ms()) {
        sim_resp_body(req, 401, "text/plain", "", 0);
        return false;
    }
    return true;
}

static void handle_imds_token(struct sim *sim, struct sim_req *req)
{
    struct ec2_state *st = sim_req_state(req);
    const char *ttl =
        sim_req_header(req, "X-aws-ec2-metadata-token-ttl-seconds");
    char *end = NULL, *tok;
    long secs = ttl ? strtol(ttl, &end, 10) : 0;
    struct sim_object *o;

    if (!ttl || !end || *end || secs < 1 || secs > IMDS_TOKEN_MAX_S) {
        sim_resp_body(req, 400, "text/plain", "", 0);
        return;
    }
    st->nimds_tokens++;
    tok = new_id(sim, "imdstoken");
    o = sim_obj_add(sim, "ec2", "imds_token", tok, NULL);
    attr_set_int(o, "expiresAtMs", (int64_t)(sim_now_ms() + 1000u * secs));
    sim_resp_header(req, "X-aws-ec2-metadata-token-ttl-seconds", ttl);
    sim_resp_body(req, 200, "text/plain", tok, strlen(tok));
    free(tok);
}

static void handle_imds_roles(struct sim *sim, struct sim_req *req)
{
    if (!imds_token_ok(sim, req))
        return;
    sim_resp_body(req, 200, "text/plain", IMDS_ROLE, strlen(IMDS_ROLE));
}

static void handle_imds_creds(struct sim *sim, struct sim_req *req)
{
    const char *role = sim_req_param(req, "role");
    struct sim_object *r, *o;
    struct json_object *doc;
    char *akid, *secret, *token, exp[32], now[32];
    time_t t;
    struct tm tm;

    if (!imds_token_ok(sim, req))
        return;
    r = role ? sim_obj_find(sim, "ec2", "imds_role", role) : NULL;
    if (!r) {
        sim_resp_body(req, 404, "text/plain", "", 0);
        return;
    }
    akid = new_id(sim, "ASIASIM");
    secret = new_id(sim, "imdssecret");
    token = new_id(sim, "imdssessiontoken");
    for (char *p = akid; *p; p++)
        if (*p == '-')
            *p = 'X';
    t = time(NULL) + attr_int(r, "ttl_seconds");
    gmtime_r(&t, &tm);
    strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    iso_now(now);
    o = sim_obj_add(sim, "ec2", "imds_credentials", akid, NULL);
    attr_set_str(o, "secret", secret);
    attr_set_str(o, "token", token);
    attr_set_int(o, "expires", (int64_t)t);
    doc = json_object_new_object();
    json_object_object_add(doc, "Code", json_object_new_string("Success"));
    json_object_object_add(doc, "LastUpdated", json_object_new_string(now));
    json_object_object_add(doc, "Type", json_object_new_string("AWS-HMAC"));
    json_object_object_add(doc, "AccessKeyId", json_object_new_string(akid));
    json_object_object_add(doc, "SecretAccessKey",
                           json_object_new_string(secret));
    json_object_object_add(doc, "Token", json_object_new_string(token));
    json_object_object_add(doc, "Expiration", json_object_new_string(exp));
    sim_resp_json(req, 200, doc);
    free(akid);
    free(secret);
    free(token);
}

/* ------------------------------------------------------------------ */
/* Admin hooks: drift injection. */

static int ec2_patch(struct sim *sim, struct sim_object *obj,
                     struct json_object *patch, struct kc_err *err)
{
    struct json_object *attrs, *state;

    if (strcmp(obj->kind, "instance") != 0 ||
        !json_object_object_get_ex(patch, "attrs", &attrs) ||
        !json_object_object_get_ex(attrs, "state", &state))
        return 0;
    if (!json_object_is_type(state, json_type_string) ||
        state_code(json_object_get_string(state)) < 0)
        return kc_err_set(err, KC_EINVAL,
                          "attrs.state: not an instance "
                          "state");
    /* As if someone had called Stop/Start/TerminateInstances. */
    set_state(sim, obj, json_object_get_string(state));
    json_object_object_del(attrs, "state");
    return 0;
}

static const struct sim_route ec2_routes[] = {
    /* manifests/sandbox.yaml: endpoint ${KMSCTL_SANDBOX_SIM}/ec2,
     * imds_endpoint ${KMSCTL_SANDBOX_SIM}/imds. */
    { "POST", "/ec2/", handle_query, false },
    { "PUT", "/imds/latest/api/token", handle_imds_token, false },
    { "GET", "/imds/latest/meta-data/iam/security-credentials/",
      handle_imds_roles, false },
    { "GET", "/imds/latest/meta-data/iam/security-credentials/{role}",
      handle_imds_creds, false },
    { NULL },
};

const struct sim_service sim_svc_ec2 = {
    .name = "ec2",
    .routes = ec2_routes,
    .init = ec2_init,
    .fini = ec2_fini,
    .patch_object = ec2_patch,
};
