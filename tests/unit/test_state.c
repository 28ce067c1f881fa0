/* tests/unit/test_state.c: the state file: fields, refusals, secrets,
 * atomic writes under SIGKILL, async writes with coalescing. */
#include "reconcile/state.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "reconcile/file.h"
#include "tests/unit/helpers/state_testutil.h"

static char *tmp;

static void setup(void)
{
    tmp = state_test_tmpdir();
}

static void teardown(void)
{
    state_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

TestSuite(state, .init = setup, .fini = teardown, .timeout = 120);

static char *tpath(const char *name)
{
    return kc_xasprintf("%s/%s", tmp, name);
}

static struct kc_state *load_ok(const char *path)
{
    struct kc_state *st = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_state_load(path, &st, &err), 0, "load: %s", err.msg);
    return st;
}

static void write_ok(struct kc_state *st)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_state_write(st, &err), 0, "write: %s", err.msg);
}

static void put_text(const char *path, const char *text)
{
    struct kc_err err = { 0 };

    cr_assert_eq(kc_file_write_atomic(path, text, strlen(text), 0600, &err), 0,
                 "%s", err.msg);
}

Test(state, missing_file_gives_a_new_state_with_fresh_lineage)
{
    char *path = tpath("none/s.json");
    struct kc_state *a = load_ok(path), *b = load_ok(path);

    cr_assert_not(kc_state_exists(a));
    cr_assert_eq(kc_state_serial(a), 0);
    cr_assert_eq(strlen(kc_state_lineage(a)), 36);
    cr_assert_eq(kc_state_lineage(a)[14], '4', "uuid v4");
    cr_assert(strchr("89ab", kc_state_lineage(a)[19]), "uuid variant");
    cr_assert_str_neq(kc_state_lineage(a), kc_state_lineage(b));
    cr_assert_str_neq(kc_state_salt(a), kc_state_salt(b));
    cr_assert_null(kc_state_deployment(a));
    cr_assert_eq(kc_state_count(a), 0);
    cr_assert_eq(access(path, F_OK), -1, "loading does not create the file");
    kc_state_free(a);
    kc_state_free(b);
    free(path);
}

