/* cmd/ui.c: the session the engine verbs share, progress rendering and
 * signal handling (see cmd/ui.h). */
#include "cmd/ui.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "reconcile/check.h"
#include "reconcile/file.h"
#include "reconcile/http.h"
#include "reconcile/interp.h"
#include "reconcile/json.h"
#include "reconcile/secret.h"

int ui_exit_code(int ret)
{
    switch (ret) {
    case 0:
        return KC_EXIT_OK;
    case KC_ELOCKED:
        return KC_EXIT_LOCKED;
    case KC_ECANCELED:
    case KC_EINTR:
        return KC_EXIT_INTERRUPTED;
    default:
        return KC_EXIT_ERROR;
    }
}

int ui_finish(struct ui_session *s, struct cmd_opts *opts, int ret,
              const struct kc_err *err)
{
    if (ret < 0) {
        if (ret != KC_EREMOTE)
            cmd_print_err(opts, err);
        ret = ui_exit_code(ret);
    }
    ui_close(s);
    cmd_opts_release(opts);
    return ret;
}

#ifdef KC_ENGINE_TEST
/* The engine test binary (kmsctl-enginetest) accepts a `fake:` section and
 * providers.fake, which the manifest schema does not know: they are left
 * out of the check (and only of the check). */
static struct kc_node *without_key(const struct kc_node *map, const char *key)
{
    struct kc_node *copy = kc_xcalloc(1, sizeof(*copy));

    *copy = *map;
    copy->pairs = kc_xcalloc(map->n + 1, sizeof(*copy->pairs));
    copy->n = 0;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->pairs[i].key->str, key) != 0)
            copy->pairs[copy->n++] = map->pairs[i];
    return copy;
}

static int check_doc(const struct kc_doc *doc, const struct kc_check_opts *co,
                     struct kc_diags *diags)
{
    struct kc_doc tmp = *doc;
    struct kc_node *root, *prov = NULL;
    int ret;

    if (!doc->root || doc->root->type != KC_NODE_MAP)
        return kc_manifest_check(doc, co, diags);
    root = without_key(doc->root, "fake");
    for (size_t i = 0; i < root->n; i++) {
        if (strcmp(root->pairs[i].key->str, "providers") == 0 &&
            root->pairs[i].val->type == KC_NODE_MAP) {
            prov = without_key(root->pairs[i].val, "fake");
            root->pairs[i].val = prov;
        }
    }
    if (prov && prov->n == 0) {
        /* Only the fake provider: leave providers out altogether. */
        struct kc_node *r2 = without_key(root, "providers");

        free(root->pairs);
        free(root);
        root = r2;
    }
    tmp.root = root;
    ret = kc_manifest_check(&tmp, co, diags);
    if (prov) {
        free(prov->pairs);
        free(prov);
    }
    free(root->pairs);
    free(root);
    return ret;
}
#else
static int check_doc(const struct kc_doc *doc, const struct kc_check_opts *co,
                     struct kc_diags *diags)
{
    return kc_manifest_check(doc, co, diags);
}
#endif

static int load_manifest(struct ui_session *s, struct kc_err *err)
{
    struct kc_check_opts co = { s->opts->allow_literal_secrets };
    struct kc_diags diags = { 0 };
    const struct kc_node *name;
    char *text = NULL;
    size_t len = 0;
    char digest[72];
    int ret;

    ret = kc_manifest_load(s->opts->file, &s->doc, err);
    if (ret < 0)
        return ret;
    if (check_doc(s->doc, &co, &diags) < 0) {
        kc_diags_print(&diags, stderr);
        ret = kc_err_set(err, KC_EINVAL,
                         "'%s' is not a valid manifest (%zu error%s above)",
                         s->opts->file, diags.n, diags.n == 1 ? "" : "s");
        kc_diags_release(&diags);
        return ret;
    }
    kc_diags_release(&diags);
    name = kc_node_get(s->doc->root, "name");
    if (!name || name->type != KC_NODE_SCALAR)
        return kc_err_set(err, KC_EINVAL, "'%s' has no name", s->opts->file);
    s->name = kc_xstrdup(name->str);
    ret = kc_file_read(s->opts->file, KC_MANIFEST_MAX_BYTES, &text, &len, err);
    if (ret < 0)
        return ret;
    kc_secret_digest(text, len, "", digest);
    s->manifest_digest = kc_xstrdup(digest);
    free(text);
    return 0;
}

