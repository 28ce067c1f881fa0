/* tests/unit/test_core.c: buffers, logging redaction, JSON getters, files. */
#include "reconcile/buf.h"
#include "reconcile/file.h"
#include "reconcile/json.h"
#include "reconcile/log.h"
#include "tests/unit/helpers/state_testutil.h"

#include <criterion/criterion.h>
#include <sys/stat.h>
#include <unistd.h>

Test(buf, add_past_maximum_fails_and_keeps_contents)
{
    struct kc_buf b;

    kc_buf_init(&b, 8);
    cr_assert_eq(kc_buf_addstr(&b, "12345"), 0);
    cr_assert_eq(kc_buf_addstr(&b, "6789"), KC_ERANGE);
    cr_assert_str_eq(kc_buf_str(&b), "12345");
    cr_assert_eq(kc_buf_addf(&b, "%d", 678), 0);
    cr_assert_str_eq(kc_buf_str(&b), "12345678");
    kc_buf_release(&b);
}

Test(log, redacts_every_known_secret_in_a_line)
{
    struct kc_log log;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    kc_log_init(&log, KC_LOG_DEBUG);
    log.out = mem;
    kc_log_add_secret(&log, "topsecretvalue", 14);
    kc_log(&log, KC_LOG_INFO, "test", "token=%s and again %s", "topsecretvalue",
           "xtopsecretvaluex");
    kc_log(&log, KC_LOG_TRACE, "test", "dropped %s", "line");
    fclose(mem);
    cr_assert_null(strstr(text, "topsecretvalue"));
    cr_assert_not_null(strstr(text, "token=[redacted] and again x[redacted]x"));
    cr_assert_null(strstr(text, "dropped"));
    free(text);
    kc_log_release(&log);
}

Test(json, getters_name_the_path)
{
    const char *doc = "{\"items\":[{\"selfLink\":\"x\",\"n\":\"42\"}]}";
    struct json_object *o = NULL;
    struct kc_err err = { 0 };
    const char *s;
    int64_t n;

    cr_assert_eq(kc_json_parse(doc, strlen(doc), "test", &o, &err), 0);
    cr_assert_eq(kc_json_get_str(o, "items[0].selfLink", &s, &err), 0);
    cr_assert_str_eq(s, "x");
    cr_assert_eq(kc_json_get_int(o, "items[0].n", &n, &err), 0);
    cr_assert_eq(n, 42);
    cr_assert_eq(kc_json_get_str(o, "items[1].selfLink", &s, &err), KC_ENOENT);
    cr_assert_str_eq(err.msg, "'items[1]': missing");
    cr_assert_eq(kc_json_get_str(o, "items[0].n.x", &s, &err), KC_EINVAL);
    json_object_put(o);
}

Test(json, rejects_trailing_garbage_and_deep_nesting)
{
    struct json_object *o = NULL;
    struct kc_err err = { 0 };
    char deep[200];

    cr_assert_eq(kc_json_parse("{} x", 4, "t", &o, &err), KC_EPARSE);
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    cr_assert_eq(kc_json_parse(deep, sizeof(deep), "t", &o, &err), KC_EPARSE);
    cr_assert_null(o);
    cr_assert_eq(kc_json_parse("[1] ", 4, "t", &o, &err), 0);
    json_object_put(o);
}

Test(file, read_is_bounded_and_write_is_atomic_with_mode)
{
    char *dir = state_test_tmpdir();
    char *path, *parent, *text = NULL;
    struct kc_err err = { 0 };
    struct stat st;
    size_t len;

    path = kc_xasprintf("%s/sub/dir/f.json", dir);
    parent = kc_file_dirname(path);
    cr_assert_eq(kc_file_mkdirs(parent, 0700, &err), 0);
    cr_assert_eq(stat(parent, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    free(parent);
    cr_assert_eq(kc_file_write_atomic(path, "hello", 5, 0600, &err), 0);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(kc_file_read(path, 100, &text, &len, &err), 0);
    cr_assert_str_eq(text, "hello");
    cr_assert_eq(len, 5);
    free(text);
    cr_assert_eq(kc_file_read(path, 4, &text, &len, &err), KC_ERANGE);
    cr_assert_not_null(strstr(err.msg, "limit of 4 bytes"));
    free(path);
    state_test_rmtree(dir);
    free(dir);
}