Test(state, round_trip_keeps_every_field)
{
    char *path = tpath("deep/er/s.json");
    struct kc_state *st = load_ok(path), *back;
    struct kc_value *attrs = kc_value_new_map();
    struct kc_value *outputs = kc_value_new_map();
    struct kc_value *ports = kc_value_new_list();
    struct kc_value *data = kc_value_new_map(), *seed;
    const char *deps[] = { "gcp.instance.kms", "chain.kms" };
    struct kc_state_resource rec = {
        .kind = "gcp.firewall",
        .provider_id = "projects/p/global/firewalls/kms-12001",
        .inputs_digest = "sha256:abcd",
        .deps = deps,
        .ndeps = 2,
        .updated_at = "2026-01-02T03:04:05Z",
    };
    const struct kc_state_resource *got;
    const struct kc_state_intent *in;
    struct kc_err err = { 0 };
    char *lineage;
    struct stat sb;

    kc_value_list_push(ports, kc_value_new_int(12001));
    kc_value_list_push(ports, kc_value_new_str("8000-8080"));
    kc_value_map_set(attrs, "ports", ports);
    kc_value_map_set(attrs, "enabled", kc_value_new_bool(true));
    kc_value_map_set(attrs, "note", kc_value_new_null());
    kc_value_map_set(outputs, "self_link", kc_value_new_str("https://x/y"));
    rec.attrs = attrs;
    rec.outputs = outputs;
    cr_assert_eq(kc_state_check_deployment(st, "prod-kms", &err), 0);
    cr_assert_eq(kc_state_put(st, "gcp.firewall.kms-12001", &rec, &err), 0,
                 "%s", err.msg);
    rec.provider_id = NULL;
    rec.inputs_digest = NULL;
    rec.attrs = NULL;
    rec.outputs = NULL;
    rec.ndeps = 0;
    rec.updated_at = NULL;
    rec.kind = "chain.contract";
    cr_assert_eq(kc_state_put(st, "chain.kms", &rec, &err), 0, "%s", err.msg);
    kc_value_map_set(data, "nonce", kc_value_new_int(7));
    kc_value_map_set(
        data, "address",
        kc_value_new_str("0x5fbdb2315678afecb367f032d93f642f64180aa3"));
    cr_assert_eq(
        kc_state_intent_put(st, "chain.app.nitro", "deploy", data, &err), 0,
        "%s", err.msg);
    seed = kc_value_new_str("00ff");
    cr_assert_eq(kc_state_generated_put(
                     st, "kms_vms.dstack-kms.instance_id_seed", seed, &err),
                 0);
    kc_value_free(seed);
    lineage = kc_xstrdup(kc_state_lineage(st));
    write_ok(st);
    cr_assert_eq(kc_state_serial(st), 1);
    write_ok(st);
    cr_assert_eq(kc_state_serial(st), 2);

    back = load_ok(path);
    cr_assert(kc_state_exists(back));
    cr_assert_str_eq(kc_state_lineage(back), lineage);
    cr_assert_str_eq(kc_state_salt(back), kc_state_salt(st));
    cr_assert_eq(kc_state_serial(back), 2);
    cr_assert_str_eq(kc_state_deployment(back), "prod-kms");
    cr_assert_eq(kc_state_count(back), 2);
    cr_assert_str_eq(kc_state_address(back, 0), "chain.kms");
    cr_assert_str_eq(kc_state_address(back, 1), "gcp.firewall.kms-12001");
    got = kc_state_get(back, "gcp.firewall.kms-12001");
    cr_assert_not_null(got);
    cr_assert_str_eq(got->kind, "gcp.firewall");
    cr_assert_str_eq(got->provider_id, "projects/p/global/firewalls/kms-12001");
    cr_assert_str_eq(got->inputs_digest, "sha256:abcd");
    cr_assert_str_eq(got->updated_at, "2026-01-02T03:04:05Z");
    cr_assert(kc_value_equal(got->attrs, attrs));
    cr_assert(kc_value_equal(got->outputs, outputs));
    cr_assert_eq(got->ndeps, 2);
    cr_assert_str_eq(got->deps[0], "gcp.instance.kms");
    cr_assert_str_eq(got->deps[1], "chain.kms");
    got = kc_state_get(back, "chain.kms");
    cr_assert_null(got->provider_id);
    cr_assert_null(got->inputs_digest);
    cr_assert_eq(kc_value_map_len(got->attrs), 0);
    cr_assert_eq(got->ndeps, 0);
    cr_assert_eq(strlen(got->updated_at), 20, "put sets now: %s",
                 got->updated_at);
    in = kc_state_intent_get(back, "chain.app.nitro");
    cr_assert_not_null(in);
    cr_assert_str_eq(in->op, "deploy");
    cr_assert(kc_value_equal(in->data, data));
    cr_assert_eq(strlen(in->created_at), 20);
    cr_assert_eq(kc_state_intent_count(back), 1);
    cr_assert_str_eq(kc_state_intent_address(back, 0), "chain.app.nitro");
    cr_assert_str_eq(kc_value_str(kc_state_generated_get(
                         back, "kms_vms.dstack-kms.instance_id_seed")),
                     "00ff");
    cr_assert_null(kc_state_generated_get(back, "nope"));

    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    {
        char *dir = tpath("deep/er");

        cr_assert_eq(stat(dir, &sb), 0);
        cr_assert_eq(sb.st_mode & 0777, 0700);
        free(dir);
    }

    cr_assert(kc_state_intent_clear(back, "chain.app.nitro"));
    cr_assert_not(kc_state_intent_clear(back, "chain.app.nitro"));
    cr_assert(kc_state_remove(back, "chain.kms"));
    cr_assert_not(kc_state_remove(back, "chain.kms"));
    cr_assert_null(kc_state_get(back, "chain.kms"));
    cr_assert_eq(kc_state_count(back), 1);

    kc_state_free(st);
    kc_state_free(back);
    kc_value_free(attrs);
    kc_value_free(outputs);
    kc_value_free(data);
    free(lineage);
    free(path);
}

static int64_t file_serial(const char *path)
{
    struct kc_state *st = load_ok(path);
    int64_t s = kc_state_serial(st);

    kc_state_free(st);
    return s;
}

