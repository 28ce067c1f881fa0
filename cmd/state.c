/* cmd/state.c: kmsctl state list|show ADDRESS|rm ADDRESS...|unlock. */
#include "cmd/cmd.h"

#include <json-c/json.h>

#include "reconcile/json.h"
#include "reconcile/lock.h"
#include "reconcile/manifest.h"
#include "reconcile/state.h"

/* The state path: --state, else .kmsctl/<name>.state.json beside the
 * manifest. *NAME gets the manifest's name when it was read (else NULL). */
static int state_path(const struct cmd_opts *opts, char **path, char **name,
                      struct kc_err *err)
{
    struct kc_doc *doc = NULL;
    const struct kc_node *n;
    int ret;

    *path = NULL;
    *name = NULL;
    if (opts->state_path) {
        *path = kc_xstrdup(opts->state_path);
        return 0;
    }
    /* Only the name is needed: a manifest with other errors still lets the
     * operator list, show, remove and unlock. */
    ret = kc_manifest_load(opts->file, &doc, err);
    if (ret < 0)
        return kc_err_prefix(err, "the state path comes from the manifest's "
                                  "name (or give --state PATH)");
    n = doc->root ? kc_node_get(doc->root, "name") : NULL;
    if (!n || n->type != KC_NODE_SCALAR || !n->str[0]) {
        ret = kc_err_set(err, KC_EINVAL,
                         "%s: no 'name' (a string): the state path comes "
                         "from it (or give --state PATH)",
                         opts->file);
    } else {
        ret = kc_state_default_path(opts->file, n->str, path, err);
        if (ret == 0)
            *name = kc_xstrdup(n->str);
    }
    kc_doc_free(doc);
    return ret;
}

static int exit_code(int ret)
{
    return ret == KC_ELOCKED ? KC_EXIT_LOCKED : KC_EXIT_ERROR;
}

static int state_list(const struct cmd_opts *opts, struct kc_state *st)
{
    if (opts->json) {
        struct json_object *arr = json_object_new_array();
        char *text;

        for (size_t i = 0; i < kc_state_count(st); i++)
            json_object_array_add(
                arr, json_object_new_string(kc_state_address(st, i)));
        text = kc_json_dump(arr, true);
        printf("%s\n", text);
        free(text);
        json_object_put(arr);
        return 0;
    }
    for (size_t i = 0; i < kc_state_count(st); i++)
        printf("%s\n", kc_state_address(st, i));
    return 0;
}

static int state_show(struct kc_state *st, const char *addr, struct kc_err *err)
{
    struct json_object *rec = kc_state_resource_json(st, addr);
    char *text;

    if (!rec)
        return kc_err_set(err, KC_ENOENT, "no record for '%s' in state '%s'",
                          addr, kc_state_path(st));
    text = kc_json_dump(rec, true);
    printf("%s\n", text);
    free(text);
    json_object_put(rec);
    return 0;
}

static int state_rm(const struct cmd_opts *opts, const char *path,
                    struct kc_err *err)
{
    struct kc_lock *lock = NULL;
    struct kc_state *st = NULL;
    int ret;

    ret = kc_lock_acquire(path, opts->lock_timeout, "kmsctl state rm", &lock,
                          err);
    if (ret < 0)
        return ret;
    ret = kc_state_load(path, &st, err);
    if (ret < 0)
        goto out;
    if (!kc_state_exists(st)) {
        ret = kc_err_set(err, KC_ENOENT, "no state at '%s'", path);
        goto out;
    }
    /* Check every address before changing anything. */
    for (size_t i = 1; i < opts->nargs; i++) {
        if (!kc_state_get(st, opts->args[i])) {
            ret = kc_err_set(err, KC_ENOENT,
                             "no record for '%s' in state '%s': nothing "
                             "removed",
                             opts->args[i], path);
            goto out;
        }
    }
    for (size_t i = 1; i < opts->nargs; i++) {
        kc_state_remove(st, opts->args[i]);
        kc_state_intent_clear(st, opts->args[i]);
    }
    ret = kc_state_write(st, err);
    if (ret < 0)
        goto out;
    for (size_t i = 1; i < opts->nargs; i++)
        printf("removed %s\n", opts->args[i]);
out:
    kc_state_free(st);
    kc_lock_release(lock);
    return ret;
}

static int state_unlock(const char *path, struct kc_err *err)
{
    char *cleared = NULL;
    int ret = kc_lock_break(path, &cleared, err);

    if (ret < 0)
        return ret;
    if (cleared)
        printf("cleared the stale lock of %s on state '%s'\n", cleared, path);
    else
        printf("state '%s' is not locked\n", path);
    free(cleared);
    return 0;
}

static int state_read(const struct cmd_opts *opts, const char *path,
                      const char *name, struct kc_err *err)
{
    struct kc_state *st = NULL;
    const char *sub = opts->args[0];
    int ret;

    ret = kc_state_load(path, &st, err);
    if (ret == 0 && name && kc_state_exists(st))
        ret = kc_state_check_deployment(st, name, err);
    if (ret < 0)
        goto out;
    if (strcmp(sub, "list") == 0)
        ret = state_list(opts, st);
    else
        ret = state_show(st, opts->args[1], err);
out:
    kc_state_free(st);
    return ret;
}

int cmd_state(int argc, char **argv)
{
    struct cmd_opts opts;
    struct kc_err err = { 0 };
    char *path = NULL, *name = NULL;
    const char *sub;
    size_t want;
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    sub = opts.nargs ? opts.args[0] : "";
    want = strcmp(sub, "list") == 0 || strcmp(sub, "unlock") == 0 ? 1
           : strcmp(sub, "show") == 0                             ? 2
           : strcmp(sub, "rm") == 0                               ? 0
                                                                  : 99;
    if (want == 99 || (want && opts.nargs != want) ||
        (!want && opts.nargs < 2)) {
        fprintf(stderr, "usage: kmsctl state list | show ADDRESS | rm "
                        "ADDRESS... | unlock [--state PATH] [-f FILE]\n");
        ret = KC_EXIT_ERROR;
        goto done;
    }
    ret = state_path(&opts, &path, &name, &err);
    if (ret < 0)
        goto out;
    if (strcmp(sub, "rm") == 0)
        ret = state_rm(&opts, path, &err);
    else if (strcmp(sub, "unlock") == 0)
        ret = state_unlock(path, &err);
    else
        ret = state_read(&opts, path, name, &err);
out:
    if (ret < 0) {
        cmd_print_err(&opts, &err);
        ret = exit_code(ret);
    } else {
        ret = KC_EXIT_OK;
    }
done:
    free(path);
    free(name);
    cmd_opts_release(&opts);
    return ret;
}
