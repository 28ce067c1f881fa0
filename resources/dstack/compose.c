/* resources/dstack/compose.c: app-compose.json, prelaunch.sh, .sys-config.json,
 * .instance_info, .user-config and the KMS compose templates. */
#include "resources/dstack/compose.h"

#include <openssl/rand.h>

#include "reconcile/hex.h"
#include "resources/dstack/dstack.h"

/* Writes the JSON escape of the UTF-16 code unit UNIT (a backslash, 'u' and
 * four lowercase hex digits) and a NUL. */
static void json_u_escape(char esc[7], uint32_t unit)
{
    unsigned char be[2] = { (unsigned char)(unit >> 8), (unsigned char)unit };

    esc[0] = '\\';
    esc[1] = 'u';
    kc_hex_encode(be, 2, esc + 2);
}

int dstack_json_str(struct kc_buf *out, const char *s, const char *what,
                    struct kc_err *err)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    char esc[13];

    kc_buf_addch(out, '"');
    while (*p) {
        uint32_t cp;
        int extra;

        if (*p < 0x80) {
            cp = *p++;
            extra = 0;
        } else if ((*p & 0xe0) == 0xc0) {
            cp = *p++ & 0x1f;
            extra = 1;
        } else if ((*p & 0xf0) == 0xe0) {
            cp = *p++ & 0x0f;
            extra = 2;
        } else if ((*p & 0xf8) == 0xf0) {
            cp = *p++ & 0x07;
            extra = 3;
        } else {
            return kc_err_set(err, KC_EINVAL, "%s: invalid UTF-8", what);
        }
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return kc_err_set(err, KC_EINVAL, "%s: invalid UTF-8", what);
            cp = cp << 6 | (*p & 0x3f);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return kc_err_set(err, KC_EINVAL, "%s: invalid UTF-8", what);
        switch (cp) {
        case '"':
            kc_buf_addstr(out, "\\\"");
            continue;
        case '\\':
            kc_buf_addstr(out, "\\\\");
            continue;
        case '\n':
            kc_buf_addstr(out, "\\n");
            continue;
        case '\r':
            kc_buf_addstr(out, "\\r");
            continue;
        case '\t':
            kc_buf_addstr(out, "\\t");
            continue;
        case '\b':
            kc_buf_addstr(out, "\\b");
            continue;
        case '\f':
            kc_buf_addstr(out, "\\f");
            continue;
        default:
            break;
        }
        if (cp >= 0x20 && cp < 0x7f) {
            kc_buf_addch(out, (char)cp);
            continue;
        }
        if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            uint32_t hi = 0xd800 | (v >> 10), lo = 0xdc00 | (v & 0x3ff);

            json_u_escape(esc, hi);
            json_u_escape(esc + 6, lo);
            kc_buf_add(out, esc, 12);
            continue;
        }
        json_u_escape(esc, cp);
        kc_buf_add(out, esc, 6);
    }
    kc_buf_addch(out, '"');
    return 0;
}

/* A member line: indent, "key": and the start of the value. */
static void json_key(struct kc_buf *out, const char *key, bool first)
{
    kc_buf_addstr(out, first ? "\n  \"" : ",\n  \"");
    kc_buf_addstr(out, key);
    kc_buf_addstr(out, "\": ");
}

static void json_bool(struct kc_buf *out, bool b)
{
    kc_buf_addstr(out, b ? "true" : "false");
}

/* A list of strings as a member value, Python indent=2 style at depth 1. */
static int json_str_list(struct kc_buf *out, const char *const *items, size_t n,
                         const char *what, struct kc_err *err)
{
    if (n == 0) {
        kc_buf_addstr(out, "[]");
        return 0;
    }
    kc_buf_addch(out, '[');
    for (size_t i = 0; i < n; i++) {
        kc_buf_addstr(out, i ? ",\n    " : "\n    ");
        if (dstack_json_str(out, items[i], what, err) < 0)
            return err->code;
    }
    kc_buf_addstr(out, "\n  ]");
    return 0;
}

bool dstack_is_env_name(const char *s)
{
    if (!s || !*s ||
        !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
              (*s >= 'A' && *s <= 'F')))
            return false;
    return true;
}

static bool one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

