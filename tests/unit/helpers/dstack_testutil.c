/* tests/unit/helpers/dstack_testutil.c: temp folder and command runner for
 * the dstack artifact tests. */
#include "tests/unit/helpers/dstack_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

void dstack_test_mkdtemp(char *dir, size_t size, const char *tag)
{
    kc_snprintf(dir, size, "/tmp/kc-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp '%s': %s", dir, strerror(errno));
}

int dstack_test_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    char *text = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    int st;

    cr_assert_not_null(p, "popen %s", cmd);
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        kc_xgrow(&text, &cap, len + n + 1, 1);
        memcpy(text + len, chunk, n);
        len += n;
        text[len] = '\0';
    }
    st = pclose(p);
    if (out)
        *out = text ? text : kc_xstrdup("");
    else
        free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
