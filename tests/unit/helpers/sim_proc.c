/* tests/unit/helpers/sim_proc.c: kmsctl-sim as a child process of a test. */
#include "tests/unit/helpers/sim_proc.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>

#include "reconcile/buf.h"
#include "reconcile/json.h"

struct sim_proc {
    pid_t pid;
    uint16_t port;
    char url[128];
};

static const char *sim_binary(char *buf, size_t size)
{
    const char *env = getenv("KMSCTL_SIM");
    const char *dir = getenv("KC_BUILD_DIR");

    if (env && *env)
        return env;
    cr_assert(dir && *dir, "set KMSCTL_SIM or KC_BUILD_DIR to find kmsctl-sim");
    cr_assert_eq(kc_snprintf(buf, size, "%s/kmsctl-sim", dir), 0);
    return buf;
}

struct sim_proc *sim_proc_start(const char *services, uint64_t seed)
{
    return sim_proc_start_args(services, seed, NULL);
}

struct sim_proc *sim_proc_start_args(const char *services, uint64_t seed,
                                     const char *const *extra_args)
{
    char bin[1024], seedbuf[32], logpath[1100], line[256];
    const char *argv[32];
    size_t argc = 0, len = 0;
    struct sim_proc *sp = kc_xcalloc(1, sizeof(*sp));
    int out[2];
    pid_t parent = getpid();
    const char *dir = getenv("KC_BUILD_DIR");
    uint64_t deadline;
    struct timespec ts;

    sim_binary(bin, sizeof(bin));
    cr_assert_eq(
        kc_snprintf(seedbuf, sizeof(seedbuf), "%llu", (unsigned long long)seed),
        0);
    argv[argc++] = bin;
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--services";
    argv[argc++] = services;
    argv[argc++] = "--seed";
    argv[argc++] = seedbuf;
    for (size_t i = 0; extra_args && extra_args[i] && argc < 30; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    cr_assert_eq(kc_snprintf(logpath, sizeof(logpath), "%s/sim-%d.log",
                             dir && *dir ? dir : "/tmp", (int)parent),
                 0);
    cr_assert_eq(pipe(out), 0);
    sp->pid = fork();
    cr_assert_geq(sp->pid, 0, "fork failed");
    if (sp->pid == 0) {
        int logfd;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        if (!getenv("SIM_PROC_STDERR")) {
            logfd =
                open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (logfd >= 0)
                dup2(logfd, 2);
        }
        execv(bin, (char *const *)KC_UNCONST(argv));
        _exit(127);
    }
    close(out[1]);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* Generous: a sanitizer build on a loaded CI box starts slowly. */
    deadline =
        (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 60000;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        struct pollfd pfd = { .fd = out[0], .events = POLLIN };
        uint64_t now;
        ssize_t n;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        cr_assert_lt(now, deadline, "kmsctl-sim did not start in 60 s (%s)",
                     logpath);
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        n = read(out[0], line + len, sizeof(line) - 1 - len);
        cr_assert_gt(n, 0, "kmsctl-sim exited before listening (see %s)",
                     logpath);
        len += (size_t)n;
        line[len] = '\0';
    }
    close(out[0]);
    line[len] = '\0';
    {
        const char *p = strstr(line, "listening on ");
        char *nl;

        cr_assert_not_null(p, "unexpected first line from kmsctl-sim: %s",
                           line);
        p += strlen("listening on ");
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        cr_assert_eq(kc_snprintf(sp->url, sizeof(sp->url), "%s", p), 0);
        p = strrchr(sp->url, ':');
        cr_assert_not_null(p);
        sp->port = (uint16_t)strtoul(p + 1, NULL, 10);
        cr_assert_gt(sp->port, 0);
    }
    return sp;
}

const char *sim_proc_url(const struct sim_proc *sp)
{
    return sp->url;
}

uint16_t sim_proc_port(const struct sim_proc *sp)
{
    return sp->port;
}

pid_t sim_proc_pid(const struct sim_proc *sp)
{
    return sp->pid;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    kc_buf_add(ud, p, size * n);
    return size * n;
}

long sim_proc_call(struct sim_proc *sp, const char *method, const char *path,
                   const char *body, char **out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct kc_buf b = { 0 };
    char url[2048];
    long code = 0;
    CURLcode rc;

    cr_assert_not_null(c);
    cr_assert_eq(kc_snprintf(url, sizeof(url), "%s%s", sp->url, path), 0);
    h = curl_slist_append(h, "Content-Type: application/json");
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_HTTPHEADER, h), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write),
                 CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_WRITEDATA, &b), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L), CURLE_OK);
    /* Admin calls only over plain HTTP or the test CA; the simulator's own
     * TLS listener is tested through the runtime, not here. */
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L), CURLE_OK);
    cr_assert_eq(curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L), CURLE_OK);
    if (body)
        cr_assert_eq(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body), CURLE_OK);
    rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, url,
                 curl_easy_strerror(rc));
    cr_assert_eq(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code), CURLE_OK);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out)
        *out = kc_buf_detach(&b, NULL);
    kc_buf_release(&b);
    return code;
}

