/* cmd/logs.c: kmsctl logs KMS_VM [--follow]: the VM's serial port output
 * (what dstack-cloud `logs` shows: app-compose.sh orchestration, not the
 * containers' stdout), read with instances.getSerialPortOutput
 * (https://cloud.google.com/compute/docs/reference/rest/v1/instances/
 * getSerialPortOutput): port 1 from byte offset `start`; the answer's
 * `next` is where the following read starts. When older output was dropped
 * the answer's `start` is past the requested one, which is said on stderr.
 * --follow reads again every 2 seconds (a uv timer) until Ctrl-C. */
#include "cmd/cmd.h"

#include <signal.h>

#include <uv.h>

#include "cmd/ui.h"
#include "reconcile/json.h"
#include "resources/gcp/gcp.h"

#define LOGS_POLL_MS 2000

struct logs {
    struct ui_session s;
    struct gcp *g;
    struct gcp_call call;
    uv_timer_t timer;
    uv_signal_t sig;
    bool timer_open, sig_open, follow, stop;
    char *url;
    int64_t next;
    int status;
    struct kc_err err;
};

static void logs_close(struct logs *l);
static void on_logs_timer(uv_timer_t *t);

static void on_serial(struct gcp_call *c, int status)
{
    struct logs *l = c->data;
    const char *contents;
    int64_t start = 0, next = 0;
    int ret;

    ret = gcp_call_check(c, status, "serial port output", &l->err);
    if (ret == 0 &&
        ((ret = kc_json_get_int(c->resp, "next", &next, &l->err)) < 0 ||
         (ret = kc_json_get_int(c->resp, "start", &start, &l->err)) < 0))
        kc_err_prefix(&l->err, "serial port output");
    if (ret < 0) {
        l->status = ret;
        logs_close(l);
        return;
    }
    if (start > l->next)
        fprintf(stderr, "[%lld bytes of older output are gone]\n",
                (long long)(start - l->next));
    contents = kc_json_opt_str(c->resp, "contents");
    if (contents && *contents) {
        fputs(contents, stdout);
        fflush(stdout);
    }
    l->next = next;
    if (!l->follow || l->stop) {
        logs_close(l);
        return;
    }
    ret = uv_timer_start(&l->timer, on_logs_timer, LOGS_POLL_MS, 0);
    if (ret < 0) {
        l->status = kc_err_from_uv(&l->err, ret, "timer");
        logs_close(l);
    }
}

static int logs_read(struct logs *l)
{
    char *url =
        kc_xasprintf("%s?port=1&start=%lld", l->url, (long long)l->next);
    int ret;

    gcp_call_release(&l->call);
    memset(&l->call, 0, sizeof(l->call));
    l->call.data = l;
    ret = gcp_call_start(l->g, &l->call, KC_HTTP_GET, url, NULL, on_serial,
                         &l->err);
    free(url);
    return ret;
}

static void on_logs_timer(uv_timer_t *t)
{
    struct logs *l = kc_container_of(t, struct logs, timer);
    int ret = logs_read(l);

    if (ret < 0) {
        l->status = ret;
        logs_close(l);
    }
}

static void on_logs_signal(uv_signal_t *h, int signum)
{
    struct logs *l = kc_container_of(h, struct logs, sig);

    (void)signum;
    l->stop = true;
    if (uv_is_active((uv_handle_t *)&l->timer)) {
        (void)uv_timer_stop(&l->timer);
        logs_close(l);
    }
}

static void logs_close(struct logs *l)
{
    if (l->timer_open) {
        uv_close((uv_handle_t *)&l->timer, NULL);
        l->timer_open = false;
    }
    if (l->sig_open) {
        uv_close((uv_handle_t *)&l->sig, NULL);
        l->sig_open = false;
    }
}

/* The zone of VM: its own, else providers.gcp.zone. */
static const char *vm_zone(const struct kc_value *vm, const struct gcp *g)
{
    const char *z = kc_value_str(kc_value_map_get(vm, "zone"));

    return z ? z : g->cfg.zone;
}

