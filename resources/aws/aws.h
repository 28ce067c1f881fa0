/* resources/aws/aws.h: the AWS provider's private helpers: SigV4 signing,
 * the credential chain, Query API encoding and XML response parsing.
 *
 * Nothing here talks to the network by itself except aws_creds_imds_*()
 * (declared in creds.h once the HTTP runtime is in); everything else is pure
 * and tested against published vectors (tests/unit/test_aws_*.c).
 */
#ifndef KC_RESOURCES_AWS_AWS_H
#define KC_RESOURCES_AWS_AWS_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"
#include "reconcile/secret.h"

#include <time.h>

/* EC2 Query API version and the namespace of its responses
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html:
 * every request carries Action and Version; responses are XML in
 * http://ec2.amazonaws.com/doc/<Version>/). */
#define AWS_EC2_VERSION "2016-11-15"
#define AWS_EC2_XMLNS   "http://ec2.amazonaws.com/doc/2016-11-15/"

/* Limits on outside input. */
#define AWS_XML_MAX_BYTES (8u << 20) /* one EC2 response */
#define AWS_CONFIG_MAX_BYTES                        \
    (1u << 20) /* ~/.aws/credentials, ~/.aws/config \
                */
#define AWS_SIGV4_MAX_HEADERS 32

/* ------------------------------------------------------------------ */
/* SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/
 * reference_sigv-create-signed-request.html). */

struct aws_header {
    const char *name;  /* any case; lower-cased when canonicalised */
    const char *value; /* trimmed, inner runs of spaces collapsed */
};

/* One request to sign or to verify. All strings are borrowed. */
struct aws_sigv4_req {
    const char *method; /* "POST" */
    const char *path;   /* the request path as sent; "/" when empty */
    const char *query;  /* the raw query string as sent (no '?'), or NULL */
    const struct aws_header *headers; /* the headers to sign (incl. host) */
    size_t nheaders;
    const void *body;
    size_t body_len;
    const char *payload_hash; /* hex SHA-256 of BODY; NULL: computed */
    const char *amz_date;     /* "20150830T123600Z" */
    const char *region;       /* "us-east-1" */
    const char *service;      /* "ec2" */
};

/* The canonical request; SIGNED_HEADERS (optional) gets "host;x-amz-date". */
int aws_sigv4_canonical_request(const struct aws_sigv4_req *req,
                                struct kc_buf *out,
                                struct kc_buf *signed_headers,
                                struct kc_err *err);
/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256(canonical request)>". */
int aws_sigv4_string_to_sign(const struct aws_sigv4_req *req,
                             struct kc_buf *out, struct kc_err *err);
/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date8), region), service),
 * "aws4_request"). DATE8 is "YYYYMMDD". */
void aws_sigv4_signing_key(const struct kc_secret *secret, const char *date8,
                           const char *region, const char *service,
                           unsigned char key[32]);
/* SIG gets the 64 lower-case hex digits of the signature. */
int aws_sigv4_signature(const struct aws_sigv4_req *req,
                        const struct kc_secret *secret, char sig[65],
                        struct kc_err *err);
/* The value of the Authorization header:
 * "AWS4-HMAC-SHA256 Credential=<akid>/<scope>, SignedHeaders=..,
 * Signature=..". */
int aws_sigv4_authorization(const struct aws_sigv4_req *req,
                            const char *access_key,
                            const struct kc_secret *secret, struct kc_buf *out,
                            struct kc_err *err);
/* "20150830T123600Z" for T (UTC). */
void aws_sigv4_amz_date(time_t t, char out[17]);
/* Parses "20150830T123600Z"; -1 if malformed. */
time_t aws_sigv4_parse_amz_date(const char *s);

/* A parsed Authorization header (for the simulator's verification). */
struct aws_sigv4_auth {
    char access_key[128];
    char date8[9];
    char region[64];
    char service[64];
    char signed_headers[512]; /* "host;x-amz-date" */
    char signature[65];
};
int aws_sigv4_parse_authorization(const char *value, struct aws_sigv4_auth *out,
                                  struct kc_err *err);

/* UriEncode of the SigV4 documentation: every byte but A-Z a-z 0-9 - . _ ~
 * becomes %XX (upper-case hex). Also the encoding of Query API forms. */
int aws_uri_encode(struct kc_buf *out, const char *s, size_t len);
/* Decodes %XX (and '+' as a space when FORM); fails on a bad escape. */
int aws_uri_decode(struct kc_buf *out, const char *s, size_t len, bool form);

/* ------------------------------------------------------------------ */
/* Credentials: the AWS CLI's chain (https://docs.aws.amazon.com/cli/latest/
 * userguide/cli-chap-configure.html#configure-precedence). */

struct aws_creds {
    char access_key[128];
    struct kc_secret *secret_key;
    struct kc_secret *session_token; /* NULL when none */
    time_t expiration;               /* 0: does not expire */
    char source[160];                /* "environment", "profile 'x' in ..." */
};

void aws_creds_release(struct aws_creds *c);
void aws_creds_copy(struct aws_creds *dst, const struct aws_creds *src);
/* True when C needs refreshing at NOW (expires within MARGIN seconds). */
bool aws_creds_expiring(const struct aws_creds *c, time_t now, long margin);

/* What the chain may use; every pointer optional (NULL: from environment). */
struct aws_chain_opts {
    const char *profile; /* providers.aws.profile: explicit, like --profile */
    const char *region;  /* providers.aws.region */
    const char *credentials_file; /* providers.aws.credentials_file */
    const char *config_file;      /* providers.aws.config_file */
    const char *imds_endpoint;    /* providers.aws.imds_endpoint */
    char **env;                   /* NULL: environ; tests pass their own */
};

