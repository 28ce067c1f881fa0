/* resources/aws/key_pair.c: aws.key_pair, the EC2 key pair of a Nitro host.
 *
 * ImportKeyPair from the manifest's public key (recommended), or
 * CreateKeyPair writing the private key to a new 0600 file. A key pair that
 * exists but that kmsctl did not make is adopted only when it is provably
 * the same key (imported: same fingerprint; created: the private key file
 * is there); otherwise the plan stops with what to do (dstack.md §7, "key
 * pair without PEM"). Destroy deletes only a key pair kmsctl made (tagged
 * with its ownership tags at creation).
 */
#include "reconcile/file.h"
#include "resources/aws/kinds.h"

#include <fcntl.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <unistd.h>

static const struct kc_field key_fields[] = {
    { "key_name", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    /* The OpenSSH public key line (expand reads ssh.public_key's file). */
    { "public_key", KC_VALUE_STRING, KC_FIELD_FORCE_NEW },
    { "private_key_file", KC_VALUE_STRING,
      KC_FIELD_FORCE_NEW | KC_FIELD_IGNORE_DRIFT },
    { "tags", KC_VALUE_MAP, KC_FIELD_IGNORE_DRIFT },
    { "fingerprint", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { "key_pair_id", KC_VALUE_STRING, KC_FIELD_COMPUTED },
    { NULL },
};

static void set_outputs(struct aws_job *j, const char *name, const char *id,
                        const char *fp)
{
    kc_op_set_id(j->op, id);
    kc_op_set_output(j->op, "key_name", kc_value_new_str(name));
    kc_op_set_output(j->op, "key_pair_id", kc_value_new_str(id));
    kc_op_set_output(j->op, "fingerprint", kc_value_new_str(fp ? fp : ""));
}

/* The key's name: desired, else last applied (an orphan being deleted),
 * else the address's name part. */
static const char *key_name(struct kc_op *op)
{
    const char *n = aws_desired_str(op, "key_name");
    const struct kc_value *p = kc_op_prior(op, "key_name");

    if (!n && p)
        n = kc_value_str(p);
    return n ? n : kc_op_name(op);
}

static void describe_key(struct aws_job *j, aws_job_fn next)
{
    aws_ec2_call_init(&j->call, "DescribeKeyPairs");
    aws_query_add(&j->call.q, "Filter.1.Name", "key-name");
    aws_query_add(&j->call.q, "Filter.1.Value.1", key_name(j->op));
    aws_job_send(j, 0, next);
}

/* --- observe ----------------------------------------------------------- */

static void on_observe(struct aws_job *j, int status)
{
    struct kc_op *op = j->op;
    const char *name = key_name(op);
    const char *pub = aws_desired_str(op, "public_key");
    const char *pkfile = aws_desired_str(op, "private_key_file");
    struct _xmlNode *it;
    const char *fp, *id, *type = NULL;
    char want[96] = "";
    bool owned, known, same;
    struct kc_value *obs;

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    it = aws_xml_child(j->call.root, "keySet/item");
    if (!it && j->step == 1) {
        aws_job_fail(j, KC_EREMOTE,
                     "key pair '%s': EC2 said it exists, then that it does not",
                     name);
        return;
    }
    if (!it) {
        aws_job_finish(j, 0); /* absent */
        return;
    }
    fp = aws_xml_text(it, "keyFingerprint");
    id = aws_xml_text(it, "keyPairId");
    owned = aws_owned(j, it);
    known = kc_op_id(op) && id && strcmp(kc_op_id(op), id) == 0;
    if (pub && !aws_key_import_fingerprint(pub, want, sizeof(want), &type)) {
        aws_job_fail(j, KC_EINVAL,
                     "ssh.public_key is not an OpenSSH ssh-ed25519 or ssh-rsa "
                     "public key");
        return;
    }
    same = pub && fp && strcmp(fp, want) == 0;
    if (j->step == 1 && !pub && (!pkfile || access(pkfile, F_OK) != 0)) {
        aws_job_fail(j, KC_ECONFLICT,
                     "key pair '%s' was created but its private key was lost "
                     "with EC2's answer: delete the key pair and apply again",
                     name);
        return;
    }
    if (!owned && !known) {
        /* Not ours: adopt only the provably same key. */
        if (pub && !same) {
            aws_job_fail(j, KC_ECONFLICT,
                         "key pair '%s' exists in EC2 with another key "
                         "(fingerprint %s, not %s of ssh.public_key) and "
                         "kmsctl did not make it: delete it or choose another "
                         "ssh.key_name",
                         name, fp ? fp : "?", want);
            return;
        }
        if (!pub && (!pkfile || access(pkfile, F_OK) != 0)) {
            aws_job_fail(j, KC_ECONFLICT,
                         "key pair '%s' exists in EC2 but its private key is "
                         "not here ('%s'); EC2 never gives it out again: "
                         "delete the key pair, choose another ssh.key_name, "
                         "or give ssh.public_key of a key you have",
                         name, pkfile ? pkfile : "no ssh.private_key_file");
            return;
        }
    }
    obs = kc_value_new_map();
    kc_value_map_set(obs, "key_name", kc_value_new_str(name));
    if (pub) {
        char *marker =
            kc_xasprintf("(another key: fingerprint %s)", fp ? fp : "?");

        /* The public key itself is not readable back: its fingerprint says
         * whether it is still ours. */
        kc_value_map_set(obs, "public_key",
                         same ? kc_value_dup(kc_op_desired(op, "public_key"))
                              : kc_value_new_str(marker));
        free(marker);
    }
    {
        struct kc_value *all = aws_tags_from_xml(it);

        kc_value_map_set(obs, "tags",
                         aws_tags_managed(all, kc_op_desired(op, "tags")));
        kc_value_free(all);
    }
    if (pkfile && access(pkfile, F_OK) == 0)
        kc_value_map_set(obs, "private_key_file", kc_value_new_str(pkfile));
    kc_value_map_set(obs, "fingerprint", kc_value_new_str(fp ? fp : ""));
    kc_value_map_set(obs, "key_pair_id", kc_value_new_str(id ? id : ""));
    kc_op_set_observed(op, obs);
    set_outputs(j, name, id ? id : "", fp);
    aws_job_finish(j, 0);
}

static int key_observe(struct kc_op *op)
{
    describe_key(aws_job_new(op), on_observe);
    return 0;
}

/* --- create ------------------------------------------------------------ */

/* The new private key is written off the loop thread (uv_queue_work): a new
 * file only (O_EXCL), mode 0600, synced, then its folder synced. */
struct key_write {
    uv_work_t work;
    struct aws_job *j;
    char *path;
    char *pem; /* a copy of the key material, wiped before it is freed */
    size_t len;
    int status;
    struct kc_err err;
};

/* Blocking: fsyncs and closes FD (WHAT, e.g. "the folder of ", then PATH
 * name it in errors). FD is closed also when the sync fails. */
static int sync_close(int fd, const char *what, const char *path,
                      struct kc_err *err)
{
    if (fsync(fd) < 0) {
        int e = errno;

        (void)close(fd);
        return kc_err_from_errno(err, e, "sync %s'%s'", what, path);
    }
    if (close(fd) < 0)
        return kc_err_from_errno(err, errno, "close %s'%s'", what, path);
    return 0;
}

/* Blocking: runs on a libuv worker thread. */
static int write_private_key(const char *path, const char *pem, size_t len,
                             struct kc_err *err)
{
    size_t off = 0;
    char *dir;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int dfd, ret;

    if (fd < 0)
        return kc_err_from_errno(err, errno, "create '%s'", path);
    while (off < len) {
        ssize_t n = write(fd, pem + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;

            (void)close(fd);
            (void)unlink(path);
            return kc_err_from_errno(err, e, "write '%s'", path);
        }
        off += (size_t)n;
    }
    /* The file is kept when the sync fails: it may hold the only copy of
     * the private key AWS made. */
    ret = sync_close(fd, "", path, err);
    if (ret < 0)
        return ret;
    /* The folder entry too, so the file survives a crash. */
    dir = kc_file_dirname(path);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int e = errno;

        free(dir);
        return kc_err_from_errno(err, e, "open the folder of '%s'", path);
    }
    free(dir);
    return sync_close(dfd, "the folder of ", path, err);
}

static void key_write_work(uv_work_t *w)
{
    struct key_write *kw = kc_container_of(w, struct key_write, work);

    kw->status = write_private_key(kw->path, kw->pem, kw->len, &kw->err);
}

static void key_write_free(struct key_write *kw)
{
    kc_memzero(kw->pem, kw->len);
    free(kw->pem);
    free(kw->path);
    free(kw);
}

static void created_observed(struct aws_job *j)
{
    struct kc_op *op = j->op;
    const char *name = aws_desired_str(op, "key_name");
    const char *fp = aws_xml_text(j->call.root, "keyFingerprint");
    const char *id = aws_xml_text(j->call.root, "keyPairId");
    struct kc_value *obs = kc_value_new_map();

    kc_value_map_set(obs, "key_name", kc_value_new_str(name));
    if (kc_op_desired(op, "public_key"))
        kc_value_map_set(obs, "public_key",
                         kc_value_dup(kc_op_desired(op, "public_key")));
    kc_value_map_set(obs, "fingerprint", kc_value_new_str(fp ? fp : ""));
    kc_value_map_set(obs, "key_pair_id", kc_value_new_str(id ? id : ""));
    kc_op_set_observed(op, obs);
    set_outputs(j, name, id ? id : "", fp);
    aws_job_finish(j, 0);
}

static void key_write_done(uv_work_t *w, int status)
{
    struct key_write *kw = kc_container_of(w, struct key_write, work);
    struct aws_job *j = kw->j;
    int ret = kw->status;

    if (status < 0)
        ret = kc_err_from_uv(&kw->err, status, kw->path);
    if (ret < 0) {
        *kc_op_err(j->op) = kw->err;
        kc_err_prefix(kc_op_err(j->op),
                      "key pair '%s' was created but its private key "
                      "could not be saved (delete the key pair and "
                      "retry)",
                      aws_desired_str(j->op, "key_name"));
        key_write_free(kw);
        aws_job_finish(j, ret);
        return;
    }
    key_write_free(kw);
    created_observed(j);
}

static void on_created(struct aws_job *j, int status)
{
    struct kc_op *op = j->op;
    const char *name = aws_desired_str(op, "key_name");
    const char *pem;
    struct key_write *kw;
    int ret;

    if (status == KC_EREMOTE &&
        strcmp(j->call.error.code, "InvalidKeyPair.Duplicate") == 0) {
        /* Made meanwhile, or by this very call whose first answer was lost
         * (EC2 calls are retried): adopt it if it is provably ours. */
        aws_ec2_call_release(&j->call);
        j->step = 1;
        describe_key(j, on_observe);
        return;
    }
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    pem = aws_xml_text(j->call.root, "keyMaterial");
    if (!aws_xml_text(j->call.root, "keyPairId")) {
        if (pem)
            kc_memzero(KC_UNCONST(pem), strlen(pem));
        aws_job_fail(j, KC_EPARSE, "ec2 %s: no keyPairId in the answer",
                     j->call.action);
        return;
    }
    if (strcmp(j->call.action, "CreateKeyPair") != 0) {
        created_observed(j);
        return;
    }
    if (!pem) {
        aws_job_fail(j, KC_EPARSE,
                     "key pair '%s' was created but the answer has no "
                     "keyMaterial (delete the key pair and retry)",
                     name);
        return;
    }
    kw = kc_xcalloc(1, sizeof(*kw));
    kw->j = j;
    kw->path = kc_xstrdup(aws_desired_str(op, "private_key_file"));
    kw->len = strlen(pem);
    kw->pem = kc_xstrdup(pem);
    /* libxml2 owns the material; wipe it in place now that it is copied. */
    kc_memzero(KC_UNCONST(pem), kw->len);
    ret = uv_queue_work(kc_op_loop(op), &kw->work, key_write_work,
                        key_write_done);
    if (ret < 0) {
        kc_err_from_uv(kc_op_err(op), ret, kw->path);
        kc_err_prefix(kc_op_err(op),
                      "key pair '%s' was created but its private key "
                      "could not be saved (delete the key pair and retry)",
                      name);
        key_write_free(kw);
        aws_job_finish(j, ret);
    }
}

static int key_create(struct kc_op *op)
{
    struct aws_job *j;
    const char *pub = aws_desired_str(op, "public_key");
    const char *pkfile = aws_desired_str(op, "private_key_file");

    if (!pub && !pkfile)
        return kc_err_set(kc_op_err(op), KC_EINVAL,
                          "ssh needs public_key (recommended) or "
                          "private_key_file");
    if (!pub && access(pkfile, F_OK) == 0)
        return kc_err_set(kc_op_err(op), KC_EEXIST,
                          "ssh.private_key_file '%s' exists: kmsctl will not "
                          "overwrite a private key (move it away, or import "
                          "its public key with ssh.public_key)",
                          pkfile);
    j = aws_job_new(op);
    if (pub) {
        unsigned char *b64 = kc_xcalloc(1, 4 * (strlen(pub) / 3 + 2));

        aws_ec2_call_init(&j->call, "ImportKeyPair");
        aws_query_add(&j->call.q, "KeyName", aws_desired_str(op, "key_name"));
        EVP_EncodeBlock(b64, (const unsigned char *)pub, (int)strlen(pub));
        aws_query_add(&j->call.q, "PublicKeyMaterial", (const char *)b64);
        free(b64);
    } else {
        aws_ec2_call_init(&j->call, "CreateKeyPair");
        aws_query_add(&j->call.q, "KeyName", aws_desired_str(op, "key_name"));
        aws_query_add(&j->call.q, "KeyType", "rsa");
        aws_query_add(&j->call.q, "KeyFormat", "pem");
    }
    aws_query_tag_spec(&j->call.q, 1, "key-pair", kc_op_desired(op, "tags"));
    aws_job_send(j, pub ? 0 : AWS_EC2_SECRET_ANSWER, on_created);
    return 0;
}

/* --- delete ------------------------------------------------------------ */

static void on_deleted(struct aws_job *j, int status)
{
    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    aws_job_finish(j, 0);
}

static void on_delete_lookup(struct aws_job *j, int status)
{
    struct _xmlNode *it;
    char id[64];

    if (status < 0) {
        aws_job_fail_call(j, status);
        return;
    }
    it = aws_xml_child(j->call.root, "keySet/item");
    if (!it) {
        aws_job_finish(j, 0); /* already gone */
        return;
    }
    if (!aws_owned(j, it)) {
        kc_op_progress(j->op, "key pair not made by kmsctl: left in place");
        aws_job_finish(j, 0);
        return;
    }
    (void)kc_snprintf(
        id, sizeof(id), "%s",
        aws_xml_text(it, "keyPairId") ? aws_xml_text(it, "keyPairId") : "");
    aws_ec2_call_release(&j->call);
    aws_ec2_call_init(&j->call, "DeleteKeyPair");
    aws_query_add(&j->call.q, "KeyPairId", id);
    aws_job_send(j, 0, on_deleted);
}

static int key_delete(struct kc_op *op)
{
    describe_key(aws_job_new(op), on_delete_lookup);
    return 0;
}

const struct kc_resource_type kc_aws_key_pair = {
    .kind = "aws.key_pair",
    .fields = key_fields,
    .observe = key_observe,
    .create = key_create,
    .delete = key_delete,
    .list = aws_list,
};
