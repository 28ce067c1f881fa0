/* cmd/drift.c: kmsctl drift, compare the world with the manifest (for
 * cron). It refreshes and diffs, nothing else: the engine runs read-only
 * (no op may record an intent or write the state), no apply is ever
 * started, the state is neither locked nor written. Exit 0 in sync, 2 the
 * world changed outside kmsctl (whatever else is pending), 4 only manifest
 * changes not applied yet, 1 error. */
#include "cmd/ui.h"

#include <time.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"

/* The Prometheus textfile, written atomically (node_exporter's textfile
 * collector must never read half a file). */
static int write_prom(const char *path, const char *name, bool ok,
                      size_t external, size_t manifest, struct kc_err *err)
{
    struct kc_buf b;
    struct timespec ts;
    int ret;

    clock_gettime(CLOCK_REALTIME, &ts);
    kc_buf_init(&b, 0);
    kc_buf_addf(&b,
                "# HELP kmsctl_drift_resources Resources that differ from "
                "the manifest, by cause.\n"
                "# TYPE kmsctl_drift_resources gauge\n"
                "kmsctl_drift_resources{deployment=\"%s\",cause=\"external\"} "
                "%zu\n"
                "kmsctl_drift_resources{deployment=\"%s\",cause=\"manifest\"} "
                "%zu\n"
                "# HELP kmsctl_drift_check_success 1 if the last drift check "
                "completed.\n"
                "# TYPE kmsctl_drift_check_success gauge\n"
                "kmsctl_drift_check_success{deployment=\"%s\"} %d\n"
                "# HELP kmsctl_last_check_timestamp_seconds When the last "
                "drift check ran.\n"
                "# TYPE kmsctl_last_check_timestamp_seconds gauge\n"
                "kmsctl_last_check_timestamp_seconds{deployment=\"%s\"} "
                "%lld\n",
                name, external, name, manifest, name, ok ? 1 : 0, name,
                (long long)ts.tv_sec);
    ret = kc_file_write_atomic(path, kc_buf_str(&b), b.len, 0644, err);
    kc_buf_release(&b);
    return ret;
}

/* Resources with an external / a manifest difference. */
static void count(const struct kc_plan *plan, size_t *ext, size_t *man)
{
    *ext = plan->nunmanaged; /* labelled objects nobody manages */
    *man = 0;
    for (size_t i = 0; i < plan->n; i++) {
        const struct kc_plan_item *it = &plan->items[i];
        bool e = it->cause == KC_CAUSE_EXTERNAL;
        bool m = it->cause == KC_CAUSE_MANIFEST && it->action != KC_ACTION_NOOP;

        if (it->excluded)
            continue;
        for (size_t c = 0; c < it->nchanges; c++) {
            e |= it->changes[c].cause == KC_CAUSE_EXTERNAL;
            m |= it->changes[c].cause == KC_CAUSE_MANIFEST;
        }
        *ext += e;
        *man += m && !e;
    }
}

static void print_text(const struct kc_plan *plan)
{
    struct json_object *rep = kc_plan_drift_json(plan), *diffs;

    json_object_object_get_ex(rep, "differences", &diffs);
    for (size_t i = 0; i < json_object_array_length(diffs); i++) {
        struct json_object *d = json_object_array_get_idx(diffs, i), *v;
        const char *field =
            json_object_get_string(json_object_object_get(d, "field"));

        printf("%s %s%s%s: expected ",
               json_object_get_string(json_object_object_get(d, "cause")),
               json_object_get_string(json_object_object_get(d, "address")),
               field ? " " : "", field ? field : "");
        v = json_object_object_get(d, "expected");
        printf("%s, actual ", v ? json_object_to_json_string(v) : "null");
        v = json_object_object_get(d, "actual");
        printf("%s\n", v ? json_object_to_json_string(v) : "null");
    }
    json_object_put(rep);
}

int cmd_drift(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    bool ext = false, man = false;
    size_t next = 0, nman = 0;
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    ret = ui_open(&s, &opts, false, true, "kmsctl drift", &err);
    if (ret == 0)
        ret = ui_plan(&s, false, &err);
    if (ret == 0) {
        kc_plan_drift(s.plan, &ext, &man);
        count(s.plan, &next, &nman);
        if (opts.json) {
            struct json_object *rep = kc_plan_drift_json(s.plan);

            printf("%s\n", json_object_to_json_string_ext(
                               rep, JSON_C_TO_STRING_PRETTY |
                                        JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(rep);
        } else if (!ext && !man) {
            printf("In sync: the world matches the manifest.\n");
        } else {
            print_text(s.plan);
        }
    }
    if (opts.prom) {
        struct kc_err perr = { 0 };

        if (write_prom(opts.prom, s.name ? s.name : "", ret == 0, next, nman,
                       &perr) < 0) {
            fprintf(stderr, "error: --prom: %s\n", perr.msg);
            if (ret == 0)
                ret = perr.code;
        }
    }
    if (ret < 0) {
        if (err.msg[0])
            cmd_print_err(&opts, &err);
        ret = KC_EXIT_ERROR;
    } else {
        ret = ext ? KC_EXIT_DRIFT : man ? KC_EXIT_PENDING : KC_EXIT_OK;
    }
    ui_close(&s);
    cmd_opts_release(&opts);
    return ret;
}
