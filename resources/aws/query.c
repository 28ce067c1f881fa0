/* resources/aws/query.c: EC2 Query API request bodies.
 *
 * "Query requests are HTTP or HTTPS requests that use the HTTP verb GET or
 * POST and a Query parameter named Action" plus Version
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html).
 * kmsctl always POSTs application/x-www-form-urlencoded bodies, so nothing
 * (user-data in particular) ends up in a URL. Lists are flattened with
 * 1-based indexes, as in the reference's RunInstances examples:
 * TagSpecification.1.Tag.1.Key.
 */
#include "resources/aws/aws.h"

void aws_query_init(struct aws_query *q, const char *action)
{
    memset(q, 0, sizeof(*q));
    if (action) {
        aws_query_add(q, "Action", action);
        aws_query_add(q, "Version", AWS_EC2_VERSION);
    }
}

void aws_query_release(struct aws_query *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->params[i].key);
        /* Values may hold user-data or key material: wipe them. */
        kc_memzero(q->params[i].value, strlen(q->params[i].value));
        free(q->params[i].value);
    }
    free(q->params);
    memset(q, 0, sizeof(*q));
}

static void query_take(struct aws_query *q, char *key, char *value)
{
    kc_xgrow(&q->params, &q->cap, q->n + 1, sizeof(*q->params));
    q->params[q->n].key = key;
    q->params[q->n].value = value;
    q->n++;
}

void aws_query_add(struct aws_query *q, const char *key, const char *value)
{
    query_take(q, kc_xstrdup(key), kc_xstrdup(value ? value : ""));
}

void aws_query_addf(struct aws_query *q, const char *value, const char *kfmt,
                    ...)
{
    struct kc_buf key = { 0 };
    va_list ap;

    va_start(ap, kfmt);
    if (kc_buf_vaddf(&key, kfmt, ap) < 0)
        KC_BUG("query key too long");
    va_end(ap);
    query_take(q, kc_buf_detach(&key, NULL), kc_xstrdup(value ? value : ""));
}

const char *aws_query_get(const struct aws_query *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->params[i].key, key) == 0)
            return q->params[i].value;
    return NULL;
}

int aws_query_encode(const struct aws_query *q, struct kc_buf *out)
{
    for (size_t i = 0; i < q->n; i++) {
        const struct aws_query_param *p = &q->params[i];

        if ((i && kc_buf_addch(out, '&') < 0) ||
            aws_uri_encode(out, p->key, strlen(p->key)) < 0 ||
            kc_buf_addch(out, '=') < 0 ||
            aws_uri_encode(out, p->value, strlen(p->value)) < 0)
            return KC_ERANGE;
    }
    return 0;
}

int aws_query_parse(struct aws_query *q, const char *body, size_t len,
                    struct kc_err *err)
{
    size_t i = 0;

    while (i < len) {
        const char *p = body + i;
        const char *amp = memchr(p, '&', len - i);
        size_t plen = amp ? (size_t)(amp - p) : len - i;
        const char *eq = memchr(p, '=', plen);
        struct kc_buf k = { 0 }, v = { 0 };

        if (plen > 0) {
            if (!eq)
                return kc_err_set(err, KC_EINVAL,
                                  "form parameter %zu has no '='", q->n + 1);
            if (aws_uri_decode(&k, p, (size_t)(eq - p), true) < 0 ||
                aws_uri_decode(&v, eq + 1, plen - (size_t)(eq - p) - 1, true) <
                    0 ||
                memchr(kc_buf_str(&k), '\0', k.len) ||
                memchr(kc_buf_str(&v), '\0', v.len)) {
                kc_buf_release(&k);
                kc_buf_release(&v);
                return kc_err_set(err, KC_EINVAL,
                                  "form parameter %zu: bad %%-escape",
                                  q->n + 1);
            }
            query_take(q, k.data ? kc_buf_detach(&k, NULL) : kc_xstrdup(""),
                       v.data ? kc_buf_detach(&v, NULL) : kc_xstrdup(""));
        }
        i += plen + 1;
    }
    return 0;
}