static int logs_run(struct logs *l, struct cmd_opts *opts, struct kc_err *err)
{
    const struct kc_node *vms, *node;
    struct kc_value *vm = NULL;
    struct gcp_config cfg;
    const char *name;
    int ret;

    if (opts->nargs != 1)
        return kc_err_set(err, KC_EINVAL,
                          "usage: kmsctl logs KMS_VM "
                          "[--follow] [-f MANIFEST]");
    name = opts->args[0];
    ret = ui_open(&l->s, opts, false, true, "kmsctl logs", err);
    if (ret < 0)
        return ret;
    vms = kc_node_get(l->s.doc->root, "kms_vms");
    node = kc_node_get(vms, name);
    if (!node)
        return kc_err_set(err, KC_ENOENT, "%s: no kms_vms entry '%s'",
                          opts->file, name);
    ret = gcp_config_parse(kc_value_map_get(l->s.providers, "gcp"),
                           l->s.doc->dir, &cfg, err);
    if (ret == 0)
        ret = gcp_new(&l->s.loop, l->s.http, &l->s.log, &cfg, l->s.name, NULL,
                      &l->g, err);
    if (ret < 0)
        return kc_err_prefix(err, "providers.gcp");
    {
        /* The zone may be set on the VM: read it without interpolation (a
         * zone is a literal name in the schema). */
        const struct kc_node *z = kc_node_get(node, "zone");

        vm = kc_value_new_map();
        if (z && z->type == KC_NODE_SCALAR)
            kc_value_map_set(vm, "zone", kc_value_new_str(z->str));
    }
    l->url = gcp_compute_url(l->g,
                             "projects/%s/zones/%s/instances/%s/"
                             "serialPort",
                             l->g->cfg.project, vm_zone(vm, l->g), name);
    kc_value_free(vm);
    l->follow = opts->follow;
    if ((ret = uv_timer_init(&l->s.loop, &l->timer)) < 0)
        return kc_err_from_uv(err, ret, "timer");
    l->timer_open = true;
    if (l->follow) {
        /* Ctrl-C ends --follow quietly: the session's handler (for engine
         * verbs) would announce a graceful engine stop instead. */
        if (l->s.sig_open) {
            (void)uv_signal_stop(&l->s.sigint);
            (void)uv_signal_stop(&l->s.sigterm);
        }
        if ((ret = uv_signal_init(&l->s.loop, &l->sig)) < 0 ||
            (ret = uv_signal_start(&l->sig, on_logs_signal, SIGINT)) < 0) {
            logs_close(l);
            return kc_err_from_uv(err, ret, "signal");
        }
        l->sig_open = true;
    }
    ret = logs_read(l);
    if (ret < 0) {
        logs_close(l);
        return ret;
    }
    ret = uv_run(&l->s.loop, UV_RUN_DEFAULT);
    if (ret < 0)
        return kc_err_from_uv(err, ret, "uv_run");
    if (l->status < 0) {
        *err = l->err;
        return l->status;
    }
    return 0;
}

/* The error names the request that failed by its URL, and the endpoints may
 * come from ${env:} with a key in them: the logger's secrets are taken out
 * before it is printed (the engine does the same for resources' errors). */
static void redact_err(const struct kc_log *log, struct kc_err *err)
{
    struct kc_buf b = { 0 };

    if (kc_log_redact(log, err->msg, strlen(err->msg), &b) == 0)
        kc_snprintf(err->msg, sizeof(err->msg), "%s", kc_buf_str(&b));
    else
        kc_snprintf(err->msg, sizeof(err->msg),
                    "[message withheld: it could not be redacted]");
    kc_buf_release_wipe(&b);
}

int cmd_logs(int argc, char **argv)
{
    struct cmd_opts opts;
    struct logs l;
    struct kc_err err = { 0 };
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    memset(&l, 0, sizeof(l));
    ret = logs_run(&l, &opts, &err);
    if (ret < 0)
        redact_err(&l.s.log, &err);
    gcp_call_release(&l.call);
    free(l.url);
    ui_close(&l.s);
    gcp_free(l.g);
    if (ret < 0)
        cmd_print_err(&opts, &err);
    cmd_opts_release(&opts);
    if (ret < 0)
        return ret == KC_EINVAL ? KC_EXIT_ERROR : ui_exit_code(ret);
    return l.stop ? KC_EXIT_INTERRUPTED : KC_EXIT_OK;
}
