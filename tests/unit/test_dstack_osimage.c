/* tests/unit/test_dstack_osimage.c: finding an OS image, its boot archive
 * (listed and extracted with GNU tar, digests checked with sha256sum and
 * md5sum), and the memory a 2 GiB sparse disk costs. */
#include "resources/dstack/osimage.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reconcile/file.h"
#include "tests/unit/helpers/dstack_testutil.h"

static char tmpdir[64];

static void setup(void)
{
    dstack_test_mkdtemp(tmpdir, sizeof(tmpdir), "osimg");
}

static void teardown(void)
{
    state_test_rmtree(tmpdir);
}

TestSuite(dstack_osimage, .init = setup, .fini = teardown, .timeout = 300);

static void put(const char *path, const char *text)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_write_atomic(path, text, strlen(text), 0644, &err), 0,
                 "%s", err.msg);
}

static void mkdir_p(const char *path)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_mkdirs(path, 0755, &err), 0, "%s", err.msg);
}

/* A sparse disk of SIZE bytes with a few data blocks, ending in a hole. */
static char *make_disk(const char *name, uint64_t size, bool sparse)
{
    char *path = kc_xasprintf("%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const uint64_t at[] = { 0, 5000, 1 << 20, size / 2 + 17 };
    unsigned char block[3000];

    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    if (!sparse) {
        static unsigned char zeros[1 << 16];

        for (uint64_t o = 0; o < size; o += sizeof(zeros))
            cr_assert_eq(pwrite(fd, zeros, sizeof(zeros), (off_t)o),
                         (ssize_t)sizeof(zeros));
    }
    for (size_t i = 0; i < KC_ARRAY_SIZE(at); i++) {
        for (size_t k = 0; k < sizeof(block); k++)
            block[k] = (unsigned char)(k * 31 + i + 1);
        cr_assert_eq(pwrite(fd, block, sizeof(block), (off_t)at[i]),
                     (ssize_t)sizeof(block));
    }
    cr_assert_eq(close(fd), 0);
    return path;
}

Test(dstack_osimage, crc32c_matches_the_published_check_value)
{
    /* CRC-32C of "123456789" is 0xE3069283 (RFC 3720 / the catalogue). */
    cr_assert_eq(dstack_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(dstack_crc32c(dstack_crc32c(0, "1234", 4), "56789", 5),
                 0xe3069283u);
}

Test(dstack_osimage, missing_image_names_every_searched_path)
{
    const char *paths[3];
    struct dstack_osimage img;
    struct kc_err err = { 0 };
    char *bare = kc_xasprintf("%s/b/dstack-0.6.0", tmpdir);
    char *f = kc_xasprintf("%s/bzImage", bare);
    char *home = kc_xasprintf("%s/home", tmpdir);

    mkdir_p(bare);
    put(f, "kernel");
    mkdir_p(home);
    cr_assert_eq(setenv("HOME", home, 1), 0);
    paths[0] = "a";
    paths[1] = "b";
    paths[2] = "~/imgs";
    cr_assert_eq(
        dstack_osimage_find(tmpdir, paths, 3, "dstack-0.6.0", &img, &err),
        KC_ENOENT);
    {
        char *a = kc_xasprintf("%s/a/dstack-0.6.0 (no such folder)", tmpdir);
        char *b = kc_xasprintf("%s (no disk.raw: this is the bare-metal "
                               "variant)",
                               bare);
        char *c = kc_xasprintf("%s/imgs/dstack-0.6.0 (no such folder)", home);

        cr_assert_not_null(strstr(err.msg, a), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, b), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, c), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "dstack-0.6.0-uki.tar.gz"), "%s",
                           err.msg);
        free(a);
        free(b);
        free(c);
    }
    free(f);
    free(bare);
    free(home);
}