int dstack_app_compose_render(const struct dstack_app_compose *c,
                              struct kc_buf *out, struct kc_err *err)
{
    static const char *const providers[] = { "kms", "local", "tpm", "none",
                                             NULL };
    static const char *const fses[] = { "ext4", "zfs", NULL };
    const char *kp = c->key_provider ? c->key_provider : "";
    const char *fs = c->storage_fs ? c->storage_fs : "ext4";
    const char *kpid = c->key_provider_id ? c->key_provider_id : "";
    const char **envs = NULL;
    size_t nenvs = 0, start = out->len;
    bool is_kms = strcmp(kp, "kms") == 0;
    int ret = 0;

    if (!one_of(kp, providers))
        return kc_err_set(err, KC_EINVAL,
                          "key_provider '%s' is not one of kms, local, tpm, "
                          "none",
                          kp);
    if (!one_of(fs, fses))
        return kc_err_set(err, KC_EINVAL,
                          "storage_fs '%s' is not one of ext4, zfs", fs);
    if (c->gateway_enabled && !is_kms)
        return kc_err_set(err, KC_EINVAL,
                          "gateway_enabled needs key_provider kms, not '%s'",
                          kp);
    if (*kpid && (strcmp(kp, "tpm") == 0 || strcmp(kp, "none") == 0))
        return kc_err_set(err, KC_EINVAL,
                          "key_provider_id must be empty for key_provider "
                          "'%s'",
                          kp);
    if (!is_hex(kpid) || strlen(kpid) % 2)
        return kc_err_set(err, KC_EINVAL, "key_provider_id is not hex");
    envs = kc_xcalloc(c->nallowed_envs + 1, sizeof(*envs));
    for (size_t i = 0; i < c->nallowed_envs; i++) {
        bool seen = false;

        if (!dstack_is_env_name(c->allowed_envs[i])) {
            ret = kc_err_set(err, KC_EINVAL,
                             "allowed_envs[%zu] '%.64s' is not an environment "
                             "variable name",
                             i, c->allowed_envs[i] ? c->allowed_envs[i] : "");
            goto out;
        }
        for (size_t j = 0; j < nenvs && !seen; j++)
            seen = strcmp(envs[j], c->allowed_envs[i]) == 0;
        if (!seen)
            envs[nenvs++] = c->allowed_envs[i];
    }

    kc_buf_addch(out, '{');
    json_key(out, "manifest_version", true);
    kc_buf_addstr(out, "2");
    json_key(out, "name", false);
    if ((ret = dstack_json_str(out, c->name, "name", err)) < 0)
        goto out;
    json_key(out, "runner", false);
    kc_buf_addstr(out, "\"docker-compose\"");
    json_key(out, "docker_compose_file", false);
    if ((ret = dstack_json_str(out, c->docker_compose_file,
                               "docker_compose_file", err)) < 0)
        goto out;
    json_key(out, "gateway_enabled", false);
    json_bool(out, c->gateway_enabled);
    json_key(out, "public_logs", false);
    json_bool(out, c->public_logs);
    json_key(out, "public_sysinfo", false);
    json_bool(out, c->public_sysinfo);
    json_key(out, "public_tcbinfo", false);
    json_bool(out, c->public_tcbinfo);
    json_key(out, "key_provider_id", false);
    if ((ret = dstack_json_str(out, kpid, "key_provider_id", err)) < 0)
        goto out;
    json_key(out, "allowed_envs", false);
    if ((ret = json_str_list(out, envs, nenvs, "allowed_envs", err)) < 0)
        goto out;
    json_key(out, "no_instance_id", false);
    json_bool(out, is_kms ? c->no_instance_id : true);
    json_key(out, "secure_time", false);
    json_bool(out, c->secure_time);
    json_key(out, "key_provider", false);
    if ((ret = dstack_json_str(out, kp, "key_provider", err)) < 0)
        goto out;
    json_key(out, "storage_fs", false);
    if ((ret = dstack_json_str(out, fs, "storage_fs", err)) < 0)
        goto out;
    json_key(out, "pre_launch_script", false);
    if ((ret = dstack_json_str(out, c->pre_launch_script, "pre_launch_script",
                               err)) < 0)
        goto out;
    kc_buf_addstr(out, "\n}");
    if (out->len - start > DSTACK_APP_COMPOSE_MAX)
        ret = kc_err_set(err, KC_ERANGE,
                         "app-compose.json is %zu bytes, over the guest's "
                         "limit of %u",
                         out->len - start, DSTACK_APP_COMPOSE_MAX);
out:
    free(envs);
    return ret;
}

