/* tests/unit/test_dstack_fat.c: the FAT32 shared-disk image, read back with
 * dosfstools, blkid and mtools. */
#include "resources/dstack/fatimg.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile/file.h"
#include "tests/unit/helpers/dstack_testutil.h"

static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "fat");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_fat, .init = setup, .fini = teardown, .timeout = 120);

static const char compose[] = "{\n  \"manifest_version\": 2\n}";
static const char syscfg[] = "{\n  \"kms_urls\": []\n}";
static const char info[] = "{\"instance_id_seed\": \"00\"}";
static const char user[] = "{\n  \"EXECUTION_RPC\": \"https://x\"\n}";
/* Binary bytes and a size over one cluster (512 bytes): 1500 bytes. */
static unsigned char encenv[1500];

static struct dstack_fat_file files[5];

static void make_files(void)
{
    for (size_t i = 0; i < sizeof(encenv); i++)
        encenv[i] = (unsigned char)(i * 7 + 3);
    files[0] = (struct dstack_fat_file){ "app-compose.json", compose,
                                         strlen(compose) };
    files[1] =
        (struct dstack_fat_file){ ".sys-config.json", syscfg, strlen(syscfg) };
    files[2] = (struct dstack_fat_file){ ".instance_info", info, strlen(info) };
    files[3] = (struct dstack_fat_file){ ".user-config", user, strlen(user) };
    files[4] =
        (struct dstack_fat_file){ ".encrypted-env", encenv, sizeof(encenv) };
}

static char *write_img(const char *name, uint64_t size, char digest[65])
{
    struct dstack_fatimg img = { .size = size, .files = files, .nfiles = 5 };
    struct kc_err err = { 0 };
    char *path = kc_xasprintf("%s/%s", tmpdir, name);

    make_files();
    cr_assert_eq(dstack_fatimg_write_file(&img, path, 0644, digest, &err), 0,
                 "%s", err.msg);
    return path;
}

Test(dstack_fat, default_image_is_8_mib_fat32_labelled_dstackshr)
{
    char digest[65], *path = write_img("shared.img", 0, digest);
    char *cmd, *out = NULL;
    struct stat st;

    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 8 << 20);
    cmd = kc_xasprintf("fsck.fat -n -v -l '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "fsck.fat failed:\n%s", out);
    cr_assert_not_null(strstr(out, "2 FATs, 32 bit entries"), "%s", out);
    cr_assert_not_null(strstr(out, "16384 sectors total"), "%s", out);
    /* The volume label counts as a file; root 1 cluster, files 1+1+1+1+3. */
    cr_assert_not_null(strstr(out, "6 files, 8/16100 clusters"), "%s", out);
    for (int i = 0; i < 5; i++) {
        char *want = kc_xasprintf("/%s", files[i].name);

        cr_assert_not_null(strstr(out, want), "%s missing:\n%s", want, out);
        free(want);
    }
    free(cmd);
    free(out);
    cmd = kc_xasprintf("blkid -p -o export '%s'", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_not_null(strstr(out, "LABEL=DSTACKSHR\n"), "%s", out);
    cr_assert_not_null(strstr(out, "TYPE=vfat\n"), "%s", out);
    cr_assert_not_null(strstr(out, "VERSION=FAT32\n"), "%s", out);
    cr_assert_not_null(strstr(out, "UUID=4B4D-5343\n"), "%s", out);
    free(cmd);
    free(out);
    free(path);
}

/* mtools 4.0.32 types FAT by cluster count, so it reads FAT32 only from
 * 65525 clusters up (over 32 MiB with 512-byte clusters): the same writer
 * at 40 MiB is read back file by file. */
Test(dstack_fat, mtools_reads_back_exact_files_and_label)
{
    char digest[65], *path = write_img("big.img", 40u << 20, digest);
    char *cmd, *out = NULL;

    cmd = kc_xasprintf("fsck.fat -n '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("mdir -a -i '%s' ::/ 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "Volume in drive : is DSTACKSHR"), "%s",
                       out);
    cr_assert_not_null(strstr(out, "5 files"), "%s", out);
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(strstr(out, files[i].name), "%s", out);
    free(cmd);
    free(out);
    for (int i = 0; i < 5; i++) {
        char *got = NULL;
        size_t len = 0;
        struct kc_err err = { 0 };
        char *dst = kc_xasprintf("%s/out-%d", tmpdir, i);

        /* mtype prints the bytes as they are (no -t). */
        cmd = kc_xasprintf("mtype -i '%s' '::/%s' > '%s'", path, files[i].name,
                           dst);
        cr_assert_eq(dstack_test_run(cmd, NULL), 0, "%s", cmd);
        cr_assert_eq(kc_file_read(dst, 1 << 20, &got, &len, &err), 0);
        cr_assert_eq(len, files[i].len, "%s: %zu bytes", files[i].name, len);
        cr_assert_eq(memcmp(got, files[i].data, len), 0, "%s differs",
                     files[i].name);
        free(got);
        free(cmd);
        free(dst);
    }
    free(path);
}