static struct json_object *admin_json(struct sim_proc *sp, const char *method,
                                      const char *path, const char *body)
{
    char *text = NULL;
    struct json_object *j = NULL;
    struct kc_err err = { 0 };
    long code = sim_proc_call(sp, method, path, body, &text);

    cr_assert_eq(code, 200, "%s %s: %ld %s", method, path, code, text);
    cr_assert_eq(kc_json_parse(text, strlen(text), path, &j, &err), 0, "%s",
                 err.msg);
    free(text);
    return j;
}

struct json_object *sim_proc_inventory(struct sim_proc *sp)
{
    return admin_json(sp, "GET", "/_sim/inventory", NULL);
}

struct json_object *sim_proc_requests(struct sim_proc *sp)
{
    return admin_json(sp, "GET", "/_sim/requests", NULL);
}

int64_t sim_proc_route_count(struct sim_proc *sp, const char *route)
{
    struct json_object *r = sim_proc_requests(sp), *by, *v;
    int64_t n = 0;

    if (json_object_object_get_ex(r, "by_route", &by) &&
        json_object_object_get_ex(by, route, &v))
        n = json_object_get_int64(v);
    json_object_put(r);
    return n;
}

void sim_proc_set_faults(struct sim_proc *sp, const char *rules_json)
{
    json_object_put(admin_json(sp, "POST", "/_sim/faults", rules_json));
}

void sim_proc_clear_faults(struct sim_proc *sp)
{
    json_object_put(admin_json(sp, "DELETE", "/_sim/faults", NULL));
}

void sim_proc_reset(struct sim_proc *sp)
{
    json_object_put(admin_json(sp, "POST", "/_sim/reset", ""));
}

static long object_call(struct sim_proc *sp, const char *method,
                        const char *service, const char *kind, const char *name,
                        const char *body)
{
    char path[1024];

    cr_assert_eq(kc_snprintf(path, sizeof(path), "/_sim/objects/%s/%s/%s",
                             service, kind, name),
                 0);
    return sim_proc_call(sp, method, path, body, NULL);
}

long sim_proc_patch_object(struct sim_proc *sp, const char *service,
                           const char *kind, const char *name,
                           const char *patch_json)
{
    return object_call(sp, "PATCH", service, kind, name, patch_json);
}

long sim_proc_delete_object(struct sim_proc *sp, const char *service,
                            const char *kind, const char *name)
{
    return object_call(sp, "DELETE", service, kind, name, NULL);
}

void sim_proc_stop(struct sim_proc *sp)
{
    int status = 0;

    if (!sp)
        return;
    if (sp->pid > 0 && kill(sp->pid, SIGTERM) == 0) {
        for (int i = 0; i < 500; i++) {
            pid_t r = waitpid(sp->pid, &status, WNOHANG);
            struct timespec ts = { 0, 10 * 1000 * 1000 };

            if (r == sp->pid) {
                sp->pid = 0;
                break;
            }
            nanosleep(&ts, NULL);
        }
        if (sp->pid > 0) {
            kill(sp->pid, SIGKILL);
            waitpid(sp->pid, &status, 0);
        }
    }
    free(sp);
}
