/* tests/fuzz/fuzz_gcp.c: what the GCP provider parses from Google and from
 * the user: answers of the Compute and Storage JSON APIs as gcp_call_check
 * reads them (status code + Google error document), Compute Operations as
 * the operation poll reads them (DONE, error.errors[0]), service account
 * key files (gcp_creds_parse, PEM key included) and base64 in either
 * alphabet. The first input byte picks the parser; for answers the second
 * picks the HTTP status.
 *
 * The operation poll handler is static in resources/gcp/gcp.c: this file
 * includes gcp.c to reach it (its other symbols then come from here, not
 * from the library).
 *
 * Replayed by ctest (fuzz_gcp: driver.c, corpus/gcp).
 */
#include "resources/gcp/gcp.c"

#include "resources/gcp/auth.h"
#include "resources/gcp/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long codes[] = { 200, 201, 204, 308, 400, 401, 403,
                              404, 409, 412, 429, 500, 503, 0 };

static void on_wait_done(struct gcp_wait *w, int status)
{
    int *done = w->data;

    if (status < 0 && !w->err.msg[0])
        KC_BUG("operation failed without a message");
    *done = 1;
}

static void fuzz_answer(const uint8_t *data, size_t size)
{
    static uv_loop_t loop;
    static bool loop_ready;
    struct gcp g;
    struct gcp_wait w;
    struct kc_err err = { 0 };
    struct json_object *resp = NULL;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    int done = 0;

    if (!loop_ready) {
        if (uv_loop_init(&loop) < 0)
            KC_BUG("uv_loop_init");
        loop_ready = true;
    }
    /* As call_finish(): only a body starting with '{' is parsed. */
    if (len > 0 && body[0] == '{' &&
        kc_json_parse(body, len, "answer", &resp, &err) < 0)
        resp = NULL;

    memset(&g, 0, sizeof(g));
    g.loop = &loop;
    g.poll_min_ms = 1;
    g.poll_max_ms = 10;
    g.op_timeout_ms = 0;
    memset(&w, 0, sizeof(w));
    w.g = &g;
    w.data = &done;
    w.cb = on_wait_done;
    w.what = kc_xstrdup("gcp.image.fuzz");
    w.delay_ms = 1;
    w.deadline = 0; /* an operation not DONE times out at once */
    w.call.code = codes[data[0] % KC_ARRAY_SIZE(codes)];
    w.call.resp = resp;
    w.call.g = &g;

    if (gcp_call_check(&w.call, 0, "fuzz", &err) < 0 && !err.msg[0])
        KC_BUG("failed check without a message");
    (void)gcp_call_reason(&w.call);
    if (uv_timer_init(&loop, &w.timer) < 0)
        KC_BUG("uv_timer_init");
    w.timer_live = true;
    on_wait_poll(&w.call, 0);
    if (uv_run(&loop, UV_RUN_DEFAULT) < 0 || !done)
        KC_BUG("operation wait did not finish");
    json_object_put(w.op);
    json_object_put(w.call.resp);
    free(w.what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kc_err err = { 0 };

    if (size < 2)
        return 0;
    switch (data[0] % 4) {
    case 0:
    case 1:
        fuzz_answer(data + 1, size - 1);
        break;
    case 2: {
        struct gcp_creds *c = NULL;
        if (gcp_creds_parse((const char *)data + 1, size - 1, "key.json", &c,
                            &err) == 0) {
            free(gcp_creds_describe(c));
            gcp_creds_free(c);
        } else if (c || !err.msg[0]) {
            KC_BUG("failed creds parse: result left or no message");
        }
        break;
    }
    default: {
        struct kc_buf out = { 0 }, again = { 0 };
        char label[64];
        char *s = kc_xstrndup((const char *)data + 1, size - 1);
        if (gcp_b64_decode((const char *)data + 1, size - 1, &out, &err) == 0) {
            /* What decodes encodes back and decodes to the same bytes. */
            struct kc_buf enc = { 0 };
            if (gcp_b64_encode(out.data, out.len, data[0] & 4, &enc) < 0 ||
                gcp_b64_decode(enc.data, enc.len, &again, &err) < 0 ||
                again.len != out.len ||
                (out.len && memcmp(again.data, out.data, out.len) != 0))
                KC_BUG("base64 round trip");
            kc_buf_release(&enc);
        }
        gcp_label_value(s, label);
        if (!memchr(label, 0, sizeof(label)))
            KC_BUG("label not terminated");
        kc_buf_release(&out);
        kc_buf_release(&again);
        free(s);
        break;
    }
    }
    return 0;
}