Test(state, write_keeps_the_previous_version_as_backup)
{
    char *path = tpath("s.json"), *bak = tpath("s.json.backup");
    struct kc_state *st = load_ok(path);
    struct stat sb;

    write_ok(st);
    cr_assert_eq(access(bak, F_OK), -1, "no backup of nothing");
    write_ok(st);
    write_ok(st);
    cr_assert_eq(file_serial(path), 3);
    cr_assert_eq(file_serial(bak), 2);
    cr_assert_eq(stat(bak, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    kc_state_free(st);
    free(path);
    free(bak);
}

Test(state, sensitive_values_are_stored_only_as_salted_digests)
{
    static const char secret[] = "s3cr3t-Private-Key-0xDEADBEEF";
    char *path = tpath("s.json"), *text;
    struct kc_state *st = load_ok(path), *back;
    struct kc_value *attrs = kc_value_new_map(), *inner = kc_value_new_map();
    struct kc_value *sec = kc_value_new_secret(secret, strlen(secret));
    struct json_object *expect = kc_value_to_json(sec, kc_state_salt(st));
    struct kc_state_resource rec = { .kind = "chain.signer" };
    struct kc_err err = { 0 };
    const struct kc_value *got;

    kc_value_map_set(inner, "key", sec);
    kc_value_map_set(attrs, "nested", inner);
    kc_value_map_set(attrs, "plain", kc_value_new_str("visible"));
    rec.attrs = attrs;
    rec.outputs = attrs;
    cr_assert_eq(kc_state_put(st, "chain.signer.main", &rec, &err), 0);
    got = kc_state_get(st, "chain.signer.main")->attrs;
    cr_assert_not(kc_value_is_sensitive(got), "stored values are digests");
    cr_assert_str_eq(
        kc_value_str(kc_value_map_get(kc_value_map_get(got, "nested"), "key")),
        json_object_get_string(expect));
    cr_assert_not_null(
        strstr(json_object_get_string(expect), "(sensitive:sha256:"));
    write_ok(st);
    text = state_test_slurp(path);
    cr_assert_not_null(text);
    cr_assert_null(strstr(text, secret), "the secret reached the file");
    cr_assert_null(strstr(text, "DEADBEEF"));
    cr_assert_not_null(strstr(text, json_object_get_string(expect)));
    cr_assert_not_null(strstr(text, "visible"));
    back = load_ok(path);
    cr_assert(
        kc_value_equal(kc_state_get(back, "chain.signer.main")->attrs, got));

    /* Intents and generated values must come back as they were: refused. */
    cr_assert_eq(kc_state_generated_put(st, "k", sec, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "never holds a secret"), "%s", err.msg);
    cr_assert_eq(kc_state_intent_put(st, "a.b", "create", attrs, &err),
                 KC_EINVAL);
    cr_assert_null(kc_state_intent_get(st, "a.b"));
    free(text);
    json_object_put(expect);
    kc_value_free(attrs);
    kc_state_free(st);
    kc_state_free(back);
    free(path);
}

Test(state, unknown_values_and_bad_names_are_refused)
{
    char *path = tpath("s.json");
    struct kc_state *st = load_ok(path);
    struct kc_value *attrs = kc_value_new_map();
    struct kc_value *list = kc_value_new_list();
    struct kc_state_resource rec = { .kind = "k" };
    struct kc_err err = { 0 };

    kc_value_map_set(attrs, "ip", kc_value_new_unknown("gcp.instance.x.ip"));
    rec.attrs = attrs;
    cr_assert_eq(kc_state_put(st, "a.b", &rec, &err), KC_EINVAL);
    cr_assert_not_null(strstr(err.msg, "'a.b'"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "known only after apply"));
    rec.attrs = list;
    cr_assert_eq(kc_state_put(st, "a.b", &rec, &err), KC_EINVAL);
    rec.attrs = NULL;
    cr_assert_eq(kc_state_put(st, "", &rec, &err), KC_EINVAL);
    cr_assert_eq(kc_state_put(st, "a\nb", &rec, &err), KC_EINVAL);
    rec.kind = NULL;
    cr_assert_eq(kc_state_put(st, "a.b", &rec, &err), KC_EINVAL);
    cr_assert_eq(kc_state_count(st), 0);
    cr_assert_eq(kc_state_generated_put(st, "g", attrs, &err), KC_EINVAL);
    kc_value_free(attrs);
    kc_value_free(list);
    kc_state_free(st);
    free(path);
}

Test(state, newer_format_is_refused_and_left_untouched)
{
    char *path = tpath("s.json"), *text;
    struct kc_state *st = NULL;
    struct kc_err err = { 0 };
    const char *future = "{\"format_version\": 2, \"whatever\": true}\n";

    put_text(path, future);
    cr_assert_eq(kc_state_load(path, &st, &err), KC_ESTATE);
    cr_assert_null(st);
    cr_assert_not_null(
        strstr(err.msg, "has format 2, this kmsctl reads up to 1: upgrade "
                        "kmsctl"),
        "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, path));
    text = state_test_slurp(path);
    cr_assert_str_eq(text, future);
    free(text);
    free(path);
}

Test(state, foreign_lineage_is_refused)
{
    char *path = tpath("s.json");
    struct kc_state *st = load_ok(path);
    struct kc_err err = { 0 };
    const char *other = "0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a";

    cr_assert_eq(kc_state_check_lineage(st, NULL, &err), 0);
    cr_assert_eq(kc_state_check_lineage(st, kc_state_lineage(st), &err), 0);
    cr_assert_eq(kc_state_check_lineage(st, other, &err), KC_ESTATE);
    cr_assert_not_null(strstr(err.msg, other), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, kc_state_lineage(st)));
    kc_state_free(st);
    free(path);
}

Test(state, another_deployment_is_refused)
{
    char *path = tpath("s.json");
    struct kc_state *st = load_ok(path), *back;
    struct kc_err err = { 0 };

    cr_assert_eq(kc_state_check_deployment(st, "staging", &err), 0);
    write_ok(st);
    back = load_ok(path);
    cr_assert_eq(kc_state_check_deployment(back, "staging", &err), 0);
    cr_assert_eq(kc_state_check_deployment(back, "prod", &err), KC_ESTATE);
    cr_assert_not_null(strstr(err.msg, "'staging'"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "'prod'"));
    kc_state_free(st);
    kc_state_free(back);
    free(path);
}

Test(state, unparsable_state_is_refused_naming_file_and_backup)
{
    char *path = tpath("s.json"), *bak = tpath("s.json.backup"), *text;
    struct kc_state *st = load_ok(path);
    struct kc_err err = { 0 };
    const char *torn = "{\"format_version\": 1, \"lineage\": \"ab";

    write_ok(st);
    write_ok(st);
    kc_state_free(st);
    st = NULL;
    put_text(path, torn);
    cr_assert_eq(kc_state_load(path, &st, &err), KC_ESTATE);
    cr_assert_null(st);
    cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, bak), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "left as it is"));
    text = state_test_slurp(path);
    cr_assert_str_eq(text, torn, "a broken state is never overwritten");
    free(text);
    free(path);
    free(bak);
}

