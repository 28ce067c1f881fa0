/* resources/gcp/storage.c: file digests, resumable uploads from an fd. */
#include "resources/gcp/storage.h"

#include <unistd.h>

#include <openssl/evp.h>

#include "reconcile/json.h"
#include "resources/gcp/codec.h"

/* ---- digests ---- */

static void digest_work(uv_work_t *w)
{
    struct gcp_digest *d = kc_container_of(w, struct gcp_digest, work);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = kc_xmalloc(1u << 20);
    uint64_t off = 0;
    uint32_t crc = 0;
    unsigned mdlen = 0;

    if (!md || EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        d->status = kc_err_from_ssl(&d->err, "md5");
        goto out;
    }
    for (;;) {
        ssize_t n = pread(d->fd, buf, 1u << 20, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            d->status = kc_err_from_errno(&d->err, errno, "read");
            goto out;
        }
        if (n == 0)
            break;
        crc = gcp_crc32c_update(crc, buf, (size_t)n);
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
            d->status = kc_err_from_ssl(&d->err, "md5");
            goto out;
        }
        off += (uint64_t)n;
    }
    if (EVP_DigestFinal_ex(md, d->md5, &mdlen) != 1 || mdlen != 16) {
        d->status = kc_err_from_ssl(&d->err, "md5");
        goto out;
    }
    d->crc32c = crc;
    d->size = off;
    d->status = 0;
out:
    EVP_MD_CTX_free(md);
    free(buf);
}

static void digest_done(uv_work_t *w, int status)
{
    struct gcp_digest *d = kc_container_of(w, struct gcp_digest, work);

    if (status < 0)
        d->status = kc_err_from_uv(&d->err, status, "digest");
    d->cb(d, d->status);
}

int gcp_digest_start(uv_loop_t *loop, struct gcp_digest *d, int fd,
                     gcp_digest_cb cb, struct kc_err *err)
{
    int ret;

    d->fd = fd;
    d->cb = cb;
    d->status = 0;
    kc_err_clear(&d->err);
    ret = uv_queue_work(loop, &d->work, digest_work, digest_done);
    if (ret < 0)
        return kc_err_from_uv(err, ret, "digest");
    return 0;
}

/* ---- URLs ---- */

char *gcp_object_url(const struct gcp *g, const char *bucket, const char *name)
{
    struct kc_buf b = { 0 };

    if (kc_buf_addf(&b, "%s/storage/v1/b/", g->cfg.storage_url) < 0 ||
        gcp_pct_encode(bucket, strlen(bucket), &b) < 0 ||
        kc_buf_addstr(&b, "/o/") < 0 ||
        gcp_pct_encode(name, strlen(name), &b) < 0)
        KC_BUG("url");
    return kc_buf_detach(&b, NULL);
}

/* ---- resumable upload ---- */

enum {
    UP_INIT,
    UP_CHUNK,
    UP_QUERY
};

static void on_up(struct gcp_call *c, int status);

static void up_finish(struct gcp_upload *u, int status)
{
    if (status < 0)
        kc_err_prefix(&u->err, "upload 'gs://%s/%s'", u->bucket, u->name);
    u->cb(u, status);
}

static int setup_chunk(struct gcp_call *c, struct kc_http_req *req,
                       struct kc_err *err)
{
    struct gcp_upload *u = kc_container_of(c, struct gcp_upload, call);
    char range[96];
    int ret;

    if (u->o.size == 0)
        snprintf(range, sizeof(range), "bytes */0");
    else
        snprintf(range, sizeof(range), "bytes %llu-%llu/%llu",
                 (unsigned long long)u->offset,
                 (unsigned long long)(u->offset + u->chunk_len - 1),
                 (unsigned long long)u->o.size);
    ret = kc_http_req_set_header(req, "Content-Range", range, err);
    if (ret == 0 && u->chunk_len > 0)
        ret = kc_http_req_upload_fd(req, u->o.fd, u->offset, u->chunk_len, err);
    else if (ret == 0)
        ret = kc_http_req_set_body(req, "", 0, NULL, err);
    return ret;
}

static int setup_query(struct gcp_call *c, struct kc_http_req *req,
                       struct kc_err *err)
{
    struct gcp_upload *u = kc_container_of(c, struct gcp_upload, call);
    char range[64];
    int ret;

    snprintf(range, sizeof(range), "bytes */%llu",
             (unsigned long long)u->o.size);
    ret = kc_http_req_set_header(req, "Content-Range", range, err);
    if (ret == 0)
        ret = kc_http_req_set_body(req, "", 0, NULL, err);
    return ret;
}

static int setup_init(struct gcp_call *c, struct kc_http_req *req,
                      struct kc_err *err)
{
    struct gcp_upload *u = kc_container_of(c, struct gcp_upload, call);
    char len[32];

    snprintf(len, sizeof(len), "%llu", (unsigned long long)u->o.size);
    if (kc_http_req_set_header(req, "X-Upload-Content-Type", u->content_type,
                               err) < 0)
        return err->code;
    return kc_http_req_set_header(req, "X-Upload-Content-Length", len, err);
}

