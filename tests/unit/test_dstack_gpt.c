/* tests/unit/test_dstack_gpt.c: the GPT data disk, read back with sgdisk and
 * sfdisk; a large disk stays sparse. */
#include "resources/dstack/gptimg.h"

#include <criterion/criterion.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/helpers/dstack_testutil.h"

static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "gpt");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_gpt, .init = setup, .fini = teardown, .timeout = 120);

static char *write_disk(const char *name, uint64_t size, const char *seed)
{
    struct dstack_gptimg img = { .size = size, .seed = seed };
    struct kc_err err = { 0 };
    char *path = kc_xasprintf("%s/%s", tmpdir, name);

    cr_assert_eq(dstack_gptimg_write_file(&img, path, 0644, &err), 0, "%s",
                 err.msg);
    return path;
}

Test(dstack_gpt, sgdisk_verifies_and_lists_one_dstack_data_partition)
{
    char *path = write_disk("data.img", 0, "kms"), *cmd, *out = NULL;
    struct stat st;

    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 10 << 20);
    cmd = kc_xasprintf("sgdisk -v '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "No problems found"), "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("sgdisk -p '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    /* 20480 sectors: usable 34..20446, the partition from 2048. */
    cr_assert_not_null(
        strstr(out, "   1            2048           20446   9.0 MiB     8300  "
                    "dstack-data"),
        "%s", out);
    cr_assert_not_null(strstr(out, "Number  Start"), "%s", out);
    cr_assert_null(strstr(out, "\n   2 "), "one partition only:\n%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("sfdisk --dump '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "label: gpt\n"), "%s", out);
    cr_assert_not_null(strstr(out, "first-lba: 34\n"), "%s", out);
    cr_assert_not_null(strstr(out, "last-lba: 20446\n"), "%s", out);
    cr_assert_not_null(strstr(out, "start=        2048, size=       18399, "
                                   "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "name=\"dstack-data\""), "%s", out);
    free(cmd);
    free(out);
    free(path);
}

Test(dstack_gpt, a_10_gib_disk_is_sparse_and_valid)
{
    char *path = write_disk("big.img", 10ull << 30, "kms"), *cmd, *out = NULL;
    struct stat st;

    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, 10ull << 30);
    cr_assert_lt((uint64_t)st.st_blocks * 512, 1u << 20, "%lld bytes used",
                 (long long)st.st_blocks * 512);
    cmd = kc_xasprintf("sgdisk -v '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "No problems found"), "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("sfdisk --dump '%s'", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    /* 20971520 sectors: last usable 20971486. */
    cr_assert_not_null(strstr(out, "start=        2048, size=    20969439"),
                       "%s", out);
    free(cmd);
    free(out);
    free(path);
}

Test(dstack_gpt, same_inputs_same_bytes_and_seed_changes_guids)
{
    char *a = write_disk("a.img", 4 << 20, "one");
    char *b = write_disk("b.img", 4 << 20, "one");
    char *c = write_disk("c.img", 4 << 20, "two");
    char *cmd = kc_xasprintf("cmp '%s' '%s'", a, b);

    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    free(cmd);
    cmd = kc_xasprintf("cmp -s '%s' '%s'", a, c);
    cr_assert_eq(dstack_test_run(cmd, NULL), 1);
    free(cmd);
    free(a);
    free(b);
    free(c);
}

Test(dstack_gpt, refuses_bad_sizes)
{
    struct dstack_gptimg img = { .size = (2u << 20) + 1 };
    struct kc_err err = { 0 };
    char *path = kc_xasprintf("%s/x.img", tmpdir);

    cr_assert_eq(dstack_gptimg_write_file(&img, path, 0644, &err), KC_EINVAL);
    img.size = 1 << 20;
    cr_assert_eq(dstack_gptimg_write_file(&img, path, 0644, &err), KC_EINVAL);
    cr_assert_neq(access(path, F_OK), 0);
    free(path);
}