/* providers: interpolated (secrets from ${env:} stay sensitive), without
 * references. */
static int load_providers(struct ui_session *s, struct kc_err *err)
{
    const struct kc_node *node = kc_node_get(s->doc->root, "providers");
    struct kc_interp_opts o = { 0 };
    int ret;

    if (!node) {
        s->providers = kc_value_new_map();
        return 0;
    }
    o.doc = s->doc;
    o.log = &s->log;
    ret = kc_interp_node(&o, node, &s->providers, err);
    if (ret < 0)
        return ret;
    if (kc_value_has_unknown(s->providers))
        return kc_err_set(err, KC_EINVAL,
                          "%s:%d:%d: providers: references to resources are "
                          "not allowed here",
                          node->pos.file, node->pos.line, node->pos.col);
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct ui_session *s = h->data;

    if (s->confirming) {
        /* At the prompt nothing has started: a signal means no. */
        s->answer = -1;
        fputc('\n', stdout);
        return;
    }
    if (++s->nsignals > 1) {
        fprintf(stderr,
                "\nkmsctl: aborted by a second signal; operations in flight "
                "may have completed without being recorded, and the lock is "
                "left behind: check, then 'kmsctl state unlock'\n");
        _exit(KC_EXIT_INTERRUPTED);
    }
    fprintf(stderr,
            "\nkmsctl: %s: starting nothing new, waiting for the operations "
            "in flight (signal again to abort)\n",
            signum == SIGINT ? "interrupted" : "terminated");
    kc_engine_cancel(&s->eng);
}

int ui_open(struct ui_session *s, struct cmd_opts *opts, bool lock,
            bool readonly, const char *command, struct kc_err *err)
{
    struct kc_http_config hc = { 0 };
    int ret;

    memset(s, 0, sizeof(*s));
    s->opts = opts;
    kc_log_init(&s->log, opts->debug         ? KC_LOG_DEBUG
                         : opts->verbose > 0 ? KC_LOG_INFO
                                             : KC_LOG_WARN);
    ret = load_manifest(s, err);
    if (ret < 0)
        return ret;
    if (opts->state_path)
        s->state_path = kc_xstrdup(opts->state_path);
    else {
        ret = kc_state_default_path(opts->file, s->name, &s->state_path, err);
        if (ret < 0)
            return ret;
    }
    if (lock) {
        ret = kc_lock_acquire(s->state_path, opts->lock_timeout, command,
                              &s->lock, err);
        if (ret < 0)
            return ret;
    }
    ret = kc_state_load(s->state_path, &s->st, err);
    /* A new state takes the manifest's name now, so that its first write
     * records it and another deployment's manifest is refused from then on. */
    if (ret == 0)
        ret = kc_state_check_deployment(s->st, s->name, err);
    if (ret < 0)
        return ret;
    ret = load_providers(s, err);
    if (ret < 0)
        return ret;
    ret = uv_loop_init(&s->loop);
    if (ret < 0)
        return kc_err_from_uv(err, ret, "uv_loop_init");
    s->loop_open = true;
    hc.loop = &s->loop;
    hc.log = &s->log;
    ret = kc_http_new(&hc, &s->http, err);
    if (ret < 0)
        return ret;
    s->reg = kc_registry_new();
    s->evalctx.doc = s->doc;
    s->evalctx.log = &s->log;
    s->eng.loop = &s->loop;
    s->eng.log = &s->log;
    s->eng.http = s->http;
    s->eng.reg = s->reg;
    s->eng.state = s->st;
    s->eng.providers = s->providers;
    s->eng.deployment = s->name;
    s->eng.manifest_dir = s->doc->dir;
    s->eng.parallelism = opts->parallelism;
    s->eng.consent = opts->identity_loss;
    s->eng.nconsent = opts->nidentity_loss;
    s->eng.targets = opts->targets;
    s->eng.ntargets = opts->ntargets;
    s->eng.eval_node = kc_expand_eval;
    s->eng.eval_data = &s->evalctx;
    s->eng.readonly = readonly;
    s->tty = !opts->json && isatty(STDOUT_FILENO);
    s->sigint.data = s;
    s->sigterm.data = s;
    if ((ret = uv_signal_init(&s->loop, &s->sigint)) < 0 ||
        (ret = uv_signal_init(&s->loop, &s->sigterm)) < 0)
        return kc_err_from_uv(err, ret, "uv_signal_init");
    s->sig_open = true;
    if ((ret = uv_signal_start(&s->sigint, on_signal, SIGINT)) < 0 ||
        (ret = uv_signal_start(&s->sigterm, on_signal, SIGTERM)) < 0)
        return kc_err_from_uv(err, ret, "uv_signal_start");
    /* Signals must not keep the loop alive. */
    uv_unref((uv_handle_t *)&s->sigint);
    uv_unref((uv_handle_t *)&s->sigterm);
    return 0;
}