/* Starts PHASE's call. < 0: nothing started (u->err says why). */
static int up_phase(struct gcp_upload *u, int phase)
{
    static const struct kc_http_retry once = { .max_attempts = 1 };
    struct json_object *body = NULL;
    char *url = NULL;
    int ret;

    gcp_call_release(&u->call);
    memset(&u->call, 0, sizeof(u->call));
    u->phase = phase;
    if (phase == UP_INIT) {
        struct kc_buf b = { 0 };

        if (kc_buf_addf(&b, "%s/upload/storage/v1/b/", u->g->cfg.storage_url) <
                0 ||
            gcp_pct_encode(u->bucket, strlen(u->bucket), &b) < 0 ||
            kc_buf_addstr(&b, "/o?uploadType=resumable&name=") < 0 ||
            gcp_pct_encode(u->name, strlen(u->name), &b) < 0)
            KC_BUG("url");
        url = kc_buf_detach(&b, NULL);
        body = json_object_get(u->meta);
        u->call.setup = setup_init;
        /* Starting a session changes nothing: safe to retry. */
        u->call.safe = true;
    } else if (phase == UP_CHUNK) {
        uint64_t left = u->o.size - u->offset;

        u->chunk_len = left < u->o.chunk ? left : u->o.chunk;
        url = kc_xstrdup(u->session);
        u->call.setup = setup_chunk;
        /* A failed chunk is not re-sent blindly: its status is asked and
         * the upload goes on from the committed offset. */
        u->call.retry = &once;
    } else {
        url = kc_xstrdup(u->session);
        u->call.setup = setup_query;
        u->resumes++;
    }
    ret = gcp_call_start(u->g, &u->call,
                         phase == UP_INIT ? KC_HTTP_POST : KC_HTTP_PUT, url,
                         body, on_up, &u->err);
    free(url);
    return ret;
}

/* From a callback: starts PHASE or ends the upload. */
static void up_start_phase(struct gcp_upload *u, int phase)
{
    int ret = up_phase(u, phase);

    if (ret < 0)
        up_finish(u, ret);
}

int gcp_range_committed(const char *range, uint64_t *out, struct kc_err *err)
{
    static const char prefix[] = "bytes=0-";
    const char *d = range + strlen(prefix);
    unsigned long long b;
    char *end;

    *out = 0;
    if (strncmp(range, prefix, strlen(prefix)) != 0 || *d < '0' || *d > '9')
        return kc_err_set(err, KC_EPARSE,
                          "unexpected Range '%.64s' (want bytes=0-N)", range);
    errno = 0;
    b = strtoull(d, &end, 10);
    if (errno || *end || b >= UINT64_MAX)
        return kc_err_set(err, KC_EPARSE,
                          "unexpected Range '%.64s' (want bytes=0-N)", range);
    *out = (uint64_t)b + 1;
    return 0;
}

/* Range: bytes=0-N of a 308 answer: N + 1, or 0 without the header. */
static int committed_of(const struct gcp_call *c, uint64_t *out,
                        struct kc_err *err)
{
    const char *r = kc_http_resp_header(&c->req, "Range");

    if (!r) {
        *out = 0;
        return 0;
    }
    return gcp_range_committed(r, out, err);
}

static void up_done(struct gcp_upload *u, struct gcp_call *c)
{
    char want[GCP_CRC32C_B64_LEN];
    const char *got = c->resp ? kc_json_opt_str(c->resp, "crc32c") : NULL;

    gcp_crc32c_b64(u->o.crc32c, want);
    if (!got || strcmp(got, want) != 0) {
        up_finish(u, kc_err_set(&u->err, KC_EIO,
                                "stored crc32c '%s' differs from the local "
                                "file's '%s'",
                                got ? got : "(none)", want));
        return;
    }
    json_object_put(u->object);
    u->object = json_object_get(c->resp);
    up_finish(u, 0);
}

static bool transient(const struct gcp_call *c, int status)
{
    if (status == KC_ECANCELED)
        return false;
    if (status < 0)
        return true; /* dropped connection, timeout */
    return c->code == 408 || c->code == 429 || c->code >= 500;
}

static void up_progress(struct gcp_upload *u)
{
    uint64_t ms = uv_now(u->g->loop) - u->started_ms;
    double mib = (double)u->offset / (1024.0 * 1024.0);

    kc_log(u->g->log, KC_LOG_INFO, "gcp",
           "upload gs://%s/%s: %llu/%llu bytes (%.1f MiB/s)", u->bucket,
           u->name, (unsigned long long)u->offset,
           (unsigned long long)u->o.size,
           ms ? mib / ((double)ms / 1000.0) : 0.0);
    if (u->o.progress)
        u->o.progress(u->o.progress_arg, u->offset, u->o.size,
                      ms ? (double)u->offset / ((double)ms / 1000.0) : 0.0);
}

