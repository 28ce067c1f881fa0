/* reconcile/log.h: leveled logging to stderr with redaction of secrets.
 *
 * The logger is passed in (struct kc_ctx holds one); it learns every secret
 * when the secret is created (kc_log_add_secret) and prints "[redacted]"
 * instead of its bytes anywhere in a line. stdout is never written here.
 */
#ifndef KC_RECONCILE_LOG_H
#define KC_RECONCILE_LOG_H

#include "reconcile/buf.h"
#include "reconcile/kc.h"

enum kc_log_level {
    KC_LOG_ERROR = 0,
    KC_LOG_WARN = 1,
    KC_LOG_INFO = 2,
    KC_LOG_DEBUG = 3,
    KC_LOG_TRACE = 4,
};

struct kc_log {
    /* public */
    enum kc_log_level level; /* lines above this level are dropped */
    FILE *out;               /* NULL: stderr */
    bool timestamps;         /* prefix lines with an ISO 8601 UTC time */
    /* private */
    struct kc_log_secret {
        char *bytes;
        size_t len;
    } * secrets;
    size_t nsecrets, capsecrets;
};

void kc_log_init(struct kc_log *log, enum kc_log_level level);
void kc_log_release(struct kc_log *log);
/* Remembers a copy of a secret to redact. Values shorter than 4 bytes are
 * not remembered (they would redact ordinary text). NULL LOG is a no-op. */
void kc_log_add_secret(struct kc_log *log, const void *bytes, size_t len);
/* Appends IN to OUT with every known secret replaced by "[redacted]". */
int kc_log_redact(const struct kc_log *log, const char *in, size_t len,
                  struct kc_buf *out);
/* NULL LOG logs to stderr at INFO level without redaction. */
void kc_log(const struct kc_log *log, enum kc_log_level level,
            const char *component, const char *fmt, ...) KC_PRINTF(4, 5);
bool kc_log_enabled(const struct kc_log *log, enum kc_log_level level);

#endif
