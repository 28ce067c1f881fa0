/* cmd/validate.c: kmsctl validate, check a manifest and report every error
 * as FILE:LINE:COL: PATH: MESSAGE. */
#include "cmd/cmd.h"

#include <json-c/json.h>

#include "reconcile/buf.h"
#include "reconcile/check.h"
#include "reconcile/manifest.h"

static void print_json(const struct cmd_opts *opts, const struct kc_diags *d,
                       const struct kc_err *load_err)
{
    struct json_object *out = json_object_new_object();
    struct json_object *list = json_object_new_array();

    if (!out || !list)
        KC_BUG("out of memory");
    if (load_err) {
        /* The loader says "FILE:LINE:COL: message" (or, when the file
         * cannot be read, "FILE: message"). */
        struct json_object *e = json_object_new_object();
        const char *m = load_err->msg;
        size_t flen = strlen(opts->file);
        int line = 0, col = 0, used = 0;

        if (!e)
            KC_BUG("out of memory");
        if (strncmp(m, opts->file, flen) == 0 && m[flen] == ':') {
            m += flen + 1;
            if (sscanf(m, "%d:%d: %n", &line, &col, &used) == 2 && used > 0)
                m += used;
            else
                m += strspn(m, " ");
        }
        json_object_object_add(e, "file", json_object_new_string(opts->file));
        json_object_object_add(e, "line", json_object_new_int(line));
        json_object_object_add(e, "column", json_object_new_int(col));
        json_object_object_add(e, "path", json_object_new_string(""));
        json_object_object_add(e, "message", json_object_new_string(m));
        json_object_array_add(list, e);
    }
    for (size_t i = 0; d && i < d->n; i++) {
        const struct kc_diag *g = &d->items[i];
        struct json_object *e = json_object_new_object();

        if (!e)
            KC_BUG("out of memory");
        json_object_object_add(
            e, "file", json_object_new_string(g->pos.file ? g->pos.file : ""));
        json_object_object_add(e, "line", json_object_new_int(g->pos.line));
        json_object_object_add(e, "column", json_object_new_int(g->pos.col));
        json_object_object_add(e, "path", json_object_new_string(g->path));
        json_object_object_add(e, "message", json_object_new_string(g->msg));
        json_object_array_add(list, e);
    }
    json_object_object_add(out, "file", json_object_new_string(opts->file));
    json_object_object_add(
        out, "valid", json_object_new_boolean(!load_err && (!d || d->n == 0)));
    json_object_object_add(out, "errors", list); /* steals */
    printf("%s\n",
           json_object_to_json_string_ext(
               out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(out);
}

int cmd_validate(int argc, char **argv)
{
    struct cmd_opts opts;
    struct kc_doc *doc = NULL;
    struct kc_diags diags = { 0 };
    struct kc_err err = { 0 };
    struct kc_check_opts copts = { 0 };
    int ret;

    if (!cmd_parse_opts_or_exit(&opts, argc, argv, &ret))
        return ret;
    if (opts.nargs > 0) {
        fprintf(stderr, "error: validate takes no arguments (use -f FILE)\n");
        ret = KC_EXIT_ERROR;
        goto out;
    }
    copts.allow_literal_secrets = opts.allow_literal_secrets;
    if (kc_manifest_load(opts.file, &doc, &err) < 0) {
        /* The loader's message is already "FILE:LINE:COL: message". */
        if (opts.json)
            print_json(&opts, NULL, &err);
        else
            fprintf(stderr, "%s\n", err.msg);
        ret = KC_EXIT_ERROR;
        goto out;
    }
    if (kc_manifest_check(doc, &copts, &diags) < 0) {
        if (opts.json) {
            print_json(&opts, &diags, NULL);
        } else {
            /* One write: thousands of lines to unbuffered stderr would
             * cost one system call each. */
            struct kc_buf out = { 0 };

            for (size_t i = 0; i < diags.n; i++) {
                char *line = kc_diags_format(&diags, i);

                kc_buf_addf(&out, "%s\n", line);
                free(line);
            }
            kc_buf_addf(&out, "%s: %zu error%s\n", opts.file, diags.n,
                        diags.n == 1 ? "" : "s");
            fwrite(out.data, 1, out.len, stderr);
            kc_buf_release(&out);
        }
        ret = KC_EXIT_ERROR;
        goto out;
    }
    if (opts.json)
        print_json(&opts, &diags, NULL);
    else
        printf("%s: valid\n", opts.file);
    ret = KC_EXIT_OK;
out:
    kc_diags_release(&diags);
    kc_doc_free(doc);
    cmd_opts_release(&opts);
    return ret;
}
