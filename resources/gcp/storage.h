/* resources/gcp/storage.h: Cloud Storage for the GCP provider: digests of
 * local files (on a worker thread), object metadata, resumable uploads
 * streamed from a file descriptor, deletes.
 *
 * Resumable upload, as "Perform resumable uploads" describes
 * (https://cloud.google.com/storage/docs/performing-resumable-uploads):
 *   1. POST {storage}/upload/storage/v1/b/BUCKET/o?uploadType=resumable
 *      &name=NAME with the object's metadata (name, contentType, metadata,
 *      crc32c, md5Hash) as JSON; the session URI comes back in Location;
 *   2. PUT chunks to the session URI with "Content-Range: bytes A-B/TOTAL",
 *      each a multiple of 256 KiB except the last (GCP_UPLOAD_CHUNK, 8 MiB);
 *      the body streams from the fd (kc_http_req_upload_fd), nothing is held
 *      in memory; 308 "Resume Incomplete" carries "Range: bytes=0-N", the
 *      bytes stored so far (none without a Range header), and the next chunk
 *      starts at N+1;
 *   3. after a dropped connection, a 5xx, 408 or 429, the status is asked
 *      with an empty PUT "Content-Range: bytes * /TOTAL" (no spaces), and the
 *      upload goes on from the committed offset, not from the start;
 *      a 404/410 (the session expired) starts one new session;
 *   4. the final answer (200/201) is the object: its crc32c must equal the
 *      local file's, else the upload fails (KC_EIO); Cloud Storage also
 *      checks the crc32c/md5Hash announced in step 1 and refuses a mismatch.
 * Progress: after each chunk, a KC_LOG_INFO line with bytes and rate, and
 * the caller's progress callback (gcp.image shows it in the live display).
 */
#ifndef KC_RESOURCES_GCP_STORAGE_H
#define KC_RESOURCES_GCP_STORAGE_H

#include "resources/gcp/gcp.h"

#define GCP_UPLOAD_CHUNK        (8u << 20)
#define GCP_UPLOAD_QUANTUM      (256u << 10)
#define GCP_UPLOAD_MAX_FAILURES 10

/* CRC32C, MD5 and size of an open file, computed on the loop's thread pool. */
struct gcp_digest;
typedef void (*gcp_digest_cb)(struct gcp_digest *d, int status);

struct gcp_digest {
    /* public */
    void *data;
    /* read-only, valid in the callback with status 0 */
    uint32_t crc32c;
    unsigned char md5[16];
    uint64_t size;
    struct kc_err err;
    /* private */
    uv_work_t work;
    int fd;
    int status;
    gcp_digest_cb cb;
};

/* Reads FD (borrowed, from offset 0 with pread) to its end on a worker. */
int gcp_digest_start(uv_loop_t *loop, struct gcp_digest *d, int fd,
                     gcp_digest_cb cb, struct kc_err *err);

/* "{storage}/storage/v1/b/BUCKET/o/NAME" (NAME percent-encoded). Caller
 * frees. */
char *gcp_object_url(const struct gcp *g, const char *bucket, const char *name);

struct gcp_upload;
/* Called after each chunk the server stored: BYTES of TOTAL, RATE in
 * bytes per second since the upload started. */
typedef void (*gcp_upload_progress_fn)(void *arg, uint64_t bytes,
                                       uint64_t total, double rate);

struct gcp_upload_opts {
    const char *bucket, *name; /* copied */
    int fd;                    /* borrowed until the callback */
    uint64_t size;
    uint32_t crc32c;              /* of the whole file (gcp_digest) */
    const unsigned char *md5;     /* 16 bytes, or NULL */
    struct json_object *metadata; /* custom metadata (object; borrowed) */
    const char *content_type;     /* NULL: application/gzip */
    uint64_t chunk;               /* 0: GCP_UPLOAD_CHUNK; multiple of 256 KiB */
    gcp_upload_progress_fn progress; /* optional */
    void *progress_arg;
};

struct gcp_upload;
typedef void (*gcp_upload_cb)(struct gcp_upload *u, int status);

struct gcp_upload {
    /* public */
    void *data;
    /* read-only, valid in the callback */
    struct json_object *object; /* the object's metadata (status 0) */
    struct kc_err err;
    uint64_t bytes_sent; /* body bytes sent, resends included */
    unsigned resumes;    /* status queries after failures */
    /* private */
    struct gcp *g;
    gcp_upload_cb cb;
    struct gcp_upload_opts o;
    char *bucket, *name, *content_type, *session;
    struct json_object *meta;
    unsigned char md5[16];
    bool has_md5;
    uint64_t offset, chunk_len;
    int phase, failures;
    bool restarted;
    uint64_t started_ms;
    struct gcp_call call;
};

/* Starts the upload (see above). */
int gcp_upload_start(struct gcp *g, struct gcp_upload *u,
                     const struct gcp_upload_opts *opts, gcp_upload_cb cb,
                     struct kc_err *err);
void gcp_upload_release(struct gcp_upload *u);

/* The committed size of a resumable upload from the Range header of a 308
 * answer: "bytes=0-N" gives N + 1 in *OUT. Digits only, no sign, no
 * trailing text, N below UINT64_MAX; anything else is KC_EPARSE. */
int gcp_range_committed(const char *range, uint64_t *out, struct kc_err *err);

#endif