Test(dstack_fat, same_inputs_give_identical_bytes)
{
    char d1[65], d2[65], *p1 = write_img("a.img", 0, d1);
    char *p2 = write_img("b.img", 0, d2);
    char *cmd = kc_xasprintf("cmp '%s' '%s'", p1, p2);
    char *sum = NULL, *sumcmd = kc_xasprintf("sha256sum '%s'", p1);

    cr_assert_eq(dstack_test_run(cmd, NULL), 0);
    cr_assert_str_eq(d1, d2);
    cr_assert_eq(dstack_test_run(sumcmd, &sum), 0);
    cr_assert_eq(strncmp(sum, d1, 64), 0, "digest %s vs %s", d1, sum);
    free(sum);
    free(sumcmd);
    free(cmd);
    free(p1);
    free(p2);
}

Test(dstack_fat, one_byte_changes_the_digest)
{
    char d1[65], d2[65], *p1 = write_img("a.img", 0, d1), *p2;

    free(p1);
    encenv[0] ^= 1;
    {
        struct dstack_fatimg img = { .files = files, .nfiles = 5 };
        struct kc_err err = { 0 };

        files[4].data = encenv;
        p2 = kc_xasprintf("%s/c.img", tmpdir);
        /* make_files() would reset encenv: write directly. */
        cr_assert_eq(dstack_fatimg_write_file(&img, p2, 0644, d2, &err), 0);
    }
    cr_assert_str_neq(d1, d2);
    free(p2);
}

Test(dstack_fat, refuses_bad_names_and_overflow)
{
    struct kc_err err = { 0 };
    struct dstack_fat_file bad[] = { { "a/b", "x", 1 } };
    struct dstack_fat_file dup[] = { { "A.txt", "x", 1 }, { "a.TXT", "y", 1 } };
    static unsigned char big[2 << 20];
    struct dstack_fat_file huge[] = { { "big", big, sizeof(big) } };
    struct dstack_fatimg img = { .files = bad, .nfiles = 1 };
    char *path = kc_xasprintf("%s/x.img", tmpdir);

    cr_assert_eq(dstack_fatimg_write_file(&img, path, 0644, NULL, &err),
                 KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "'a/b'"), "%s", err.msg);
    img.files = dup;
    img.nfiles = 2;
    cr_assert_eq(dstack_fatimg_write_file(&img, path, 0644, NULL, &err),
                 KC_EINVAL);
    img.files = huge;
    img.nfiles = 1;
    img.size = 1 << 20;
    cr_assert_eq(dstack_fatimg_write_file(&img, path, 0644, NULL, &err),
                 KC_ERANGE);
    cr_assert_neq(access(path, F_OK), 0, "no file left on failure");
    free(path);
}

/* Many files with long, similar names: aliases stay unique (NAME~1, ~2...),
 * the root folder spans several clusters, mtools reads every one back. */
Test(dstack_fat, many_long_names_span_root_clusters)
{
    struct dstack_fat_file many[40];
    char names[40][64], datas[40][32];
    struct dstack_fatimg img = { .size = 40u << 20,
                                 .files = many,
                                 .nfiles = 40 };
    struct kc_err err = { 0 };
    char *path = kc_xasprintf("%s/many.img", tmpdir), *cmd, *out = NULL;

    for (int i = 0; i < 40; i++) {
        kc_snprintf(names[i], sizeof(names[i]),
                    ".a-rather-long-file-name-number-%02d.json", i);
        kc_snprintf(datas[i], sizeof(datas[i]), "file %d\n", i);
        many[i] =
            (struct dstack_fat_file){ names[i], datas[i], strlen(datas[i]) };
    }
    cr_assert_eq(dstack_fatimg_write_file(&img, path, 0644, NULL, &err), 0,
                 "%s", err.msg);
    cmd = kc_xasprintf("fsck.fat -n '%s' 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("mdir -a -i '%s' ::/ 2>&1", path);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "40 files"), "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("mtype -i '%s' '::/%s'", path, names[37]);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_str_eq(out, "file 37\n");
    free(cmd);
    free(out);
    free(path);
}