Test(state, invalid_members_are_refused_with_their_path)
{
    static const struct {
        const char *json, *msg;
    } cases[] = {
        { "[]", "$: expected an object" },
        { "{\"format_version\":\"1\"}", "format_version: expected an integer" },
        { "{\"format_version\":1,\"lineage\":\"x\",\"serial\":0,"
          "\"deployment\":null,\"salt\":\"00\",\"resources\":{},"
          "\"intents\":{},\"generated\":{}}",
          "lineage: expected a lower-case UUID" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":0,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{},\"intents\":{},\"generated\":{},\"extra\":1}",
          "$: unknown member 'extra'" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":-1,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{},\"intents\":{},\"generated\":{}}",
          "serial: expected an integer from 0 to 2^53" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":"
          "9223372036854775807,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{},\"intents\":{},\"generated\":{}}",
          "serial: expected an integer from 0 to 2^53" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":0,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{\"a.b\":{\"kind\":\"k\",\"attrs\":{},"
          "\"outputs\":{},\"dependencies\":[],\"updated_at\":3}},"
          "\"intents\":{},\"generated\":{}}",
          "resources[\"a.b\"].updated_at: expected a string" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":0,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{\"a.b\":{\"kind\":\"k\",\"attrs\":{\"x\":1.5},"
          "\"outputs\":{},\"dependencies\":[],\"updated_at\":\"t\"}},"
          "\"intents\":{},\"generated\":{}}",
          "resources[\"a.b\"].attrs" },
        { "{\"format_version\":1,\"lineage\":"
          "\"0b5e7c9e-58a3-4a1f-9d2c-3f1e2d4c5b6a\",\"serial\":0,"
          "\"deployment\":null,\"salt\":\"00112233445566778899aabbccddeeff\","
          "\"resources\":{},\"intents\":{\"a\":{\"op\":\"create\","
          "\"created_at\":\"t\"}},\"generated\":{}}",
          "intents[\"a\"]: missing member 'data'" },
    };
    char *path = tpath("s.json");

    for (size_t i = 0; i < KC_ARRAY_SIZE(cases); i++) {
        struct kc_state *st = NULL;
        struct kc_err err = { 0 };

        put_text(path, cases[i].json);
        cr_assert_eq(kc_state_load(path, &st, &err), KC_ESTATE, "case %zu", i);
        cr_assert_not_null(strstr(err.msg, cases[i].msg), "case %zu: %s", i,
                           err.msg);
    }
    free(path);
}