Test(dstack_osimage, finds_the_first_complete_image_with_tilde_expanded)
{
    const char *paths[] = { "~/none", "~/imgs", "other" };
    struct dstack_osimage img;
    struct kc_err err = { 0 };
    char *home = kc_xasprintf("%s/home", tmpdir);
    char *dir = kc_xasprintf("%s/imgs/os", home);
    char *f;

    mkdir_p(dir);
    cr_assert_eq(setenv("HOME", home, 1), 0);
    f = kc_xasprintf("%s/disk.raw", dir);
    put(f, "disk");
    free(f);
    f = kc_xasprintf("%s/auth_hash.txt", dir);
    put(f, "  \n");
    cr_assert_eq(dstack_osimage_find(NULL, paths, 3, "os", &img, &err),
                 KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "is empty"), "%s", err.msg);
    put(f, "ABCDEF0123\n");
    cr_assert_eq(dstack_osimage_find(NULL, paths, 3, "os", &img, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(img.auth_hash, "abcdef0123");
    cr_assert_str_eq(img.dir, dir);
    cr_assert_eq(img.disk_size, 4);
    dstack_osimage_release(&img);
    cr_assert_eq(dstack_osimage_find(NULL, paths, 3, "../os", &img, &err),
                 KC_EINVAL);
    free(f);
    free(dir);
    free(home);
}

Test(dstack_osimage, archive_lists_one_member_and_extracts_identical)
{
    char *disk = make_disk("disk.raw", 3u << 20, true);
    char *tgz = kc_xasprintf("%s/boot.tar.gz", tmpdir);
    char *xdir = kc_xasprintf("%s/x", tmpdir);
    struct dstack_archive_digest dg;
    struct kc_err err = { 0 };
    char *cmd, *out = NULL;

    cr_assert_eq(dstack_osimage_archive_file(disk, tgz, &dg, &err), 0, "%s",
                 err.msg);
    cmd = kc_xasprintf("tar -tvzf '%s'", tgz);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_eq(strncmp(out, "-rw-r--r-- root/root   3145728 ", 31), 0, "%s",
                 out);
    cr_assert_not_null(strstr(out, " disk.raw\n"), "%s", out);
    cr_assert_eq(strchr(out, '\n') + 1, out + strlen(out), "one member: %s",
                 out);
    free(cmd);
    free(out);
    /* GNU tar sees a GNU (oldgnu) archive. */
    cmd = kc_xasprintf("gzip -dc '%s' | head -c 265 | tail -c 8 | od -An -tx1",
                       tgz);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_str_eq(out, " 75 73 74 61 72 20 20 00\n");
    free(cmd);
    free(out);
    mkdir_p(xdir);
    cmd = kc_xasprintf("tar -xzf '%s' -C '%s' && cmp '%s' '%s/disk.raw'", tgz,
                       xdir, disk, xdir);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("sha256sum '%s'", tgz);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_eq(strncmp(out, dg.sha256, 64), 0, "%s vs %s", dg.sha256, out);
    free(cmd);
    free(out);
    cmd = kc_xasprintf("openssl dgst -md5 -binary '%s' | base64", tgz);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_eq(strncmp(out, dg.md5_b64, 24), 0, "%s vs %s", dg.md5_b64, out);
    free(cmd);
    free(out);
    {
        struct stat st;
        char *all = NULL;
        size_t len = 0;

        cr_assert_eq(stat(tgz, &st), 0);
        cr_assert_eq((uint64_t)st.st_size, dg.size);
        cr_assert_eq(kc_file_read(tgz, 1 << 24, &all, &len, &err), 0);
        cr_assert_eq(dstack_crc32c(0, all, len), dg.crc32c);
        free(all);
    }
    /* Four 3000-byte writes, each inside one 4 KiB chunk. */
    cr_assert_eq(dg.data_bytes, 4 * 4096);
    free(xdir);
    free(tgz);
    free(disk);
}

Test(dstack_osimage, archive_depends_on_content_only)
{
    char *a = make_disk("a.raw", 2u << 20, true);
    char *b = make_disk("b.raw", 2u << 20, false);
    char *ta = kc_xasprintf("%s/a.tgz", tmpdir);
    char *tb = kc_xasprintf("%s/b.tgz", tmpdir);
    struct dstack_archive_digest da, db, dc;
    struct kc_err err = { 0 };
    int fd;

    cr_assert_eq(dstack_osimage_archive_file(a, ta, &da, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(dstack_osimage_archive_file(b, tb, &db, &err), 0);
    cr_assert_str_eq(da.sha256, db.sha256, "holes and written zeros differ");
    fd = open(b, O_WRONLY);
    cr_assert_eq(pwrite(fd, "x", 1, 999999), 1);
    close(fd);
    cr_assert_eq(dstack_osimage_archive_file(b, tb, &dc, &err), 0);
    cr_assert_str_neq(da.sha256, dc.sha256);
    free(a);
    free(b);
    free(ta);
    free(tb);
}

/* A 2 GiB sparse disk is archived by a child process whose peak RSS is
 * measured with wait4(); it must stay under 64 MiB. */
Test(dstack_osimage, two_gib_sparse_disk_archived_in_constant_memory)
{
    char *disk = make_disk("big.raw", 2ull << 30, true);
    char *tgz = kc_xasprintf("%s/big.tar.gz", tmpdir);
    char *xdir = kc_xasprintf("%s/bx", tmpdir);
    struct rusage ru;
    int status = 0;
    pid_t pid;
    char *cmd, *out = NULL;

    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct dstack_archive_digest dg;
        struct kc_err err = { 0 };

        _exit(dstack_osimage_archive_file(disk, tgz, &dg, &err) == 0 ? 0 : 1);
    }
    cr_assert_eq(wait4(pid, &status, 0, &ru), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_log_info("peak RSS of the archiving child: %ld KiB", ru.ru_maxrss);
    cr_assert_lt(ru.ru_maxrss, 64 * 1024, "peak RSS %ld KiB", ru.ru_maxrss);
    cmd = kc_xasprintf("tar -tvzf '%s'", tgz);
    cr_assert_eq(dstack_test_run(cmd, &out), 0);
    cr_assert_not_null(strstr(out, " 2147483648 "), "%s", out);
    free(cmd);
    free(out);
    mkdir_p(xdir);
    cmd = kc_xasprintf("tar -xzf '%s' -C '%s' && cmp '%s' '%s/disk.raw'", tgz,
                       xdir, disk, xdir);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    free(cmd);
    free(out);
    free(xdir);
    free(tgz);
    free(disk);
}

/* scripts/mkimage.sh (the sandbox OS image the build generates) gives the
 * same bytes twice, an auth_hash.txt that is the SHA-256 of disk.raw, and an
 * image kmsctl finds and archives. */
Test(dstack_osimage, sandbox_image_script_is_deterministic_and_usable)
{
    const char *src = getenv("KC_SRC_DIR");
    char *cmd, *out = NULL, *tgz = kc_xasprintf("%s/sb.tgz", tmpdir);
    const char *paths[] = { "one", "two" };
    struct dstack_osimage img;
    struct dstack_archive_digest dg;
    struct kc_err err = { 0 };

    cr_assert_not_null(src, "KC_SRC_DIR is set by ctest");
    cmd = kc_xasprintf("bash '%s/scripts/mkimage.sh' '%s/one' && bash "
                       "'%s/scripts/mkimage.sh' '%s/two' && cmp "
                       "'%s/one/dstack-sandbox-0.1.0/disk.raw' "
                       "'%s/two/dstack-sandbox-0.1.0/disk.raw' && sha256sum "
                       "< '%s/one/dstack-sandbox-0.1.0/disk.raw'",
                       src, tmpdir, src, tmpdir, tmpdir, tmpdir, tmpdir);
    cr_assert_eq(dstack_test_run(cmd, &out), 0, "%s", out);
    cr_assert_eq(dstack_osimage_find(tmpdir, paths, 2, "dstack-sandbox-0.1.0",
                                     &img, &err),
                 0, "%s", err.msg);
    cr_assert_eq(strlen(img.auth_hash), 64);
    cr_assert_eq(strncmp(out, img.auth_hash, 64), 0, "%s vs %s", out,
                 img.auth_hash);
    cr_assert_eq(img.disk_size, 4u << 20);
    cr_assert_eq(dstack_osimage_archive_file(img.disk_path, tgz, &dg, &err), 0,
                 "%s", err.msg);
    cr_assert_lt(dg.size, 1200u << 10);
    dstack_osimage_release(&img);
    free(out);
    free(cmd);
    free(tgz);
}
