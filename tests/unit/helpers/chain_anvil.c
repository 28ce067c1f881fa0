/* tests/unit/helpers/chain_anvil.c: anvil on a port of its own choice, and
 * blocking JSON-RPC for test checks. */
#include "chain_anvil.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reconcile/buf.h"
#include "reconcile/file.h"

static void msleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static const char *anvil_binary(char *buf, size_t n)
{
    const char *src = getenv("KC_SRC_DIR");
    static const char *const rel[] = {
        "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
        "node_modules/@foundry-rs/anvil-linux-arm64/bin/anvil",
    };

    for (size_t i = 0; src && i < KC_ARRAY_SIZE(rel); i++) {
        if (kc_snprintf(buf, n, "%s/%s", src, rel[i]) == 0 &&
            access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

/* The port in anvil's "Listening on 127.0.0.1:PORT" line of its log, or 0
 * while it is not there. */
static int listening_port(const char *log)
{
    static const char tag[] = "Listening on 127.0.0.1:";
    char *text = NULL, *p;
    size_t len;
    int port = 0;

    if (kc_file_read(log, 1 << 20, &text, &len, NULL) < 0)
        return 0;
    p = strstr(text, tag);
    if (p && strchr(p, '\n')) {
        long v = strtol(p + sizeof(tag) - 1, NULL, 10);

        port = v > 0 && v < 65536 ? (int)v : -1;
    }
    free(text);
    return port;
}

/* anvil binds port 0 and says which port it got: a port chosen here and
 * bound later by anvil could be taken meanwhile (another test's connection). */
int chain_anvil_start(struct chain_anvil *a, const char *const *argv)
{
    char bin[1024];
    const char *args[32], *tmp = getenv("TMPDIR");
    size_t na = 0;
    pid_t parent = getpid();
    int fd, i;

    memset(a, 0, sizeof(*a));
    if (!anvil_binary(bin, sizeof(bin))) {
        fprintf(stderr, "anvil: no binary under $KC_SRC_DIR/node_modules\n");
        return -1;
    }
    kc_snprintf(a->log, sizeof(a->log), "%s/kc-anvil.XXXXXX",
                tmp && tmp[0] ? tmp : "/tmp");
    fd = mkstemp(a->log);
    if (fd < 0) {
        fprintf(stderr, "anvil: mkstemp %s: %s\n", a->log, strerror(errno));
        a->log[0] = '\0';
        return -1;
    }
    args[na++] = bin;
    args[na++] = "--host";
    args[na++] = "127.0.0.1";
    args[na++] = "--port";
    args[na++] = "0";
    for (size_t k = 0; argv && argv[k] && na < KC_ARRAY_SIZE(args) - 1; k++)
        args[na++] = argv[k];
    args[na] = NULL;
    a->pid = fork();
    if (a->pid < 0) {
        close(fd);
        return -1;
    }
    if (a->pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fd, 1);
        execv(bin, (char *const *)KC_UNCONST(args));
        _exit(127);
    }
    close(fd);
    /* Generous deadlines (60 s each): a loaded CI box is slow to start it. */
    for (i = 0; i < 1200 && a->port == 0; i++) {
        int st;
        if (waitpid(a->pid, &st, WNOHANG) == a->pid) {
            fprintf(stderr, "anvil exited early (status %d)\n", st);
            a->pid = 0;
            chain_anvil_stop(a);
            return -1;
        }
        a->port = listening_port(a->log);
        if (a->port == 0)
            msleep(50);
    }
    if (a->port <= 0) {
        fprintf(stderr, "anvil did not say where it listens (%s)\n", a->log);
        chain_anvil_stop(a);
        return -1;
    }
    kc_snprintf(a->url, sizeof(a->url), "http://127.0.0.1:%d", a->port);
    for (i = 0; i < 1200; i++) {
        if (chain_anvil_rpc_u64(a->url, "eth_chainId", NULL) != UINT64_MAX)
            return 0;
        msleep(50);
    }
    fprintf(stderr, "anvil did not answer on %s\n", a->url);
    chain_anvil_stop(a);
    return -1;
}

void chain_anvil_stop(struct chain_anvil *a)
{
    int st;

    if (a->log[0]) {
        unlink(a->log);
        a->log[0] = '\0';
    }
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(a->pid, &st, WNOHANG) == a->pid) {
            a->pid = 0;
            return;
        }
        msleep(20);
    }
    kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
    a->pid = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return kc_buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

struct json_object *chain_anvil_rpc(const char *url, const char *method,
                                    const char *params, char **errmsg)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct kc_buf req = { 0 }, resp = { 0 };
    struct json_object *root = NULL, *res = NULL, *e = NULL;
    bool quiet = strcmp(method, "eth_chainId") == 0;

    if (errmsg)
        *errmsg = NULL;
    if (!c)
        return NULL;
    kc_buf_addf(&req,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\","
                "\"params\":%s}",
                method, params ? params : "[]");
    h = curl_slist_append(h, "Content-Type: application/json");
    if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.data) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L) != CURLE_OK ||
        curl_easy_perform(c) != CURLE_OK) {
        if (!quiet)
            fprintf(stderr, "rpc %s: transport error\n", method);
        goto out;
    }
    root = json_tokener_parse(kc_buf_str(&resp));
    if (!root) {
        fprintf(stderr, "rpc %s: bad JSON\n", method);
        goto out;
    }
    if (json_object_object_get_ex(root, "error", &e)) {
        if (errmsg)
            *errmsg = kc_xstrdup(json_object_to_json_string(e));
        else
            fprintf(stderr, "rpc %s: %s\n", method,
                    json_object_to_json_string(e));
        goto out;
    }
    if (json_object_object_get_ex(root, "result", &res))
        res = json_object_get(res);
out:
    json_object_put(root);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    kc_buf_release(&req);
    kc_buf_release(&resp);
    return res;
}

uint64_t chain_anvil_rpc_u64(const char *url, const char *method,
                             const char *params)
{
    struct json_object *r = chain_anvil_rpc(url, method, params, NULL);
    const char *s = r ? json_object_get_string(r) : NULL;
    uint64_t v = UINT64_MAX;

    if (s && strncmp(s, "0x", 2) == 0)
        v = strtoull(s + 2, NULL, 16);
    json_object_put(r);
    return v;
}

const char *chain_anvil_artifacts(void)
{
    static char path[1024];
    const char *b = getenv("KC_BUILD_DIR");

    snprintf(path, sizeof(path), "%s/artifacts", b ? b : ".");
    return path;
}