/* ---- SIGKILL in the middle of writes ------------------------------------ */

#define PAD_BASE 65536
#define PAD_STEP 331

static size_t pad_len(int64_t n)
{
    return PAD_BASE + (size_t)n * PAD_STEP;
}

static void put_version(struct kc_state *st, int64_t n)
{
    size_t len = pad_len(n);
    char *pad = kc_xmalloc(len + 1);
    struct kc_value *v = kc_value_new_int(n);

    memset(pad, 'a' + (int)(n % 26), len);
    pad[len] = '\0';
    if (kc_state_generated_put(st, "n", v, NULL) < 0)
        abort();
    kc_value_free(v);
    v = kc_value_new_str(pad);
    if (kc_state_generated_put(st, "pad", v, NULL) < 0)
        abort();
    kc_value_free(v);
    free(pad);
}

/* The version number N of the state at PATH, checking it is complete:
 * the padding belongs to the same version. */
static int64_t check_version(const char *path)
{
    struct kc_state *st = load_ok(path);
    int64_t n = kc_value_int(kc_state_generated_get(st, "n"), -1);
    const char *pad = kc_value_str(kc_state_generated_get(st, "pad"));

    cr_assert_geq(n, 0, "%s has no version", path);
    cr_assert_not_null(pad);
    cr_assert_eq(strlen(pad), pad_len(n), "%s: version %ld is torn", path,
                 (long)n);
    cr_assert_eq(pad[0], 'a' + (int)(n % 26));
    cr_assert_eq(pad[strlen(pad) - 1], 'a' + (int)(n % 26));
    cr_assert_eq(kc_state_serial(st), n + 1);
    kc_state_free(st);
    return n;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    closedir(d);
    return n;
}

static KC_NORETURN void writer_child(const char *path, int ready)
{
    struct kc_state *st = NULL;

    if (kc_state_load(path, &st, NULL) < 0)
        _exit(2);
    if (write(ready, "r", 1) != 1)
        _exit(4);
    for (int64_t n = kc_state_serial(st);; n++) {
        put_version(st, n);
        if (kc_state_write(st, NULL) < 0)
            _exit(3);
    }
}

