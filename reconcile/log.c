/* reconcile/log.c: leveled logging with redaction of known secrets. */
#include "reconcile/log.h"

#include <time.h>

static const char *const level_names[] = { "error", "warn", "info", "debug",
                                           "trace" };

void kc_log_init(struct kc_log *log, enum kc_log_level level)
{
    memset(log, 0, sizeof(*log));
    log->level = level;
}

void kc_log_release(struct kc_log *log)
{
    if (!log)
        return;
    for (size_t i = 0; i < log->nsecrets; i++) {
        kc_memzero(log->secrets[i].bytes, log->secrets[i].len);
        free(log->secrets[i].bytes);
    }
    free(log->secrets);
    log->secrets = NULL;
    log->nsecrets = log->capsecrets = 0;
}

void kc_log_add_secret(struct kc_log *log, const void *bytes, size_t len)
{
    if (!log || !bytes || len < 4)
        return;
    for (size_t i = 0; i < log->nsecrets; i++)
        if (log->secrets[i].len == len &&
            memcmp(log->secrets[i].bytes, bytes, len) == 0)
            return;
    kc_xgrow(&log->secrets, &log->capsecrets, log->nsecrets + 1,
             sizeof(*log->secrets));
    log->secrets[log->nsecrets].bytes = kc_xstrndup(bytes, len);
    log->secrets[log->nsecrets].len = len;
    log->nsecrets++;
}

int kc_log_redact(const struct kc_log *log, const char *in, size_t len,
                  struct kc_buf *out)
{
    size_t i = 0;
    int ret = 0;

    while (i < len && ret == 0) {
        size_t hit = 0;

        for (size_t s = 0; log && s < log->nsecrets; s++) {
            const struct kc_log_secret *sec = &log->secrets[s];

            if (sec->len <= len - i && sec->len > hit &&
                memcmp(in + i, sec->bytes, sec->len) == 0)
                hit = sec->len;
        }
        if (hit) {
            ret = kc_buf_addstr(out, "[redacted]");
            i += hit;
        } else {
            ret = kc_buf_addch(out, in[i]);
            i++;
        }
    }
    return ret;
}

bool kc_log_enabled(const struct kc_log *log, enum kc_log_level level)
{
    return level <= (log ? log->level : KC_LOG_INFO);
}

void kc_log(const struct kc_log *log, enum kc_log_level level,
            const char *component, const char *fmt, ...)
{
    struct kc_buf raw = { 0 }, line = { 0 };
    va_list ap;
    FILE *out = log && log->out ? log->out : stderr;

    if (!kc_log_enabled(log, level))
        return;
    if (log && log->timestamps) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        kc_buf_addf(&raw, "%s ", ts);
    }
    kc_buf_addf(&raw, "%s: %s: ", level_names[level],
                component ? component : "kmsctl");
    va_start(ap, fmt);
    kc_buf_vaddf(&raw, fmt, ap);
    va_end(ap);
    kc_log_redact(log, kc_buf_str(&raw), raw.len, &line);
    fprintf(out, "%s\n", kc_buf_str(&line));
    fflush(out);
    kc_buf_release_wipe(&raw);
    kc_buf_release(&line);
}
