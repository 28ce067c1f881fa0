/* tests/fuzz/driver.c: a deterministic stand-in for libFuzzer, linked with
 * one harness (a file defining LLVMFuzzerTestOneInput) and run by ctest
 * under ASan/UBSan:
 *
 *   fuzz_NAME_replay [--seed N] [--iterations N] [--seconds S] [--max-len N]
 *                    [--save FILE] CORPUS_DIR|FILE...
 *
 * First every corpus file is replayed as is (sorted by name, so a failure
 * names the same file every time), then --iterations inputs (default 3000)
 * are made from the corpus by seeded random mutations — bit flips,
 * interesting bytes, truncations, chunk deletion, insertion, repetition,
 * splices of two corpus inputs — and run, until --seconds (default 20)
 * have passed. The same seed gives the same inputs.
 *
 * Each input is copied into a buffer of exactly its size, so reading past
 * its end is caught by ASan as libFuzzer would. When a sanitizer or an
 * abort() kills the run, the input being run is written to --save (default
 * fuzz-crash-NAME.bin in the working folder) and its origin is printed, so
 * that it can be committed to the corpus and replayed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reconcile/kc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* A harness may define it (libFuzzer's optional hook); weak here. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#ifdef __SANITIZE_ADDRESS__
#define KC_FUZZ_HAVE_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KC_FUZZ_HAVE_SAN 1
#endif
#endif
#ifdef KC_FUZZ_HAVE_SAN
void __sanitizer_set_death_callback(void (*callback)(void));
#endif

struct input {
    char *name;
    uint8_t *data;
    size_t len;
};

struct corpus {
    struct input *v;
    size_t n, cap;
};

/* What is running, for the crash hooks (only async-signal-safe use). */
static const uint8_t *cur_data;
static size_t cur_len;
static char cur_what[256];
static char save_path[512];