Test(state, killed_writer_leaves_old_or_new_never_torn, .timeout = 300)
{
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    int runs = 200;

    srand(seed);
    for (int i = 0; i < runs; i++) {
        char *dir = kc_xasprintf("%s/run%d", tmp, i);
        char *path = kc_xasprintf("%s/s.json", dir);
        char *bak = kc_xasprintf("%s.backup", path);
        struct kc_state *st = load_ok(path);
        int64_t n, nb;
        pid_t pid;
        int status, fds[2];
        char c;

        put_version(st, 0);
        write_ok(st);
        kc_state_free(st);
        cr_assert_eq(pipe(fds), 0);
        pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0)
            writer_child(path, fds[1]);
        close(fds[1]);
        /* Kill it at a random point of its first few writes. */
        cr_assert_eq(read(fds[0], &c, 1), 1, "writer did not start");
        close(fds[0]);
        state_test_msleep(rand() % 25);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        status = state_test_wait(pid);
        cr_assert(WIFSIGNALED(status), "seed %u run %d: writer exited %d", seed,
                  i, WEXITSTATUS(status));
        n = check_version(path);
        if (access(bak, F_OK) == 0) {
            nb = check_version(bak);
            cr_assert_leq(nb, n, "seed %u run %d: backup newer", seed, i);
            cr_assert_geq(nb, n - 1, "seed %u run %d: backup too old", seed, i);
        }
        /* The next write removes what the killed one left behind. */
        st = load_ok(path);
        write_ok(st);
        kc_state_free(st);
        cr_assert_eq(count_entries(dir), 2, "seed %u run %d: leftovers", seed,
                     i);
        state_test_rmtree(dir);
        free(dir);
        free(path);
        free(bak);
    }
}

/* ---- async writes -------------------------------------------------------- */

struct write_ctx {
    struct kc_state_write_req req;
    int calls;
    int status;
};

static bool in_start;

static void on_written(struct kc_state_write_req *req, int status)
{
    struct write_ctx *c = kc_container_of(req, struct write_ctx, req);

    cr_assert_not(in_start, "callback ran inside the start call");
    c->calls++;
    c->status = status;
}

Test(state, async_writes_in_flight_are_coalesced)
{
    char *path = tpath("a/s.json");
    struct kc_state *st = load_ok(path), *back;
    struct write_ctx ctx[10];
    struct kc_err err = { 0 };
    uv_loop_t loop;

    memset(ctx, 0, sizeof(ctx));
    cr_assert_eq(uv_loop_init(&loop), 0);
    for (int i = 0; i < 10; i++) {
        char addr[32];
        struct kc_state_resource rec = { .kind = "fake.thing" };

        cr_assert_eq(kc_snprintf(addr, sizeof(addr), "fake.thing.r%d", i), 0);
        cr_assert_eq(kc_state_put(st, addr, &rec, &err), 0);
        in_start = true;
        cr_assert_eq(
            kc_state_write_async(st, &loop, &ctx[i].req, on_written, &err), 0,
            "%s", err.msg);
        in_start = false;
        cr_assert(kc_state_is_writing(st));
    }
    cr_assert_eq(kc_state_write(st, &err), KC_EAGAIN);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_not(kc_state_is_writing(st));
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(ctx[i].calls, 1, "request %d called %d times", i,
                     ctx[i].calls);
        cr_assert_eq(ctx[i].status, 0);
        cr_assert_eq(ctx[i].req.serial, i == 0 ? 1 : 2, "request %d", i);
    }
    back = load_ok(path);
    cr_assert_eq(kc_state_serial(back), 2, "two writes in all");
    cr_assert_eq(kc_state_count(back), 10, "the last contents won");
    kc_state_free(back);

    /* Idle again: the next request starts a new write. */
    memset(ctx, 0, sizeof(ctx));
    cr_assert_eq(kc_state_write_async(st, &loop, &ctx[0].req, on_written, &err),
                 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(ctx[0].calls, 1);
    cr_assert_eq(ctx[0].req.serial, 3);
    cr_assert_eq(file_serial(path), 3);
    kc_state_free(st);
    cr_assert_eq(uv_loop_close(&loop), 0);
    free(path);
}

Test(state, async_write_failure_reaches_every_callback)
{
    char *blocker = tpath("file");
    char *path = tpath("file/s.json");
    struct kc_state *st = load_ok(path);
    struct write_ctx ctx[3];
    struct kc_err err = { 0 };
    uv_loop_t loop;

    memset(ctx, 0, sizeof(ctx));
    put_text(blocker, "not a folder");
    cr_assert_eq(uv_loop_init(&loop), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(
            kc_state_write_async(st, &loop, &ctx[i].req, on_written, &err), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ctx[i].calls, 1);
        cr_assert_lt(ctx[i].status, 0);
        cr_assert_not_null(strstr(ctx[i].req.err.msg, path), "%s",
                           ctx[i].req.err.msg);
    }
    kc_state_free(st);
    cr_assert_eq(uv_loop_close(&loop), 0);
    free(blocker);
    free(path);
}