static void on_up(struct gcp_call *c, int status)
{
    struct gcp_upload *u = kc_container_of(c, struct gcp_upload, call);
    uint64_t committed = 0; /* gcc -O2 cannot see committed_of() set it */
    const char *loc;

    if (u->phase == UP_CHUNK)
        u->bytes_sent += c->req.uploaded;
    if (u->phase == UP_INIT) {
        if (gcp_call_check(c, status, "start upload session", &u->err) < 0) {
            up_finish(u, u->err.code);
            return;
        }
        loc = kc_http_resp_header(&c->req, "Location");
        if (!loc || !*loc) {
            up_finish(u, kc_err_set(&u->err, KC_EPARSE,
                                    "no session URI (Location) in the "
                                    "answer"));
            return;
        }
        free(u->session);
        u->session = kc_xstrdup(loc);
        u->offset = 0;
        up_start_phase(u, UP_CHUNK);
        return;
    }
    if (status == 0 && (c->code == 200 || c->code == 201)) {
        up_done(u, c);
        return;
    }
    if (status == 0 && c->code == 308) {
        if (committed_of(c, &committed, &u->err) < 0) {
            up_finish(u, u->err.code);
            return;
        }
        if (committed > u->o.size) {
            up_finish(u, kc_err_set(&u->err, KC_EPARSE,
                                    "server holds %llu bytes of %llu",
                                    (unsigned long long)committed,
                                    (unsigned long long)u->o.size));
            return;
        }
        if (committed > u->offset || u->phase == UP_QUERY)
            u->failures = committed > u->offset ? 0 : u->failures;
        else
            u->failures++;
        u->offset = committed;
        if (u->phase == UP_CHUNK)
            up_progress(u);
        if (u->failures > GCP_UPLOAD_MAX_FAILURES) {
            up_finish(u,
                      kc_err_set(&u->err, KC_EIO,
                                 "no progress after %d tries at offset "
                                 "%llu",
                                 u->failures, (unsigned long long)u->offset));
            return;
        }
        up_start_phase(u, UP_CHUNK);
        return;
    }
    if (status == 0 && (c->code == 404 || c->code == 410) && !u->restarted) {
        /* The session expired: one new session from the start. */
        u->restarted = true;
        up_start_phase(u, UP_INIT);
        return;
    }
    if (transient(c, status) && ++u->failures <= GCP_UPLOAD_MAX_FAILURES) {
        kc_log(u->g->log, KC_LOG_INFO, "gcp",
               "upload gs://%s/%s interrupted at %llu (%s): asking the "
               "committed offset",
               u->bucket, u->name, (unsigned long long)u->offset,
               status < 0 ? c->err.msg : "server error");
        up_start_phase(u, UP_QUERY);
        return;
    }
    gcp_call_check(c, status, u->phase == UP_QUERY ? "upload status" : "put",
                   &u->err);
    if (!u->err.code)
        kc_err_set(&u->err, KC_EREMOTE, "unexpected status %ld", c->code);
    up_finish(u, u->err.code);
}

int gcp_upload_start(struct gcp *g, struct gcp_upload *u,
                     const struct gcp_upload_opts *o, gcp_upload_cb cb,
                     struct kc_err *err)
{
    char crc[GCP_CRC32C_B64_LEN], md5[GCP_MD5_B64_LEN];

    if (o->chunk && (o->chunk % GCP_UPLOAD_QUANTUM) != 0)
        return kc_err_set(err, KC_EINVAL,
                          "upload chunk %llu is not a multiple of 256 KiB",
                          (unsigned long long)o->chunk);
    memset(u, 0, sizeof(*u));
    u->g = g;
    u->cb = cb;
    u->o = *o;
    if (!u->o.chunk)
        u->o.chunk = GCP_UPLOAD_CHUNK;
    u->bucket = kc_xstrdup(o->bucket);
    u->name = kc_xstrdup(o->name);
    u->content_type =
        kc_xstrdup(o->content_type ? o->content_type : "application/gzip");
    u->started_ms = uv_now(g->loop);
    u->meta = json_object_new_object();
    json_object_object_add(u->meta, "name", json_object_new_string(u->name));
    json_object_object_add(u->meta, "contentType",
                           json_object_new_string(u->content_type));
    if (o->metadata)
        json_object_object_add(u->meta, "metadata",
                               json_object_get(o->metadata));
    gcp_crc32c_b64(o->crc32c, crc);
    json_object_object_add(u->meta, "crc32c", json_object_new_string(crc));
    if (o->md5) {
        gcp_md5_b64(o->md5, md5);
        json_object_object_add(u->meta, "md5Hash", json_object_new_string(md5));
    }
    if (up_phase(u, UP_INIT) < 0) {
        *err = u->err;
        kc_err_prefix(err, "upload 'gs://%s/%s'", u->bucket, u->name);
        gcp_upload_release(u);
        return err->code;
    }
    return 0;
}

void gcp_upload_release(struct gcp_upload *u)
{
    gcp_call_release(&u->call);
    json_object_put(u->object);
    json_object_put(u->meta);
    free(u->bucket);
    free(u->name);
    free(u->content_type);
    free(u->session);
    u->object = u->meta = NULL;
    u->bucket = u->name = u->content_type = u->session = NULL;
}
