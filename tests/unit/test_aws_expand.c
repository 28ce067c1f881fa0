/* tests/unit/test_aws_expand.c: the nitro_hosts section becomes the aws.*
 * resources; the Nitro Enclaves rules are checked before any call, with
 * errors at the manifest position of the field. */
#include "reconcile/expand.h"

#include "reconcile/graph.h"

#include <criterion/criterion.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
    FILE *f;
    char *p;

    (void)kc_snprintf(dir, sizeof(dir), "/tmp/kc-aws-expand-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    p = kc_xasprintf("%s/id.pub", dir);
    f = fopen(p, "w");
    free(p);
    cr_assert_not_null(f);
    fputs("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFR"
          "YXGBkaGxwdHh8g test\n",
          f);
    fclose(f);
}

static void teardown(void)
{
    char *p = kc_xasprintf("%s/id.pub", dir);

    unlink(p);
    free(p);
    rmdir(dir);
}

TestSuite(aws_expand, .init = setup, .fini = teardown);

/* Expands a manifest whose nitro_hosts.h is HOST (YAML, indented 4). */
static int expand(const char *host, struct kc_graph **g, struct kc_err *err)
{
    char *text = kc_xasprintf("version: 1\n"
                              "name: t\n"
                              "nitro_hosts:\n"
                              "  h:\n%s",
                              host);
    struct kc_doc *doc = NULL;
    int ret;

    ret = kc_manifest_parse("m.yaml", dir, text, strlen(text), &doc, err);
    cr_assert_eq(ret, 0, "%s", err->msg);
    ret = kc_expand_doc(doc, g, err);
    kc_doc_free(doc);
    free(text);
    return ret;
}

static bool has(struct kc_graph *g, const char *addr)
{
    for (size_t i = 0; i < kc_graph_count(g); i++)
        if (strcmp(kc_graph_at(g, i)->address, addr) == 0)
            return true;
    return false;
}

Test(aws_expand, host_with_ssh_makes_four_resources)
{
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(expand("    instance_type: c5.xlarge\n"
                        "    enclave: {cpu_count: 2, memory_mib: 512}\n"
                        "    ssh: {key_name: k, public_key: id.pub,"
                        " from: [203.0.113.7/32]}\n",
                        &g, &err),
                 0, "%s", err.msg);
    cr_assert_eq(kc_graph_count(g), 4);
    cr_assert(has(g, "aws.key_pair.k"));
    cr_assert(has(g, "aws.security_group.h"));
    cr_assert(has(g, "aws.ami.h"));
    cr_assert(has(g, "aws.instance.h"));
    kc_graph_free(g);
}

Test(aws_expand, given_ami_and_no_ssh_make_two)
{
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(expand("    instance_type: m5.2xlarge\n"
                        "    ami: ami-0123456789abcdef0\n"
                        "    enclave: {cpu_count: 6, memory_mib: 4096}\n",
                        &g, &err),
                 0, "%s", err.msg);
    cr_assert_eq(kc_graph_count(g), 2);
    cr_assert_not(has(g, "aws.ami.h"));
    kc_graph_free(g);
}

static void refused(const char *host, const char *pos, const char *what)
{
    struct kc_graph *g = NULL;
    struct kc_err err = { 0 };

    cr_assert_lt(expand(host, &g, &err), 0, "accepted:\n%s", host);
    cr_assert_null(g);
    cr_assert_not_null(strstr(err.msg, pos), "position %s not in '%s'", pos,
                       err.msg);
    cr_assert_not_null(strstr(err.msg, what), "'%s' not in '%s'", what,
                       err.msg);
}

Test(aws_expand, family_without_enclaves_is_refused_at_the_type)
{
    refused("    instance_type: t3.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n",
            "m.yaml:5:20", "family 't3' does not support Nitro Enclaves");
}

Test(aws_expand, parent_needs_four_vcpus)
{
    refused("    instance_type: c5.large\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n",
            "m.yaml:5:20", "at least 4");
}

Test(aws_expand, cpu_count_must_leave_the_host_a_core)
{
    refused("    instance_type: c5.xlarge\n"
            "    enclave: {cpu_count: 4, memory_mib: 512}\n",
            "m.yaml:6:26", "enclave.cpu_count: 4 leaves the host fewer than 2");
}

Test(aws_expand, cpu_count_must_be_whole_cores)
{
    refused("    instance_type: c5.2xlarge\n"
            "    enclave: {cpu_count: 3, memory_mib: 512}\n",
            "m.yaml:6:26", "is odd");
}

Test(aws_expand, memory_must_leave_the_host_a_gib)
{
    refused("    instance_type: c5.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 7500}\n",
            "m.yaml:6:41", "at most 7168");
}

Test(aws_expand, unreadable_public_key_names_the_field)
{
    refused("    instance_type: c5.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n"
            "    ssh: {key_name: k, public_key: nope.pub}\n",
            "m.yaml:7:36", "ssh.public_key");
}

Test(aws_expand, vpc_without_subnet_is_refused)
{
    refused("    instance_type: c5.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n"
            "    vpc_id: vpc-0123456789abcdef0\n",
            "m.yaml:7:13", "give subnet_id too");
}

Test(aws_expand, ipv6_ssh_source_is_refused_clearly)
{
    refused("    instance_type: c5.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n"
            "    ssh: {key_name: k, public_key: id.pub,"
            " from: [203.0.113.7/32, \"2001:db8::/64\"]}\n",
            "m.yaml:7:", "ssh.from[1]: IPv6 ranges are not supported yet");
}

Test(aws_expand, the_family_rules_are_those_of_validate)
{
    /* One table (reconcile/check.c): a family it does not know is named as
     * such, as `kmsctl validate` says, not as one without enclaves. */
    refused("    instance_type: x2idn.xlarge\n"
            "    enclave: {cpu_count: 2, memory_mib: 512}\n",
            "m.yaml:5:20",
            "nitro_hosts.h.instance_type: family 'x2idn' is not one kmsctl "
            "knows for Nitro Enclaves");
}