void dstack_sha256_hex(const void *data, size_t len, char hex[65])
{
    kc_hex_sha256(data, len, hex);
}

int dstack_sys_config_render(const struct dstack_sys_config *sc,
                             struct kc_buf *out, struct kc_err *err)
{
    struct kc_buf vm = { 0 };
    const char *img = sc->os_image_hash ? sc->os_image_hash : "";
    int ret;

    if (!is_hex(img))
        return kc_err_set(err, KC_EINVAL, "os_image_hash '%.80s' is not hex",
                          img);
    /* vm_config is json.dumps() of a dict: separators ", " and ": ". */
    kc_buf_addstr(&vm, "{\"spec_version\": 2, \"os_image_hash\": ");
    dstack_json_str(&vm, img, "os_image_hash", err);
    kc_buf_addch(&vm, '}');

    kc_buf_addch(out, '{');
    json_key(out, "kms_urls", true);
    if ((ret = json_str_list(out, sc->kms_urls, sc->nkms_urls, "kms_urls",
                             err)) < 0)
        goto out;
    json_key(out, "gateway_urls", false);
    if ((ret = json_str_list(out, sc->gateway_urls, sc->ngateway_urls,
                             "gateway_urls", err)) < 0)
        goto out;
    json_key(out, "pccs_url", false);
    if ((ret = dstack_json_str(out, sc->pccs_url, "pccs_url", err)) < 0)
        goto out;
    json_key(out, "vm_config", false);
    if ((ret = dstack_json_str(out, kc_buf_str(&vm), "vm_config", err)) < 0)
        goto out;
    kc_buf_addstr(out, "\n}");
out:
    kc_buf_release(&vm);
    return ret;
}