static void save_current(void)
{
    int fd;
    size_t off = 0;

    if (!cur_data)
        return;
    fd = open(save_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    while (off < cur_len) {
        ssize_t w = write(fd, cur_data + off, cur_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fd);
    if (write(2, "fuzz driver: crashing input (", 29) < 0 ||
        write(2, cur_what, strnlen(cur_what, sizeof(cur_what))) < 0 ||
        write(2, ") saved to ", 11) < 0 ||
        write(2, save_path, strnlen(save_path, sizeof(save_path))) < 0 ||
        write(2, "\n", 1) < 0)
        return;
}

static void on_fatal_signal(int sig)
{
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* xorshift64*: small, seeded, the same everywhere. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rng_next(s) % n) : 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct input *)a)->name,
                  ((const struct input *)b)->name);
}

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;

    if (!f)
        return -1;
    for (;;) {
        size_t got;
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = kc_xrealloc(buf, cap);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static void corpus_add(struct corpus *c, const char *path)
{
    struct input in = { 0 };

    if (read_all(path, &in.data, &in.len) < 0) {
        fprintf(stderr, "fuzz driver: cannot read %s: %s\n", path,
                strerror(errno));
        exit(1);
    }
    in.name = kc_xstrdup(path);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = kc_xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    c->v[c->n++] = in;
}

static void corpus_add_path(struct corpus *c, const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz driver: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (!S_ISDIR(st.st_mode)) {
        corpus_add(c, path);
        return;
    }
    d = opendir(path);
    if (!d) {
        fprintf(stderr, "fuzz driver: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    while ((e = readdir(d))) {
        char *p;
        if (e->d_name[0] == '.')
            continue;
        p = kc_xasprintf("%s/%s", path, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            corpus_add(c, p);
        free(p);
    }
    closedir(d);
}

/* Runs one input from a buffer of exactly its size. */
static void run_one(const uint8_t *data, size_t len)
{
    uint8_t *copy = kc_xmalloc(len ? len : 1);

    if (len)
        memcpy(copy, data, len);
    cur_data = copy;
    cur_len = len;
    LLVMFuzzerTestOneInput(copy, len);
    cur_data = NULL;
    cur_len = 0;
    free(copy);
}

static const uint8_t interesting[] = { 0x00, 0x01, 0x7f, 0x80, 0xff, '\n',
                                       '\t', ' ',  '"',  '\'', '\\', '{',
                                       '}',  '[',  ']',  ':',  ',',  '<',
                                       '>',  '&',  '$',  '-',  '0',  '9' };

/* Appends one mutation of BUF (len *LEN, capacity MAX) in place. */
static void mutate_once(uint8_t *buf, size_t *len, size_t max,
                        const struct corpus *c, uint64_t *rng)
{
    size_t n = *len;

    switch (rng_below(rng, 8)) {
    case 0: /* bit flip */
        if (n)
            buf[rng_below(rng, n)] ^= (uint8_t)(1u << rng_below(rng, 8));
        break;
    case 1: /* interesting byte */
        if (n)
            buf[rng_below(rng, n)] =
                interesting[rng_below(rng, sizeof(interesting))];
        break;
    case 2: /* truncation */
        if (n)
            *len = rng_below(rng, n);
        break;
    case 3: { /* delete a chunk */
        size_t at, k;
        if (!n)
            break;
        at = rng_below(rng, n);
        k = 1 + rng_below(rng, n - at < 64 ? n - at : 64);
        memmove(buf + at, buf + at + k, n - at - k);
        *len = n - k;
        break;
    }
    case 4: { /* insert random bytes */
        size_t at = rng_below(rng, n + 1), k = 1 + rng_below(rng, 8);
        if (n + k > max)
            break;
        memmove(buf + at + k, buf + at, n - at);
        for (size_t i = 0; i < k; i++)
            buf[at + i] =
                rng_below(rng, 2)
                    ? (uint8_t)rng_next(rng)
                    : interesting[rng_below(rng, sizeof(interesting))];
        *len = n + k;
        break;
    }
    case 5: { /* repeat a chunk several times */
        size_t at, k, times;
        if (!n)
            break;
        at = rng_below(rng, n);
        k = 1 + rng_below(rng, n - at < 128 ? n - at : 128);
        times = 1 + rng_below(rng, 16);
        for (size_t t = 0; t < times && *len + k <= max; t++) {
            memmove(buf + at + k, buf + at, *len - at);
            *len += k;
        }
        break;
    }
    case 6: { /* splice: a chunk of another corpus input at a random point */
        const struct input *o = &c->v[rng_below(rng, c->n)];
        size_t from, k, at;
        if (!o->len)
            break;
        from = rng_below(rng, o->len);
        k = 1 + rng_below(rng, o->len - from);
        at = rng_below(rng, n + 1);
        if (rng_below(rng, 2)) { /* replace the tail */
            if (at + k > max)
                k = max - at;
            memcpy(buf + at, o->data + from, k);
            *len = at + k;
        } else if (n + k <= max) { /* insert */
            memmove(buf + at + k, buf + at, n - at);
            memcpy(buf + at, o->data + from, k);
            *len = n + k;
        }
        break;
    }
    default: { /* copy a chunk over another place of the same input */
        size_t from, to, k;
        if (n < 2)
            break;
        from = rng_below(rng, n);
        to = rng_below(rng, n);
        k = 1 + rng_below(rng, n - (from > to ? from : to));
        memmove(buf + to, buf + from, k);
        break;
    }
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fuzz_NAME_replay [--seed N] [--iterations N] "
            "[--seconds S] [--max-len N] [--save FILE] CORPUS_DIR|FILE...\n");
    exit(1);
}

int main(int argc, char **argv)
{
    struct corpus c = { 0 };
    uint64_t seed = 1, rng;
    unsigned long iterations = 3000, done = 0;
    double seconds = 20, t0;
    size_t max_len = 65536;
    const char *prog =
        strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    uint8_t *buf;

    snprintf(save_path, sizeof(save_path), "fuzz-crash-%s.bin", prog);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(a, "--iterations") == 0 && i + 1 < argc)
            iterations = strtoul(argv[++i], NULL, 0);
        else if (strcmp(a, "--seconds") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (strcmp(a, "--max-len") == 0 && i + 1 < argc)
            max_len = strtoul(argv[++i], NULL, 0);
        else if (strcmp(a, "--save") == 0 && i + 1 < argc)
            snprintf(save_path, sizeof(save_path), "%s", argv[++i]);
        else if (a[0] == '-')
            usage();
        else
            corpus_add_path(&c, a);
    }
    if (c.n == 0) {
        fprintf(stderr, "fuzz driver: an empty corpus tests nothing\n");
        return 1;
    }
    qsort(c.v, c.n, sizeof(*c.v), name_cmp);
    signal(SIGABRT, on_fatal_signal);
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
#ifdef KC_FUZZ_HAVE_SAN
    __sanitizer_set_death_callback(save_current);
#endif
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);

    t0 = now_s();
    for (size_t i = 0; i < c.n; i++) {
        snprintf(cur_what, sizeof(cur_what), "corpus file %s", c.v[i].name);
        run_one(c.v[i].data, c.v[i].len);
    }
    printf("%s: replayed %zu corpus inputs in %.2f s\n", prog, c.n,
           now_s() - t0);

    buf = kc_xmalloc(max_len ? max_len : 1);
    rng = seed ? seed : 1;
    t0 = now_s();
    for (; done < iterations; done++) {
        const struct input *base = &c.v[rng_below(&rng, c.n)];
        size_t len = base->len < max_len ? base->len : max_len;
        size_t nmut = 1 + rng_below(&rng, 4);

        if ((done & 15) == 0 && now_s() - t0 > seconds)
            break;
        memcpy(buf, base->data, len);
        for (size_t m = 0; m < nmut; m++)
            mutate_once(buf, &len, max_len, &c, &rng);
        snprintf(cur_what, sizeof(cur_what),
                 "mutation %lu of seed %llu, from %s", done,
                 (unsigned long long)seed, base->name);
        run_one(buf, len);
    }
    printf("%s: ran %lu mutated inputs (seed %llu) in %.2f s\n", prog, done,
           (unsigned long long)seed, now_s() - t0);
    free(buf);
    for (size_t i = 0; i < c.n; i++) {
        free(c.v[i].name);
        free(c.v[i].data);
    }
    free(c.v);
    return 0;
}