/* The result of the static part of the chain. */
struct aws_chain {
    struct aws_creds creds; /* access_key[0] == '\0': none found */
    char profile[128];      /* the profile in use */
    char region[64];        /* "" when none found */
    char region_source[160];
    bool imds_allowed;       /* AWS_EC2_METADATA_DISABLED is not "true" */
    char imds_endpoint[256]; /* AWS_EC2_METADATA_SERVICE_ENDPOINT or default */
};

/* Resolves environment, shared credentials file and config file (blocking
 * file reads: call before the loop runs). No credentials found is not an
 * error: OUT->creds.access_key is empty and the caller tries IMDS. */
int aws_chain_resolve(const struct aws_chain_opts *opts, struct aws_chain *out,
                      struct kc_err *err);
void aws_chain_release(struct aws_chain *c);

/* Parses an INI file as the CLI does: "[section]", "key = value", '#' and
 * ';' comments, indented continuation lines skipped. Calls CB per key in
 * SECTION (matched exactly); returns the number of times SECTION appeared. */
typedef void (*aws_ini_cb)(void *data, const char *key, const char *value);
int aws_ini_section(const char *text, const char *section, aws_ini_cb cb,
                    void *data);

/* Parses the IMDS role credentials document
 * ({"Code":"Success","AccessKeyId":..,"SecretAccessKey":..,"Token":..,
 * "Expiration":"2026-11-25T16:00:00Z"}) into OUT. */
int aws_creds_from_imds_json(const char *text, size_t len,
                             struct aws_creds *out, struct kc_err *err);
/* Parses "2026-11-25T16:00:00Z" (also with fractional seconds); -1 if bad. */
time_t aws_parse_iso8601(const char *s);

/* ------------------------------------------------------------------ */
/* Query API requests: application/x-www-form-urlencoded bodies. */

struct aws_query {
    struct aws_query_param {
        char *key;
        char *value;
    } * params;
    size_t n, cap;
};

/* Starts a form: Action=ACTION&Version=2016-11-15. */
void aws_query_init(struct aws_query *q, const char *action);
void aws_query_release(struct aws_query *q);
void aws_query_add(struct aws_query *q, const char *key, const char *value);
/* The key is formatted: aws_query_addf(q, "v", "TagSpecification.%d.Tag.%d.
 * Key", 1, 1) (list members are numbered from 1). */
void aws_query_addf(struct aws_query *q, const char *value, const char *kfmt,
                    ...) KC_PRINTF(3, 4);
/* The value of KEY or NULL. */
const char *aws_query_get(const struct aws_query *q, const char *key);
/* Serialises in insertion order, keys and values UriEncode'd. */
int aws_query_encode(const struct aws_query *q, struct kc_buf *out);
/* Parses a form body (for the simulator). Fails on a bad escape or a
 * parameter without '='. Duplicates are kept. */
int aws_query_parse(struct aws_query *q, const char *body, size_t len,
                    struct kc_err *err);

/* ------------------------------------------------------------------ */
/* Key pairs. */

/* The fingerprint EC2 shows for an imported OpenSSH public key LINE
 * ("ssh-ed25519 AAAA... comment"): for RSA the MD5 of the DER public key in
 * colon hex, for ED25519 the base64 SHA-256 of the key blob without padding
 * ("Describe your key pairs", EC2 user guide). *TYPE gets "rsa" or
 * "ed25519". False if LINE is not such a key. */
bool aws_key_import_fingerprint(const char *line, char *fp, size_t fpsize,
                                const char **type);

/* ------------------------------------------------------------------ */
/* XML responses (libxml2). */

struct aws_error {
    char code[128];    /* "InvalidKeyPair.NotFound" */
    char message[384]; /* the service's message (truncated) */
    char request_id[96];
};

/* Parses an EC2 error body (<Response><Errors><Error><Code/><Message/>
 * </Error></Errors><RequestID/></Response>, no namespace). Returns 0 if
 * the body was such a document, else KC_EPARSE. */
int aws_xml_parse_error(const char *body, size_t len, struct aws_error *out,
                        struct kc_err *err);

struct _xmlDoc;
struct _xmlNode;

/* Parses a success response: the root must be <EXPECT_ROOT> in the EC2
 * namespace (AWS_EC2_XMLNS, or another EC2 API version's). Network access,
 * DTDs and entity expansion are off; bodies over AWS_XML_MAX_BYTES fail. */
int aws_xml_parse(const char *body, size_t len, const char *expect_root,
                  struct _xmlDoc **doc, struct kc_err *err);
void aws_xml_free(struct _xmlDoc *doc);
struct _xmlNode *aws_xml_root(struct _xmlDoc *doc);
/* The first element child of NODE named NAME in NODE's own namespace; NULL
 * if none. PATH may contain '/' ("instanceState/name"). */
struct _xmlNode *aws_xml_child(struct _xmlNode *node, const char *path);
/* The next element sibling with NODE's name and namespace (for <item>). */
struct _xmlNode *aws_xml_next(struct _xmlNode *node);
/* The text of PATH under NODE: "" for an empty element, NULL when the element
 * is absent or holds more than text. Borrowed until the document is freed
 * (libxml2 merges adjacent text and resolves character references). */
const char *aws_xml_text(struct _xmlNode *node, const char *path);

#endif
