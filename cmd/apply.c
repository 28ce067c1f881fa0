/* cmd/apply.c: kmsctl apply [PLANFILE], make the world match the manifest. */
#include "cmd/ui.h"

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "reconcile/schema.h"

static bool same_targets(const struct cmd_opts *opts, struct json_object *tg)
{
    size_t n = json_object_array_length(tg);

    if (n != opts->ntargets)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *t =
            json_object_get_string(json_object_array_get_idx(tg, i));
        bool found = false;

        for (size_t k = 0; k < opts->ntargets && !found; k++)
            found = t && strcmp(t, opts->targets[k]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Short JSON text of V for messages (BUF). */
static const char *short_json(struct json_object *v, char *buf, size_t len)
{
    const char *t =
        v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN) : "null";

    if (strlen(t) < len)
        return t;
    snprintf(buf, len, "%.*s...", (int)(len > 4 ? len - 4 : 0), t);
    return buf;
}

static struct json_object *find_by(struct json_object *arr, const char *key,
                                   const char *want)
{
    for (size_t k = 0; k < json_object_array_length(arr); k++) {
        struct json_object *o = json_object_array_get_idx(arr, k);
        const char *v = kc_json_opt_str(o, key);

        if (v && strcmp(v, want) == 0)
            return o;
    }
    return NULL;
}

static bool same_member(struct json_object *a, struct json_object *b,
                        const char *key)
{
    struct json_object *x = NULL, *y = NULL;

    json_object_object_get_ex(a, key, &x);
    json_object_object_get_ex(b, key, &y);
    return json_object_equal(x, y) != 0;
}

/* "BEFORE -> AFTER" of the plan change C, shortened, in BUF (each side is
 * under 96 bytes, so it always fits). */
static const char *change_text(struct json_object *c, char buf[196])
{
    struct json_object *before = NULL, *after = NULL;
    char b1[96], b2[96];

    json_object_object_get_ex(c, "before", &before);
    json_object_object_get_ex(c, "after", &after);
    snprintf(buf, 196, "%s -> %s", short_json(before, b1, sizeof(b1)),
             short_json(after, b2, sizeof(b2)));
    return buf;
}

/* The first difference between the per-field changes of resource ADDRESS
 * in the saved plan (WAS, may be NULL) and a fresh one (NOW): < 0 with ERR
 * naming it, else 0. */
static int same_changes(const char *path, const char *address,
                        struct json_object *was, struct json_object *now,
                        struct kc_err *err)
{
    static const char *const keys[] = { "before", "after", "unknown",
                                        "sensitive" };
    struct json_object *wc = NULL, *nc = NULL;
    char t1[196], t2[196];

    if (was)
        json_object_object_get_ex(was, "changes", &wc);
    if (now)
        json_object_object_get_ex(now, "changes", &nc);
    for (size_t k = 0; k < json_object_array_length(nc); k++) {
        struct json_object *c = json_object_array_get_idx(nc, k);
        const char *field = kc_json_opt_str(c, "field");
        struct json_object *o = field ? find_by(wc, "field", field) : NULL;
        bool same = o != NULL;

        for (size_t j = 0; same && j < KC_ARRAY_SIZE(keys); j++)
            same = same_member(o, c, keys[j]);
        if (same)
            continue;
        if (!o)
            return kc_err_set(err, KC_ESTATE,
                              "the world changed since the plan '%s' was "
                              "saved: '%s' field '%s' now changes (%s), "
                              "the saved plan left it alone: run 'kmsctl "
                              "plan' again",
                              path, address, field ? field : "?",
                              change_text(c, t1));
        return kc_err_set(err, KC_ESTATE,
                          "the world changed since the plan '%s' was saved: "
                          "'%s' field '%s' was to change %s, now %s: run "
                          "'kmsctl plan' again",
                          path, address, field, change_text(o, t1),
                          change_text(c, t2));
    }
    for (size_t k = 0; k < json_object_array_length(wc); k++) {
        struct json_object *c = json_object_array_get_idx(wc, k);
        const char *field = kc_json_opt_str(c, "field");

        if (field && find_by(nc, "field", field))
            continue;
        return kc_err_set(err, KC_ESTATE,
                          "the world changed since the plan '%s' was saved: "
                          "'%s' field '%s' was to change %s, now it does "
                          "not: run 'kmsctl plan' again",
                          path, address, field ? field : "?",
                          change_text(c, t1));
    }
    return 0;
}

/* A saved plan applies only to the state and manifest it was made from, and
 * only if a fresh plan has the same action and the same per-field changes
 * (before, after) for every resource. */
static int check_saved(struct ui_session *s, const char *path,
                       struct kc_err *err)
{
    struct json_object *saved = NULL, *res, *fresh = NULL, *fres = NULL;
    const char *lineage = NULL, *digest = NULL;
    int64_t serial = -1;
    char *text = NULL;
    size_t len = 0;
    int ret;

    ret = kc_file_read(path, 64u << 20, &text, &len, err);
    if (ret == 0)
        ret = kc_json_parse(text, len, path, &saved, err);
    if (ret == 0 && (ret = kc_schema_check_json("plan", saved, err)) < 0)
        kc_err_prefix(err, "'%s' is not a kmsctl plan", path);
    if (ret < 0)
        goto out;
    kc_json_get_str(saved, "lineage", &lineage, NULL);
    kc_json_get_int(saved, "serial", &serial, NULL);
    digest = kc_json_opt_str(saved, "manifest_digest");
    if (strcmp(lineage, kc_state_lineage(s->st)) != 0 ||
        serial != kc_state_serial(s->st)) {
        ret = kc_err_set(err, KC_ESTATE,
                         "the state changed since the plan '%s' was saved "
                         "(serial %lld, now %lld): run 'kmsctl plan' again",
                         path, (long long)serial,
                         (long long)kc_state_serial(s->st));
        goto out;
    }
    if (!digest || strcmp(digest, s->manifest_digest) != 0) {
        ret = kc_err_set(err, KC_ESTATE,
                         "the manifest '%s' changed since the plan '%s' was "
                         "saved: run 'kmsctl plan' again",
                         s->opts->file, path);
        goto out;
    }
    {
        bool destroy = false;
        struct json_object *tg = NULL;
        size_t n;

        kc_json_get_bool(saved, "destroy", &destroy, NULL);
        json_object_object_get_ex(saved, "targets", &tg);
        n = json_object_array_length(tg);
        /* The saved plan's --target, unless given again (then the same). */
        if (s->opts->ntargets && !same_targets(s->opts, tg)) {
            ret = kc_err_set(err, KC_EINVAL,
                             "--target differs from the saved plan's: give "
                             "the same or none");
            goto out;
        }
        if (!s->opts->ntargets && n) {
            s->saved_targets = kc_xcalloc(n + 1, sizeof(*s->saved_targets));
            for (size_t i = 0; i < n; i++)
                s->saved_targets[i] = kc_xstrdup(
                    json_object_get_string(json_object_array_get_idx(tg, i)));
            s->nsaved_targets = n;
            s->eng.targets = s->saved_targets;
            s->eng.ntargets = n;
        }
        ret = ui_plan(s, destroy, err);
        if (ret < 0)
            goto out;
    }
    json_object_object_get_ex(saved, "resources", &res);
    fresh = kc_plan_to_json(s->plan);
    json_object_object_get_ex(fresh, "resources", &fres);
    for (size_t i = 0; i < s->plan->n; i++) {
        const struct kc_plan_item *it = &s->plan->items[i];
        const char *was = "noop";

        if (it->excluded)
            continue;
        for (size_t k = 0; k < json_object_array_length(res); k++) {
            struct json_object *r = json_object_array_get_idx(res, k);
            const char *a = kc_json_opt_str(r, "address");

            if (a && strcmp(a, it->res->address) == 0)
                was = kc_json_opt_str(r, "action");
        }
        if (strcmp(was, kc_action_name(it->action)) != 0) {
            ret = kc_err_set(err, KC_ESTATE,
                             "the world changed since the plan '%s' was "
                             "saved: '%s' was to %s, now %s: run 'kmsctl "
                             "plan' again",
                             path, it->res->address, was,
                             kc_action_name(it->action));
            goto out;
        }
        ret = same_changes(path, it->res->address,
                           find_by(res, "address", it->res->address),
                           find_by(fres, "address", it->res->address), err);
        if (ret < 0)
            goto out;
    }
out:
    json_object_put(fresh);
    json_object_put(saved);
    free(text);
    return ret;
}

int cmd_apply(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs > 1) {
        fprintf(stderr, "usage: kmsctl apply [PLANFILE] [options]\n");
        cmd_opts_release(&opts);
        return KC_EXIT_ERROR;
    }
    ret = ui_open(&s, &opts, true, false, "kmsctl apply", &err);
    if (ret < 0)
        goto out;
    if (opts.nargs == 1) {
        ret = check_saved(&s, opts.args[0], &err);
        if (ret == 0)
            ret = kc_plan_check_consent(s.plan, &err);
        if (ret < 0)
            goto out;
    } else {
        ret = ui_plan(&s, false, &err);
        if (ret < 0)
            goto out;
        ui_print_plan(&s);
        ret = kc_plan_check_consent(s.plan, &err);
        if (ret == 0 && kc_plan_has_changes(s.plan))
            ret = ui_confirm(&s, "Apply these changes?", &err);
        if (ret < 0)
            goto out;
    }
    ret = ui_apply(&s, &err);
out:
    return ui_finish(&s, &opts, ret, &err);
}