/* --- progress --- */

static void utc_now(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *past(const char *what)
{
    static const struct {
        const char *a, *b;
    } t[] = {
        { "create", "created" },   { "update", "updated" },
        { "replace", "replaced" }, { "delete", "deleted" },
        { "read", "read" },        { "observe", "observed" },
        { "forget", "forgotten" }, { "noop", "recorded" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(t); i++)
        if (strcmp(t[i].a, what) == 0)
            return t[i].b;
    return what;
}

static const char *gerund(const char *what)
{
    static const struct {
        const char *a, *b;
    } t[] = {
        { "create", "creating" },   { "update", "updating" },
        { "replace", "replacing" }, { "delete", "deleting" },
        { "read", "reading" },      { "observe", "observing" },
        { "forget", "forgetting" },
    };

    for (size_t i = 0; i < KC_ARRAY_SIZE(t); i++)
        if (strcmp(t[i].a, what) == 0)
            return t[i].b;
    return what;
}

static void live_clear(struct ui_session *s)
{
    if (!s->tty)
        return;
    for (size_t i = 0; i < s->drawn; i++)
        fputs("\033[1A\033[2K", stdout);
    s->drawn = 0;
}

static void live_draw(struct ui_session *s)
{
    uint64_t now = uv_now(&s->loop);

    if (!s->tty)
        return;
    struct winsize ws;
    int cols = 80;

    /* A line wider than the terminal wraps, and the cursor moves of
     * live_clear would then miss it: cut lines to the width. */
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        cols = ws.ws_col;
    for (size_t i = 0; i < s->nlive; i++) {
        struct ui_live *l = &s->live[i];
        char line[1024];

        (void)kc_snprintf(line, sizeof(line), "  %s: %s... (%.0fs)%s%s",
                          l->address, gerund(l->what),
                          (double)(now - l->start_ms) / 1000.0,
                          l->note ? ": " : "", l->note ? l->note : "");
        /* Truncation is fine: the line is cut to the width anyway. */
        printf("%.*s\n", cols - 1, line);
    }
    s->drawn = s->nlive;
    fflush(stdout);
}

static void live_remove(struct ui_session *s, const char *addr)
{
    for (size_t i = 0; i < s->nlive; i++) {
        if (strcmp(s->live[i].address, addr) == 0) {
            free(s->live[i].address);
            free(s->live[i].what);
            free(s->live[i].note);
            memmove(&s->live[i], &s->live[i + 1],
                    (s->nlive - i - 1) * sizeof(*s->live));
            s->nlive--;
            return;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct ui_session *s = kc_container_of(t, struct ui_session, tick);

    live_clear(s);
    live_draw(s);
}

static void on_event(void *data, const struct kc_event *ev)
{
    struct ui_session *s = data;
    char ts[32];

    if (s->refreshing) {
        /* Observing: live lines on a terminal, lines with -v, else quiet;
         * failures are reported once the refresh ended. */
        if (!s->tty && (s->opts->verbose == 0 || ev->type == KC_EVENT_FAILED))
            return;
        if (s->tty && ev->type != KC_EVENT_STARTED &&
            ev->type != KC_EVENT_PROGRESS) {
            live_clear(s);
            live_remove(s, ev->address);
            live_draw(s);
            return;
        }
    }

    if (s->opts->json) {
        struct json_object *o = json_object_new_object();
        static const char *const types[] = { "started", "finished", "failed",
                                             "skipped", "progress" };

        utc_now(ts, sizeof(ts));
        json_object_object_add(o, "time", json_object_new_string(ts));
        json_object_object_add(o, "event",
                               json_object_new_string(types[ev->type]));
        json_object_object_add(o, "address",
                               json_object_new_string(ev->address));
        json_object_object_add(o, "action", json_object_new_string(ev->what));
        json_object_object_add(o, "elapsed",
                               json_object_new_double(ev->elapsed));
        if (ev->message)
            json_object_object_add(o, "message",
                                   json_object_new_string(ev->message));
        printf("%s\n",
               json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
        json_object_put(o);
        return;
    }
    live_clear(s);
    if (ev->type == KC_EVENT_STARTED && s->tty) {
        struct ui_live *l;

        kc_xgrow(&s->live, &s->caplive, s->nlive + 1, sizeof(*s->live));
        l = &s->live[s->nlive++];
        memset(l, 0, sizeof(*l));
        l->address = kc_xstrdup(ev->address);
        l->what = kc_xstrdup(ev->what);
        l->start_ms = uv_now(&s->loop);
    } else if (ev->type == KC_EVENT_PROGRESS && s->tty) {
        for (size_t i = 0; i < s->nlive; i++) {
            if (strcmp(s->live[i].address, ev->address) == 0) {
                free(s->live[i].note);
                s->live[i].note = kc_xstrdup(ev->message);
            }
        }
    } else {
        const char *prefix = "";

        if (!s->tty) {
            utc_now(ts, sizeof(ts));
            prefix = ts;
        }
        live_remove(s, ev->address);
        switch (ev->type) {
        case KC_EVENT_STARTED:
            printf("%s %s: %s started\n", prefix, ev->address, ev->what);
            break;
        case KC_EVENT_PROGRESS:
            printf("%s %s: %s\n", prefix, ev->address, ev->message);
            break;
        case KC_EVENT_FINISHED:
            printf("%s%s%s: %s (%.1fs)\n", prefix, *prefix ? " " : "",
                   ev->address, past(ev->what), ev->elapsed);
            break;
        case KC_EVENT_FAILED:
            printf("%s%s%s: %s failed: %s\n", prefix, *prefix ? " " : "",
                   ev->address, ev->what, ev->message);
            break;
        case KC_EVENT_SKIPPED:
            printf("%s%s%s: skipped: %s\n", prefix, *prefix ? " " : "",
                   ev->address, ev->message);
            break;
        }
    }
    live_draw(s);
    fflush(stdout);
}

static void on_engine_done(struct kc_engine *eng, int status)
{
    struct ui_session *s = kc_container_of(eng, struct ui_session, eng);

    s->status = status;
    s->done = true;
}

static int run_until_done(struct ui_session *s)
{
    s->done = false;
    while (!s->done) {
        if (uv_run(&s->loop, UV_RUN_ONCE) == 0 && !s->done)
            KC_BUG("the loop ran dry before the engine finished");
    }
    return s->status;
}

int ui_plan(struct ui_session *s, bool destroy, struct kc_err *err)
{
    struct kc_graph *g = NULL;
    int ret;

    if (destroy) {
        g = kc_graph_new();
    } else {
        ret = kc_expand_doc(s->doc, &g, err);
        if (ret < 0)
            return ret;
    }
    ret = kc_engine_prepare(&s->eng, g, destroy, &s->plan, err);
    if (ret < 0)
        return ret;
    s->plan->manifest = kc_xstrdup(s->opts->file);
    s->plan->manifest_digest = kc_xstrdup(s->manifest_digest);
    if (!s->opts->json) {
        s->eng.on_event = on_event;
        s->eng.event_data = s;
    }
    s->refreshing = true;
    ret = kc_engine_refresh(&s->eng, s->plan, on_engine_done, err);
    if (ret < 0) {
        s->refreshing = false;
        return ret;
    }
    ret = run_until_done(s);
    s->refreshing = false;
    live_clear(s);
    s->eng.on_event = NULL;
    if (ret < 0) {
        /* Name every resource that could not be observed. */
        for (size_t i = 0; i < s->plan->n; i++)
            if (s->plan->items[i].st == KC_ITEM_FAILED)
                fprintf(stderr, "error: %s: %s\n",
                        s->plan->items[i].res->address,
                        s->plan->items[i].error);
        if (ret == KC_ECANCELED)
            return kc_err_set(err, ret, "interrupted");
        return kc_err_set(err, ret, "refreshing the state failed");
    }
    return 0;
}

static void print_summary(struct ui_session *s)
{
    size_t ok = 0, failed = 0, skipped = 0;
    double elapsed;

    uv_update_time(&s->loop);
    elapsed = (double)(uv_now(&s->loop) - s->apply_start_ms) / 1000.0;
    for (size_t i = 0; i < s->plan->n; i++) {
        const struct kc_plan_item *it = &s->plan->items[i];

        if (it->excluded || it->action == KC_ACTION_NOOP)
            continue;
        ok += it->st == KC_ITEM_DONE;
        failed += it->st == KC_ITEM_FAILED;
        skipped += it->st == KC_ITEM_SKIPPED || it->st == KC_ITEM_PENDING;
    }
    if (s->opts->json) {
        struct json_object *o = json_object_new_object();
        struct json_object *f = json_object_new_array();
        struct json_object *sk = json_object_new_array();

        for (size_t i = 0; i < s->plan->n; i++) {
            const struct kc_plan_item *it = &s->plan->items[i];
            struct json_object *e;

            if (it->st != KC_ITEM_FAILED && it->st != KC_ITEM_SKIPPED)
                continue;
            e = json_object_new_object();
            json_object_object_add(e, "address",
                                   json_object_new_string(it->res->address));
            json_object_object_add(
                e, "message",
                json_object_new_string(it->error ? it->error : ""));
            json_object_array_add(it->st == KC_ITEM_FAILED ? f : sk, e);
        }
        json_object_object_add(o, "event", json_object_new_string("summary"));
        json_object_object_add(o, "succeeded", json_object_new_int64(ok));
        json_object_object_add(o, "failed", f);
        json_object_object_add(o, "skipped", sk);
        json_object_object_add(o, "elapsed", json_object_new_double(elapsed));
        printf("%s\n",
               json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return;
    }
    printf("\n%s %s: %zu succeeded, %zu failed, %zu skipped. (%.1fs)\n",
           s->eng.destroy ? "Destroy" : "Apply",
           failed || skipped ? "incomplete" : "complete", ok, failed, skipped,
           elapsed);
    for (size_t i = 0; i < s->plan->n; i++) {
        const struct kc_plan_item *it = &s->plan->items[i];

        if (it->st == KC_ITEM_FAILED)
            printf("  failed:  %s: %s\n", it->res->address, it->error);
    }
    for (size_t i = 0; i < s->plan->n; i++) {
        const struct kc_plan_item *it = &s->plan->items[i];

        if (it->st == KC_ITEM_SKIPPED)
            printf("  skipped: %s: %s\n", it->res->address, it->error);
    }
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

int ui_apply(struct ui_session *s, struct kc_err *err)
{
    int ret;

    s->eng.on_event = on_event;
    s->eng.event_data = s;
    if (s->tty) {
        ret = uv_timer_init(&s->loop, &s->tick);
        if (ret < 0)
            return kc_err_from_uv(err, ret, "uv_timer_init");
        s->tick_open = true;
        ret = uv_timer_start(&s->tick, on_tick, 1000, 1000);
        if (ret < 0)
            return kc_err_from_uv(err, ret, "uv_timer_start");
        uv_unref((uv_handle_t *)&s->tick);
    }
    uv_update_time(&s->loop);
    s->apply_start_ms = uv_now(&s->loop);
    ret = kc_engine_apply(&s->eng, s->plan, on_engine_done, err);
    if (ret < 0)
        return ret;
    ret = run_until_done(s);
    live_clear(s);
    if (s->tick_open) {
        uv_close((uv_handle_t *)&s->tick, on_closed);
        s->tick_open = false;
    }
    print_summary(s);
    fflush(stdout);
    if (ret < 0)
        kc_err_set(err, ret, "%s", s->eng.err.msg);
    return ret;
}

void ui_print_plan(struct ui_session *s)
{
    if (s->opts->json && strcmp(s->opts->verb, "plan") != 0) {
        /* apply/destroy --json: one line among the events. */
        struct json_object *e = json_object_new_object();

        json_object_object_add(e, "event", json_object_new_string("plan"));
        json_object_object_add(e, "plan", kc_plan_to_json(s->plan));
        printf("%s\n",
               json_object_to_json_string_ext(
                   e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(e);
    } else if (s->opts->json) {
        struct json_object *j = kc_plan_to_json(s->plan);

        printf("%s\n", json_object_to_json_string_ext(
                           j, JSON_C_TO_STRING_PRETTY |
                                  JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    } else {
        struct kc_buf out;

        kc_buf_init(&out, 0);
        kc_plan_render(s->plan, s->opts->color, &out);
        fputs(kc_buf_str(&out) ? kc_buf_str(&out) : "", stdout);
        kc_buf_release(&out);
    }
    fflush(stdout);
}

int ui_save_plan(struct ui_session *s, const char *path, struct kc_err *err)
{
    struct json_object *j = kc_plan_to_json(s->plan);
    const char *text = json_object_to_json_string_ext(
        j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    int ret = kc_file_write_atomic(path, text, strlen(text), 0600, err);

    json_object_put(j);
    return ret;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct ui_session *s = h->data;

    (void)size;
    buf->base = s->rbuf;
    buf->len = sizeof(s->rbuf);
}

/* The answer is read on the loop, so that a signal at the prompt is an
 * answer too ("no"), not a kill that would leave the lock behind. */
static void on_answer(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct ui_session *s = st->data;

    if (n < 0) {
        s->answer = -1;
        return;
    }
    for (ssize_t i = 0; i < n && !s->answer; i++) {
        char c = buf->base[i];

        if (c == '\n' || c == '\r') {
            s->line[s->linelen] = '\0';
            s->answer = strcmp(s->line, "y") == 0 ||
                                strcmp(s->line, "yes") == 0 ||
                                strcmp(s->line, "Y") == 0
                            ? 1
                            : -1;
        } else if (s->linelen < sizeof(s->line) - 1) {
            s->line[s->linelen++] = c;
        }
    }
}

int ui_confirm(struct ui_session *s, const char *question, struct kc_err *err)
{
    int ret;

    if (s->opts->auto_approve)
        return 0;
    if (!isatty(STDIN_FILENO))
        return kc_err_set(err, KC_EPERM,
                          "stdin is not a terminal: nothing was changed; run "
                          "with --auto-approve to %s without asking",
                          s->opts->verb);
    ret = uv_tty_init(&s->loop, &s->in, STDIN_FILENO, 1);
    if (ret < 0)
        return kc_err_from_uv(err, ret, "reading the answer");
    s->in_open = true;
    s->in.data = s;
    printf("\n%s [y/N] ", question);
    fflush(stdout);
    s->answer = 0;
    s->linelen = 0;
    s->confirming = true;
    ret = uv_read_start((uv_stream_t *)&s->in, on_alloc, on_answer);
    if (ret < 0) {
        s->confirming = false;
        return kc_err_from_uv(err, ret, "reading the answer");
    }
    while (!s->answer)
        if (uv_run(&s->loop, UV_RUN_ONCE) == 0 && !s->answer)
            s->answer = -1;
    s->confirming = false;
    (void)uv_read_stop((uv_stream_t *)&s->in); /* always 0 */
    uv_close((uv_handle_t *)&s->in, on_closed);
    s->in_open = false;
    if (s->answer < 0)
        return kc_err_set(err, KC_EPERM, "%s cancelled: nothing changed",
                          s->opts->verb);
    return 0;
}

static void unref_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    uv_unref(h);
}

void ui_close(struct ui_session *s)
{
    kc_engine_release(&s->eng);
    kc_http_close(s->http);
    s->http = NULL;
    if (s->sig_open) {
        uv_close((uv_handle_t *)&s->sigint, on_closed);
        uv_close((uv_handle_t *)&s->sigterm, on_closed);
    }
    if (s->tick_open)
        uv_close((uv_handle_t *)&s->tick, on_closed);
    if (s->in_open)
        uv_close((uv_handle_t *)&s->in, on_closed);
    if (s->loop_open) {
        /* A handle a provider forgot must not keep kmsctl from exiting:
         * unref everything, run the close callbacks, and let
         * uv_loop_close tell what was left. */
        uv_walk(&s->loop, unref_handle, NULL);
        (void)uv_run(&s->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&s->loop) != 0)
            fprintf(stderr, "warning: handles left open at exit\n");
    }
    kc_plan_free(s->plan);
    kc_state_free(s->st);
    kc_lock_release(s->lock);
    kc_value_free(s->providers);
    kc_registry_free(s->reg);
    for (size_t i = 0; i < s->nlive; i++) {
        free(s->live[i].address);
        free(s->live[i].what);
        free(s->live[i].note);
    }
    free(s->live);
    for (size_t i = 0; i < s->nsaved_targets; i++)
        free(s->saved_targets[i]);
    free(s->saved_targets);
    kc_doc_free(s->doc);
    free(s->name);
    free(s->state_path);
    free(s->manifest_digest);
    kc_log_release(&s->log);
}
