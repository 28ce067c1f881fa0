/* tests/sim/main.c: kmsctl-sim, the simulator of the cloud APIs kmsctl uses.
 *
 *   kmsctl-sim --listen 127.0.0.1:PORT [--services LIST] [--seed N]
 *              [--tls-cert FILE --tls-key FILE] [--max-body-mib N]
 *
 * PORT 0 picks a free port. Once listening it prints one line on stdout,
 * "listening on http://127.0.0.1:PORT" (https with --tls-cert), and runs
 * until SIGINT or SIGTERM. Request logs go to stderr.
 */
#include "tests/sim/sim.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "reconcile/file.h"

/* Every service kmsctl-sim knows. A service whose file is not linked is a
 * NULL weak symbol and reported as unavailable; adding a file svc_<name>.c
 * needs no change here, only a new name needs one line. */
extern const struct sim_service sim_svc_test __attribute__((weak));
extern const struct sim_service sim_svc_gcp __attribute__((weak));
extern const struct sim_service sim_svc_ec2 __attribute__((weak));
extern const struct sim_service sim_svc_kms __attribute__((weak));

static const struct {
    const char *name;
    const struct sim_service *svc;
} known[] = {
    { "test", &sim_svc_test },
    { "gcp", &sim_svc_gcp },
    { "ec2", &sim_svc_ec2 },
    { "kms", &sim_svc_kms },
};

static void usage(FILE *out)
{
    fprintf(out, "usage: kmsctl-sim --listen HOST:PORT [--services LIST] "
                 "[--seed N]\n"
                 "                  [--tls-cert FILE --tls-key FILE] "
                 "[--max-body-mib N]\n"
                 "services:");
    for (size_t i = 0; i < KC_ARRAY_SIZE(known); i++)
        fprintf(out, " %s%s", known[i].name,
                known[i].svc ? "" : " (not built)");
    fputc('\n', out);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static char *read_pem(const char *path, struct kc_err *err)
{
    char *text = NULL;
    size_t len = 0;

    if (kc_file_read(path, 1 << 20, &text, &len, err) < 0)
        return NULL;
    return text;
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *services = NULL, *cert = NULL, *key = NULL;
    const struct sim_service *enabled[KC_ARRAY_SIZE(known) + 1] = { 0 };
    struct sim_config cfg = { 0 };
    struct kc_err err = { 0 };
    struct sim *sim = NULL;
    char *host = NULL, *list = NULL, *cert_pem = NULL, *key_pem = NULL;
    uint64_t v;
    uint16_t port = 0;
    size_t nenabled = 0;
    sigset_t set;
    int sig = 0, ret = 1;

    cfg.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "kmsctl-sim: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            listen = val;
        } else if (strcmp(a, "--services") == 0) {
            services = val;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_u64(val, UINT64_MAX, &cfg.seed) < 0) {
                fprintf(stderr, "kmsctl-sim: --seed '%s' is not a number\n",
                        val);
                return 2;
            }
        } else if (strcmp(a, "--tls-cert") == 0) {
            cert = val;
        } else if (strcmp(a, "--tls-key") == 0) {
            key = val;
        } else if (strcmp(a, "--max-body-mib") == 0) {
            if (parse_u64(val, 4096, &v) < 0 || v == 0) {
                fprintf(stderr,
                        "kmsctl-sim: --max-body-mib '%s' is not in 1..4096\n",
                        val);
                return 2;
            }
            cfg.max_body = (size_t)v << 20;
        } else {
            fprintf(stderr, "kmsctl-sim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!listen) {
        fprintf(stderr, "kmsctl-sim: --listen HOST:PORT is required\n");
        usage(stderr);
        return 2;
    }
    {
        const char *colon = strrchr(listen, ':');

        if (!colon || colon == listen || parse_u64(colon + 1, 65535, &v) < 0) {
            fprintf(stderr,
                    "kmsctl-sim: --listen '%s': expected HOST:PORT (port "
                    "0..65535)\n",
                    listen);
            return 2;
        }
        host = kc_xstrndup(listen, (size_t)(colon - listen));
        port = (uint16_t)v;
    }
    if (!!cert != !!key) {
        fprintf(stderr, "kmsctl-sim: --tls-cert and --tls-key go together\n");
        goto out;
    }
    if (cert) {
        cert_pem = read_pem(cert, &err);
        if (cert_pem)
            key_pem = read_pem(key, &err);
        if (!cert_pem || !key_pem) {
            fprintf(stderr, "kmsctl-sim: %s\n", err.msg);
            goto out;
        }
    }
    list = kc_xstrdup(services ? services : "test");
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        size_t k = 0;

        while (k < KC_ARRAY_SIZE(known) && strcmp(known[k].name, name) != 0)
            k++;
        if (k == KC_ARRAY_SIZE(known)) {
            fprintf(stderr, "kmsctl-sim: unknown service '%s'\n", name);
            usage(stderr);
            goto out;
        }
        if (!known[k].svc) {
            fprintf(stderr, "kmsctl-sim: service '%s' is not built in\n", name);
            goto out;
        }
        bool dup = false;

        for (size_t j = 0; j < nenabled; j++)
            dup = dup || enabled[j] == known[k].svc;
        if (!dup)
            enabled[nenabled++] = known[k].svc;
    }
    /* Signals are taken by this thread with sigwait; every other thread
     * (MHD's, the timer thread) inherits the blocked mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    cfg.host = host;
    cfg.port = port;
    cfg.services = enabled;
    cfg.cert_pem = cert_pem;
    cfg.key_pem = key_pem;
    if (sim_new(&cfg, &sim, &err) < 0 || sim_start(sim, &port, &err) < 0) {
        fprintf(stderr, "kmsctl-sim: %s\n", err.msg);
        goto out;
    }
    printf("listening on %s://%s:%u\n", cert ? "https" : "http", host,
           (unsigned)port);
    fflush(stdout);
    fprintf(stderr, "sim: serving %s on %s:%u, seed %llu\n", list, host,
            (unsigned)port, (unsigned long long)cfg.seed);
    if (sigwait(&set, &sig) != 0)
        fprintf(stderr, "kmsctl-sim: sigwait failed\n");
    fprintf(stderr, "sim: signal %d, stopping\n", sig);
    ret = 0;
out:
    sim_free(sim);
    free(host);
    free(list);
    free(cert_pem);
    if (key_pem)
        kc_memzero(key_pem, strlen(key_pem));
    free(key_pem);
    return ret;
}
