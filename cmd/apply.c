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

/* A saved plan applies only to the state and manifest it was made from, and
 * only if the world still calls for the same actions. */
static int check_saved(struct ui_session *s, const char *path,
                       struct kc_err *err)
{
    struct json_object *saved = NULL, *res;
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
    }
out:
    json_object_put(saved);
    free(text);
    return ret;
}

static int refuse_without_consent(struct ui_session *s, struct kc_err *err)
{
    for (size_t i = 0; i < s->plan->n; i++) {
        const struct kc_plan_item *it = &s->plan->items[i];

        if (!it->excluded && it->consent && !it->consented &&
            it->action != KC_ACTION_NOOP)
            return kc_err_set(err, KC_EPERM,
                              "'%s' %s refused: %s (consent with "
                              "--allow-identity-loss %s)",
                              it->res->address, kc_action_name(it->action),
                              it->consent, it->res->address);
    }
    return 0;
}

int cmd_apply(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    int ret = cmd_parse_opts(&opts, argc, argv);

    if (ret != 0) {
        cmd_opts_release(&opts);
        return ret < 0 ? KC_EXIT_OK : ret;
    }
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
            ret = refuse_without_consent(&s, &err);
        if (ret < 0)
            goto out;
    } else {
        ret = ui_plan(&s, false, &err);
        if (ret < 0)
            goto out;
        ui_print_plan(&s);
        ret = refuse_without_consent(&s, &err);
        if (ret == 0 && kc_plan_has_changes(s.plan))
            ret = ui_confirm(&s, "Apply these changes?", &err);
        if (ret < 0)
            goto out;
    }
    ret = ui_apply(&s, &err);
out:
    if (ret < 0) {
        if (ret != KC_EREMOTE)
            cmd_print_err(&opts, &err);
        ret = ui_exit_code(ret);
    }
    ui_close(&s);
    cmd_opts_release(&opts);
    return ret;
}
