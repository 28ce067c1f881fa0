/* cmd/graph.c: kmsctl graph [PLANFILE], the resource graph as Graphviz DOT.
 * Without a plan the nodes are plain; with a plan saved by `kmsctl plan
 * --out FILE` they are coloured by action. No provider is contacted. */
#include "cmd/ui.h"

#include "reconcile/file.h"
#include "reconcile/json.h"
#include "reconcile/schema.h"

static const char *colour(const char *action)
{
    if (!action)
        return NULL;
    if (strcmp(action, "create") == 0)
        return "palegreen";
    if (strcmp(action, "update") == 0)
        return "khaki";
    if (strcmp(action, "replace") == 0)
        return "orange";
    if (strcmp(action, "delete") == 0)
        return "lightcoral";
    if (strcmp(action, "read") == 0)
        return "lightblue";
    return NULL;
}

/* DOT string: quotes and backslashes escaped. */
static void quoted(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static int load_plan(const char *path, struct json_object **out,
                     struct kc_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int ret = kc_file_read(path, 64u << 20, &text, &len, err);

    if (ret == 0)
        ret = kc_json_parse(text, len, path, out, err);
    if (ret == 0 && (ret = kc_schema_check_json("plan", *out, err)) < 0)
        kc_err_prefix(err, "'%s' is not a kmsctl plan", path);
    free(text);
    return ret;
}

static const char *action_of(struct json_object *plan, const char *addr)
{
    struct json_object *res;

    if (!plan || !json_object_object_get_ex(plan, "resources", &res))
        return NULL;
    for (size_t k = 0; k < json_object_array_length(res); k++) {
        struct json_object *r = json_object_array_get_idx(res, k);
        const char *a = kc_json_opt_str(r, "address");

        if (a && strcmp(a, addr) == 0)
            return kc_json_opt_str(r, "action");
    }
    return NULL;
}

int cmd_graph(int argc, char **argv)
{
    struct cmd_opts opts;
    struct ui_session s;
    struct kc_err err = { 0 };
    struct json_object *saved = NULL;
    struct kc_graph *g = NULL;
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs > 1) {
        fprintf(stderr, "usage: kmsctl graph [PLANFILE]\n");
        cmd_opts_release(&opts);
        return KC_EXIT_ERROR;
    }
    ret = ui_open(&s, &opts, false, true, "kmsctl graph", &err);
    if (ret == 0 && opts.nargs)
        ret = load_plan(opts.args[0], &saved, &err);
    if (ret == 0)
        ret = kc_expand_doc(s.doc, &g, &err);
    if (ret == 0)
        ret = kc_engine_prepare(&s.eng, g, false, &s.plan, &err);
    if (ret < 0)
        goto out;
    printf("digraph kmsctl {\n  rankdir=LR;\n  node [shape=box, "
           "style=\"rounded,filled\", fillcolor=white];\n");
    for (size_t i = 0; i < s.plan->n; i++) {
        const struct kc_resource *r = s.plan->items[i].res;
        const char *c = colour(action_of(saved, r->address));

        printf("  ");
        quoted(r->address);
        if (c || r->orphan)
            printf(" [fillcolor=%s%s]", c ? c : "white",
                   r->orphan ? ", style=\"rounded,filled,dashed\"" : "");
        printf(";\n");
    }
    for (size_t i = 0; i < s.plan->n; i++) {
        const struct kc_resource *r = s.plan->items[i].res;

        for (size_t e = 0; e < r->nedges; e++) {
            printf("  ");
            quoted(s.plan->items[r->edges[e]].res->address);
            printf(" -> ");
            quoted(r->address);
            printf(";\n");
        }
    }
    printf("}\n");
out:
    if (ret < 0)
        cmd_print_err(&opts, &err);
    json_object_put(saved);
    ui_close(&s);
    cmd_opts_release(&opts);
    return ret < 0 ? ui_exit_code(ret) : KC_EXIT_OK;
}