static int ids_norm(char id[41], const char *what, unsigned bit,
                    unsigned *generated, struct kc_err *err)
{
    char tmp[41];
    const char *s = id;
    size_t len;

    if (!*id) {
        unsigned char raw[20];

        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return kc_err_from_ssl(err, "RAND_bytes");
        kc_hex_encode(raw, sizeof(raw), id);
        if (generated)
            *generated |= bit;
        return 0;
    }
    len = strnlen(s, 41);
    if (len != 40 || !is_hex(s))
        return kc_err_set(err, KC_EINVAL,
                          "%s '%.48s' is not 20 bytes of hex (40 digits)", what,
                          id);
    for (size_t i = 0; i < 40; i++)
        tmp[i] = (char)((s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 'a' : s[i]);
    tmp[40] = '\0';
    memcpy(id, tmp, sizeof(tmp));
    return 0;
}

int dstack_ids_fill(struct dstack_ids *ids, unsigned *generated,
                    struct kc_err *err)
{
    int ret;

    if (generated)
        *generated = 0;
    ids->instance_id_seed[40] = '\0';
    ids->app_id[40] = '\0';
    ret =
        ids_norm(ids->instance_id_seed, "instance_id_seed", 1, generated, err);
    if (ret == 0)
        ret = ids_norm(ids->app_id, "app_id", 2, generated, err);
    return ret;
}

int dstack_instance_info_render(const struct dstack_ids *ids,
                                struct kc_buf *out, struct kc_err *err)
{
    if (strlen(ids->instance_id_seed) != 40 || !is_hex(ids->instance_id_seed) ||
        strlen(ids->app_id) != 40 || !is_hex(ids->app_id))
        return kc_err_set(err, KC_EINVAL,
                          ".instance_info: ids not filled (dstack_ids_fill)");
    kc_buf_addch(out, '{');
    json_key(out, "instance_id_seed", true);
    dstack_json_str(out, ids->instance_id_seed, "instance_id_seed", err);
    json_key(out, "app_id", false);
    dstack_json_str(out, ids->app_id, "app_id", err);
    kc_buf_addstr(out, "\n}");
    return 0;
}

int dstack_user_config_render(const struct dstack_kv *kv, size_t n,
                              struct kc_buf *out, struct kc_err *err)
{
    size_t start = out->len;

    if (n == 0) {
        kc_buf_addstr(out, "{}");
        return 0;
    }
    kc_buf_addch(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (!dstack_is_env_name(kv[i].key))
            return kc_err_set(err, KC_EINVAL,
                              "user_config key '%.64s' is not an environment "
                              "variable name",
                              kv[i].key ? kv[i].key : "");
        for (size_t j = 0; j < i; j++)
            if (strcmp(kv[i].key, kv[j].key) == 0)
                return kc_err_set(err, KC_EINVAL,
                                  "user_config key '%s' given twice",
                                  kv[i].key);
        json_key(out, kv[i].key, i == 0);
        /* Never name the value in the error: it is a secret. */
        if (dstack_json_str(out, kv[i].value, kv[i].key, err) < 0)
            return err->code;
    }
    kc_buf_addstr(out, "\n}");
    if (out->len - start > DSTACK_USER_CONFIG_MAX)
        return kc_err_set(err, KC_ERANGE,
                          ".user-config is over the guest's limit of %u bytes",
                          DSTACK_USER_CONFIG_MAX);
    return 0;
}

/* A value that goes on one line of .env inside a quoted here-document. */
static int env_value_ok(const char *key, const char *v, struct kc_err *err)
{
    for (const char *p = v ? v : ""; *p; p++)
        if (*p == '\n' || *p == '\r')
            return kc_err_set(err, KC_EINVAL,
                              "value of '%s' holds a line break", key);
    return 0;
}

/* Appends S in single quotes for sh. */
static void shell_quote(struct kc_buf *out, const char *s)
{
    kc_buf_addch(out, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            kc_buf_addstr(out, "'\\''");
        else
            kc_buf_addch(out, *s);
    }
    kc_buf_addch(out, '\'');
}

int dstack_prelaunch_render(const struct dstack_prelaunch *p,
                            struct kc_buf *out, struct kc_err *err)
{
    for (size_t i = 0; i < p->nenv; i++) {
        if (!dstack_is_env_name(p->env[i].key))
            return kc_err_set(err, KC_EINVAL,
                              "setting '%.64s' is not an environment variable "
                              "name",
                              p->env[i].key ? p->env[i].key : "");
        if (env_value_ok(p->env[i].key, p->env[i].value, err) < 0)
            return err->code;
    }
    for (size_t i = 0; i < p->nallow; i++)
        if (!dstack_is_env_name(p->allow[i]))
            return kc_err_set(err, KC_EINVAL,
                              "user_config key '%.64s' is not an environment "
                              "variable name",
                              p->allow[i] ? p->allow[i] : "");

    kc_buf_addstr(out,
                  "#!/bin/bash\n"
                  "# Generated by kmsctl. Measured as part of app-compose.json"
                  " (compose hash):\n"
                  "# it holds no secrets. It writes the compose .env from the"
                  " settings below,\n"
                  "# then imports the listed keys of .user-config (not"
                  " measured, so the host\n"
                  "# could swap it): values of these names only, read as JSON,"
                  " never sourced.\n"
                  "(\n"
                  "umask 077\n"
                  "cat > .env <<'KMSCTL_ENV_EOF'\n");
    for (size_t i = 0; i < p->nenv; i++)
        kc_buf_addf(out, "%s=%s\n", p->env[i].key,
                    p->env[i].value ? p->env[i].value : "");
    kc_buf_addstr(out, "KMSCTL_ENV_EOF\n");
    if (p->nallow) {
        kc_buf_addstr(out, "user_config=");
        shell_quote(out, p->user_config_path
                             ? p->user_config_path
                             : "/dstack/.host-shared/.user-config");
        kc_buf_addch(out, '\n');
    }
    if (p->nallow) {
        kc_buf_addstr(out, "if [ -f \"$user_config\" ]; then\n"
                           "  for key in");
        for (size_t i = 0; i < p->nallow; i++)
            kc_buf_addf(out, " %s", p->allow[i]);
        kc_buf_addstr(
            out, "; do\n"
                 "    value=$(jq -r --arg k \"$key\" 'if type == \"object\" and"
                 " (.[$k] | type) == \"string\" then .[$k] else empty end'"
                 " \"$user_config\" 2>/dev/null) || continue\n"
                 "    [ -n \"$value\" ] || continue\n"
                 "    value=$(printf '%s' \"$value\" | tr -d '\\r\\n')\n"
                 "    printf '%s=%s\\n' \"$key\" \"$value\" >> .env\n"
                 "  done\n"
                 "fi\n");
    }
    kc_buf_addstr(out, ")\n");
    return 0;
}

/* The templates. Compose interpolates ${VAR} from .env; $$ is a literal $ for
 * the container's shell. kms.toml follows reference/dstack.md §1.5; the
 * auth-api build follows §2.1 (clone DSTACK_REPO at DSTACK_REF, build
 * kms/auth-eth once into the auth-state volume). */
#define AUTH_HEAD                                     \
    "services:\n"                                     \
    "  auth-api:\n"                                   \
    "    image: node:20-bookworm-slim\n"              \
    "    restart: unless-stopped\n"                   \
    "    ports:\n"                                    \
    "      - \"${AUTH_HTTP_PORT:-18000}:8000\"\n"     \
    "    volumes:\n"                                  \
    "      - auth-state:/state\n"                     \
    "    environment:\n"                              \
    "      HOST: \"0.0.0.0\"\n"                       \
    "      PORT: \"8000\"\n"                          \
    "      KMS_CONTRACT_ADDR: ${KMS_CONTRACT_ADDR}\n" \
    "      DSTACK_REPO: ${DSTACK_REPO}\n"             \
    "      DSTACK_REF: ${DSTACK_REF}\n"

#define AUTH_TAIL                                                                \
    "    entrypoint: [\"/bin/bash\", \"-c\"]\n"                                  \
    "    command:\n"                                                             \
    "      - |\n"                                                                \
    "        set -e\n"                                                           \
    "        stamp=\"/state/built-$$DSTACK_REF\"\n"                              \
    "        if [ ! -f \"$$stamp\" ]; then\n"                                    \
    "          apt-get update\n"                                                 \
    "          apt-get install -y --no-install-recommends git ca-certificates\n" \
    "          rm -rf /state/src /state/auth-eth\n"                              \
    "          git clone \"$$DSTACK_REPO\" /state/src\n"                         \
    "          git -C /state/src checkout \"$$DSTACK_REF\"\n"                    \
    "          cp -r /state/src/kms/auth-eth /state/auth-eth\n"                  \
    "          cd /state/auth-eth\n"                                             \
    "          npm ci\n"                                                         \
    "          npm run build\n"                                                  \
    "          touch \"$$stamp\"\n"                                              \
    "        fi\n"                                                               \
    "        cd /state/auth-eth\n"                                               \
    "        exec node dist/src/main.js\n"

#define KMS_SERVICE                                                             \
    "  kms:\n"                                                                  \
    "    image: ${KMS_IMAGE}\n"                                                 \
    "    restart: unless-stopped\n"                                             \
    "    depends_on:\n"                                                         \
    "      - auth-api\n"                                                        \
    "    ports:\n"                                                              \
    "      - \"${KMS_HTTPS_PORT:-12001}:8000\"\n"                               \
    "    volumes:\n"                                                            \
    "      - kms-volume:/kms\n"                                                 \
    "      - /var/run/dstack.sock:/var/run/dstack.sock\n"                       \
    "    entrypoint: [\"/bin/sh\", \"-c\"]\n"                                   \
    "    command:\n"                                                            \
    "      - |\n"                                                               \
    "        mkdir -p /kms/certs /kms/images\n"                                 \
    "        cat > /kms/kms.toml <<'EOF'\n"                                     \
    "        [rpc]\n"                                                           \
    "        address = \"0.0.0.0\"\n"                                           \
    "        port = 8000\n"                                                     \
    "\n"                                                                        \
    "        [rpc.tls]\n"                                                       \
    "        key = \"/kms/certs/rpc.key\"\n"                                    \
    "        certs = \"/kms/certs/rpc.crt\"\n"                                  \
    "\n"                                                                        \
    "        [rpc.tls.mutual]\n"                                                \
    "        ca_certs = \"/kms/certs/tmp-ca.crt\"\n"                            \
    "        mandatory = false\n"                                               \
    "\n"                                                                        \
    "        [core]\n"                                                          \
    "        cert_dir = \"/kms/certs\"\n"                                       \
    "        admin_token_hash = \"\"\n"                                         \
    "\n"                                                                        \
    "        [core.image]\n"                                                    \
    "        verify = true\n"                                                   \
    "        cache_dir = \"/kms/images\"\n"                                     \
    "        download_url = \"http://localhost:8000/{OS_IMAGE_HASH}.tar.gz\"\n" \
    "        download_timeout = \"2m\"\n"                                       \
    "\n"                                                                        \
    "        [core.auth_api]\n"                                                 \
    "        type = \"webhook\"\n"                                              \
    "\n"                                                                        \
    "        [core.auth_api.webhook]\n"                                         \
    "        url = \"http://auth-api:8000\"\n"                                  \
    "\n"                                                                        \
    "        [core.onboard]\n"                                                  \
    "        enabled = true\n"                                                  \
    "        auto_bootstrap_domain = \"\"\n"                                    \
    "        address = \"0.0.0.0\"\n"                                           \
    "        port = 8000\n"                                                     \
    "        EOF\n"                                                             \
    "        exec dstack-kms -c /kms/kms.toml\n"

/* Helios (light mode) runs from the KMS image, which ships a prebuilt
 * /usr/local/bin/helios (§7 "helios slow compile"). Without a configured
 * checkpoint it asks the Sepolia beacon API for the finalized root (§5.6). */
#define HELIOS_SERVICE                                                                                                   \
    "  helios:\n"                                                                                                        \
    "    image: ${KMS_IMAGE}\n"                                                                                          \
    "    restart: unless-stopped\n"                                                                                      \
    "    ports:\n"                                                                                                       \
    "      - \"${HELIOS_RPC_PORT:-18545}:8545\"\n"                                                                       \
    "    environment:\n"                                                                                                 \
    "      EXECUTION_RPC: ${EXECUTION_RPC}\n"                                                                            \
    "      CONSENSUS_RPC: ${CONSENSUS_RPC:-https://base-sepolia.operationsolarstorm.org}\n"                              \
    "      HELIOS_NETWORK: ${HELIOS_NETWORK:-base-sepolia}\n"                                                            \
    "      HELIOS_CHECKPOINT: ${HELIOS_CHECKPOINT:-}\n"                                                                  \
    "    entrypoint: [\"/bin/sh\", \"-c\"]\n"                                                                            \
    "    command:\n"                                                                                                     \
    "      - |\n"                                                                                                        \
    "        checkpoint=\"$$HELIOS_CHECKPOINT\"\n"                                                                       \
    "        if [ -z \"$$checkpoint\" ]; then\n"                                                                         \
    "          url=https://ethereum-sepolia-beacon-api.publicnode.com/eth/v1/beacon/headers/finalized\n"                 \
    "          checkpoint=$$(curl -fsS \"$$url\" | grep -o '\"root\":\"0x[0-9a-f]*\"' | head -n 1 | cut -d '\"' -f 4)\n" \
    "        fi\n"                                                                                                       \
    "        exec helios opstack --network \"$$HELIOS_NETWORK\" --rpc-bind-ip 0.0.0.0 --rpc-port 8545 --consensus-rpc \"$$CONSENSUS_RPC\" --execution-rpc \"$$EXECUTION_RPC\" --ethereum-checkpoint \"$$checkpoint\"\n"

#define VOLUMES       \
    "volumes:\n"      \
    "  auth-state:\n" \
    "  kms-volume:\n"

static const char direct_template[] = AUTH_HEAD
    "      ETH_RPC_URL: ${ETH_RPC_URL}\n" AUTH_TAIL KMS_SERVICE VOLUMES;

static const char light_template[] =
    AUTH_HEAD "      ETH_RPC_URL: http://helios:8545\n"
              "    depends_on:\n"
              "      - helios\n" AUTH_TAIL HELIOS_SERVICE KMS_SERVICE VOLUMES;

const char *dstack_kms_template(enum dstack_kms_mode mode)
{
    return mode == DSTACK_KMS_LIGHT ? light_template : direct_template;
}

int dstack_kms_mode_parse(const char *s, enum dstack_kms_mode *mode,
                          struct kc_err *err)
{
    if (s && strcmp(s, "direct") == 0)
        *mode = DSTACK_KMS_DIRECT;
    else if (s && strcmp(s, "light") == 0)
        *mode = DSTACK_KMS_LIGHT;
    else
        return kc_err_set(err, KC_EINVAL,
                          "mode '%.32s' is not one of direct, light",
                          s ? s : "");
    return 0;
}

static bool is_port(const char *s)
{
    long v = 0;

    if (!s || !*s || strlen(s) > 5)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    return v >= 1 && v <= 65535 && s[0] != '0';
}

static bool is_address(const char *s)
{
    return s && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
           strlen(s) == 42 && is_hex(s + 2);
}

static bool kv_has(const struct dstack_kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return true;
    return false;
}

int dstack_kms_env(const struct dstack_kms_params *p, struct dstack_kv **out,
                   size_t *n, struct kc_err *err)
{
    bool light = p->mode == DSTACK_KMS_LIGHT;
    struct dstack_kv *kv = kc_xcalloc(8 + p->nextra, sizeof(*kv));
    const char *need = light ? "EXECUTION_RPC" : "ETH_RPC_URL";
    size_t k = 0;
    int ret = 0;

    *out = NULL;
    *n = 0;
    kv[k++] =
        (struct dstack_kv){ "KMS_HTTPS_PORT",
                            p->kms_https_port ? p->kms_https_port : "12001" };
    kv[k++] =
        (struct dstack_kv){ "AUTH_HTTP_PORT",
                            p->auth_http_port ? p->auth_http_port : "18000" };
    if (light)
        kv[k++] = (struct dstack_kv){ "HELIOS_RPC_PORT",
                                      p->helios_rpc_port ? p->helios_rpc_port
                                                         : "18545" };
    kv[k++] = (struct dstack_kv){ "KMS_IMAGE", DSTACK_DEFAULT_KMS_IMAGE };
    kv[k++] = (struct dstack_kv){ "KMS_CONTRACT_ADDR", p->kms_contract_addr };
    kv[k++] = (struct dstack_kv){ "DSTACK_REPO", DSTACK_DEFAULT_REPO };
    kv[k++] = (struct dstack_kv){ "DSTACK_REF", DSTACK_DEFAULT_REF };
    for (size_t i = 0; i < p->nextra; i++) {
        const struct dstack_kv *e = &p->extra[i];
        bool replaced = false;

        if (!dstack_is_env_name(e->key)) {
            ret = kc_err_set(err, KC_EINVAL,
                             "compose.env: '%.64s' is not an environment "
                             "variable name",
                             e->key ? e->key : "");
            goto out;
        }
        for (size_t j = 0; j < k && !replaced; j++)
            if (strcmp(kv[j].key, e->key) == 0) {
                kv[j].value = e->value;
                replaced = true;
            }
        if (!replaced)
            kv[k++] = *e;
    }
    for (size_t i = 0; i < k; i++) {
        if (kv[i].value &&
            (strchr(kv[i].value, '\n') || strchr(kv[i].value, '\r'))) {
            ret = kc_err_set(err, KC_EINVAL,
                             "compose.env: value of '%s' holds a line break",
                             kv[i].key);
            goto out;
        }
    }
    for (size_t i = 0; i < p->nuser_keys; i++)
        if (kv_has(kv, k, p->user_keys[i])) {
            ret = kc_err_set(err, KC_EINVAL,
                             "'%s' is both in compose.env and user_config: "
                             "keep it in one (user_config if it is a secret)",
                             p->user_keys[i]);
            goto out;
        }
    for (size_t i = 0; i < 3; i++) {
        const char *v = kv[i].value;

        if (i == 2 && !light)
            break;
        if (!is_port(v)) {
            ret =
                kc_err_set(err, KC_EINVAL, "%s '%.16s' is not a port (1-65535)",
                           kv[i].key, v ? v : "");
            goto out;
        }
    }
    for (size_t i = 0; i < k; i++)
        if (strcmp(kv[i].key, "KMS_CONTRACT_ADDR") == 0 &&
            !is_address(kv[i].value)) {
            ret = kc_err_set(err, KC_EINVAL,
                             "KMS_CONTRACT_ADDR '%.64s' is not an address (0x "
                             "and 40 hex digits)",
                             kv[i].value ? kv[i].value : "");
            goto out;
        }
    if (!kv_has(kv, k, need)) {
        bool found = false;

        for (size_t i = 0; i < p->nuser_keys && !found; i++)
            found = strcmp(p->user_keys[i], need) == 0;
        if (!found) {
            ret = kc_err_set(err, KC_EINVAL,
                             "%s mode needs %s: put it in compose.env, or in "
                             "user_config when it holds a secret (an API "
                             "key in the URL)",
                             light ? "light" : "direct", need);
            goto out;
        }
    }
    for (size_t i = 0; i < k; i++)
        if (!kv[i].value)
            kv[i].value = "";
    *out = kv;
    *n = k;
    kv = NULL;
out:
    free(kv);
    return ret;
}
