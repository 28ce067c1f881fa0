/* cmd/output.c: kmsctl output [NAME], the outputs recorded in the state.
 * NAME is an address ("gcp.instance.kms": all its outputs), an address and
 * an output ("gcp.instance.kms.external_ip": the value alone), or a
 * reference as the manifest writes it ("kms_vms.kms.external_ip"). */
#include "cmd/ui.h"

#include <json-c/json.h>

#include "reconcile/graph.h"
#include "reconcile/json.h"
#include "reconcile/manifest.h"
#include "reconcile/state.h"

static int state_path(const struct cmd_opts *opts, char **path,
                      struct kc_err *err)
{
    struct kc_doc *doc = NULL;
    const struct kc_node *name;
    int ret;

    if (opts->state_path) {
        *path = kc_xstrdup(opts->state_path);
        return 0;
    }
    ret = kc_manifest_load(opts->file, &doc, err);
    if (ret < 0)
        return ret;
    name = kc_node_get(doc->root, "name");
    if (!name || name->type != KC_NODE_SCALAR)
        ret = kc_err_set(err, KC_EINVAL, "'%s' has no name", opts->file);
    else
        ret = kc_state_default_path(opts->file, name->str, path, err);
    kc_doc_free(doc);
    return ret;
}

static void print_value(struct json_object *v)
{
    if (json_object_is_type(v, json_type_string))
        printf("%s\n", json_object_get_string(v));
    else
        printf("%s\n",
               json_object_to_json_string_ext(
                   v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Sensitive outputs are stored as digests: never shown as values. */
static struct json_object *shown(struct json_object *v)
{
    const char *s = json_object_is_type(v, json_type_string)
                        ? json_object_get_string(v)
                        : NULL;

    if (s && strncmp(s, "(sensitive", 10) == 0)
        return json_object_new_string("(sensitive)");
    return json_object_get(v);
}

/* NAME as the manifest writes references ("kms_vms.dstack-kms.external_ip"):
 * the manifest's aliases say which resource supplies it. True if printed. */
static bool by_reference(struct cmd_opts *opts, struct kc_state *st,
                         const char *want)
{
    struct ui_session s;
    struct kc_err err = { 0 };
    struct kc_graph *g = NULL;
    struct kc_resource *res;
    char *name = NULL;
    const struct kc_state_resource *rec;
    const struct kc_value *v;
    bool printed = false;

    if (ui_open(&s, opts, false, true, "kmsctl output", &err) == 0 &&
        kc_expand_doc(s.doc, &g, &err) == 0 &&
        kc_graph_resolve_ref(g, want, &res, &name, &err) == 0 &&
        (rec = kc_state_get(st, res->address)) && rec->outputs &&
        (v = kc_value_map_get(rec->outputs, name))) {
        struct json_object *j = kc_value_to_json(v, NULL);
        struct json_object *sv = shown(j);

        if (opts->json)
            printf("%s\n", json_object_to_json_string(sv));
        else
            print_value(sv);
        json_object_put(sv);
        json_object_put(j);
        printed = true;
    }
    free(name);
    kc_graph_free(g);
    ui_close(&s);
    return printed;
}

int cmd_output(int argc, char **argv)
{
    struct cmd_opts opts;
    struct kc_err err = { 0 };
    struct kc_state *st = NULL;
    struct json_object *all = NULL;
    char *path = NULL;
    const char *want;
    bool found = false;
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs > 1) {
        fprintf(stderr, "usage: kmsctl output [NAME] [--json]\n");
        cmd_opts_release(&opts);
        return KC_EXIT_ERROR;
    }
    want = opts.nargs ? opts.args[0] : NULL;
    ret = state_path(&opts, &path, &err);
    if (ret == 0)
        ret = kc_state_load(path, &st, &err);
    if (ret < 0)
        goto out;
    if (!kc_state_exists(st)) {
        ret = kc_err_set(&err, KC_ENOENT,
                         "no state at '%s': nothing has been applied", path);
        goto out;
    }
    all = json_object_new_object();
    for (size_t i = 0; i < kc_state_count(st); i++) {
        const char *addr = kc_state_address(st, i);
        struct json_object *rec = kc_state_resource_json(st, addr), *outs;
        struct json_object *mine = json_object_new_object();
        size_t alen = strlen(addr);

        if (json_object_object_get_ex(rec, "outputs", &outs) &&
            json_object_is_type(outs, json_type_object)) {
            json_object_object_foreach (outs, k, v) {
                json_object_object_add(mine, k, shown(v));
                if (want && strncmp(want, addr, alen) == 0 &&
                    want[alen] == '.' && strcmp(want + alen + 1, k) == 0) {
                    struct json_object *sv = shown(v);

                    if (opts.json)
                        printf("%s\n", json_object_to_json_string(sv));
                    else
                        print_value(sv);
                    json_object_put(sv);
                    found = true;
                }
            }
        }
        if (!want || strcmp(want, addr) == 0) {
            if (want)
                found = true;
            json_object_object_add(all, addr, json_object_get(mine));
        }
        json_object_put(mine);
        json_object_put(rec);
    }
    if (want && !found && by_reference(&opts, st, want))
        goto out;
    if (want && !found) {
        ret = kc_err_set(&err, KC_ENOENT,
                         "no output '%s' in state '%s' (kmsctl output lists "
                         "them)",
                         want, path);
        goto out;
    }
    if (want && strchr(want, '.') && !json_object_object_length(all))
        goto out; /* a single value, printed above */
    if (opts.json) {
        printf("%s\n", json_object_to_json_string_ext(
                           all, JSON_C_TO_STRING_PRETTY |
                                    JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        json_object_object_foreach (all, addr, outs) {
            json_object_object_foreach (outs, k, v) {
                printf("%s.%s = ", addr, k);
                print_value(v);
            }
        }
    }
out:
    if (ret < 0)
        cmd_print_err(&opts, &err);
    json_object_put(all);
    kc_state_free(st);
    free(path);
    cmd_opts_release(&opts);
    return ret < 0 ? KC_EXIT_ERROR : KC_EXIT_OK;
}
