/* tests/fuzz/fuzz_chain_abi.c: the chain provider's decoders of what a node
 * or an artifact sends: ABI decoding of call results against the types the
 * provider uses (with a re-encode/re-decode round trip), revert data
 * descriptions, event logs, type strings, JSON ABIs, RLP, hex quantities
 * and addresses. The first input byte picks the decoder; the rest is its
 * input.
 *
 * Replayed by ctest (fuzz_chain_abi: driver.c, corpus/chain_abi).
 */
#include "reconcile/buf.h"
#include "reconcile/json.h"
#include "resources/chain/abi.h"
#include "resources/chain/hex.h"
#include "resources/chain/rlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Output tuples the provider decodes, and harder shapes. */
static const char *const type_lists[] = {
    "(uint256)",
    "(address)",
    "(bool)",
    "(bytes32)",
    "(string)",
    "(bytes)",
    "(bytes32[])",
    "(address,bytes32,string[])",
    "(uint256,bool,address,bytes)",
    "((address,uint256)[],string)",
    "(bytes32[2][],uint8[3])",
    "(string[][],(bytes,bool)[2])",
    "(int256,int8,bytes4,uint64)",
    "(((string)[])[])",
};

static const char ownable_abi[] =
    "[{\"type\":\"error\",\"name\":\"OwnableUnauthorizedAccount\","
    "\"inputs\":[{\"name\":\"account\",\"type\":\"address\"}]},"
    "{\"type\":\"error\",\"name\":\"Bad\",\"inputs\":[{\"name\":\"w\","
    "\"type\":\"string[]\"},{\"name\":\"t\",\"type\":\"tuple\","
    "\"components\":[{\"name\":\"a\",\"type\":\"bytes\"}]}]},"
    "{\"type\":\"event\",\"name\":\"AppDeployedViaFactory\",\"inputs\":["
    "{\"name\":\"appId\",\"type\":\"address\",\"indexed\":true},"
    "{\"name\":\"deployer\",\"type\":\"address\",\"indexed\":false},"
    "{\"name\":\"tag\",\"type\":\"string\",\"indexed\":true},"
    "{\"name\":\"hashes\",\"type\":\"bytes32[]\",\"indexed\":false}]}]";

static struct chain_abi *abi;

static void fuzz_init(void)
{
    struct json_object *j = NULL;
    struct kc_err err = { 0 };

    if (abi)
        return;
    if (kc_json_parse(ownable_abi, strlen(ownable_abi), "abi", &j, &err) < 0 ||
        chain_abi_from_json(j, &abi, &err) < 0)
        KC_BUG("fuzz abi: %s", err.msg);
    json_object_put(j);
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    struct chain_abi_type *tuple = NULL;
    struct chain_abi_value *vals = NULL, *again = NULL;
    struct kc_err err = { 0 };
    struct kc_buf enc = { 0 }, f1 = { 0 }, f2 = { 0 };
    size_t which;

    if (size < 1)
        return;
    which = data[0] % KC_ARRAY_SIZE(type_lists);
    if (chain_abi_type_parse(type_lists[which], &tuple, &err) < 0)
        KC_BUG("type %s: %s", type_lists[which], err.msg);
    if (chain_abi_decode(tuple->members, tuple->size, data + 1, size - 1, &vals,
                         &err) < 0) {
        if (err.code == 0 || !err.msg[0])
            KC_BUG("decode failed without a message");
        chain_abi_type_free(tuple);
        return;
    }
    /* What decoded encodes again, and decodes to the same values. */
    if (chain_abi_encode(tuple->members, vals, tuple->size, &enc, &err) < 0)
        KC_BUG("decoded values do not encode: %s", err.msg);
    if (chain_abi_decode(tuple->members, tuple->size, (const uint8_t *)enc.data,
                         enc.len, &again, &err) < 0)
        KC_BUG("own encoding does not decode: %s", err.msg);
    for (size_t i = 0; i < tuple->size; i++) {
        if (chain_abi_value_format(tuple->members[i], &vals[i], &f1) < 0 ||
            chain_abi_value_format(tuple->members[i], &again[i], &f2) < 0)
            KC_BUG("format failed");
    }
    if (f1.len != f2.len || memcmp(f1.data, f2.data, f1.len) != 0)
        KC_BUG("round trip changed the values: %s vs %s", kc_buf_str(&f1),
               kc_buf_str(&f2));
    chain_abi_values_free(vals, tuple->size);
    chain_abi_values_free(again, tuple->size);
    kc_buf_release(&enc);
    kc_buf_release(&f1);
    kc_buf_release(&f2);
    chain_abi_type_free(tuple);
}

static void fuzz_type_string(const char *s)
{
    struct chain_abi_type *t = NULL, *t2 = NULL;
    struct kc_err err = { 0 };
    struct kc_buf c1 = { 0 }, c2 = { 0 };

    if (chain_abi_type_parse(s, &t, &err) < 0)
        return;
    if (chain_abi_type_canonical(t, &c1) < 0)
        KC_BUG("canonical failed");
    if (chain_abi_type_parse(kc_buf_str(&c1), &t2, &err) < 0)
        KC_BUG("canonical %s does not parse: %s", kc_buf_str(&c1), err.msg);
    if (chain_abi_type_canonical(t2, &c2) < 0 ||
        strcmp(kc_buf_str(&c1), kc_buf_str(&c2)) != 0)
        KC_BUG("canonical form not stable: %s", kc_buf_str(&c1));
    (void)chain_abi_type_is_dynamic(t);
    kc_buf_release(&c1);
    kc_buf_release(&c2);
    chain_abi_type_free(t);
    chain_abi_type_free(t2);
}

static void fuzz_log(const uint8_t *data, size_t size)
{
    const struct chain_abi_entry *ev =
        chain_abi_find(abi, CHAIN_ABI_EVENT, "AppDeployedViaFactory");
    uint8_t topics[4][32];
    size_t ntopics;
    struct chain_abi_value *vals = NULL;
    struct kc_err err = { 0 };

    if (!ev)
        KC_BUG("no event");
    if (size < 1)
        return;
    ntopics = data[0] % 5;
    data++;
    size--;
    memset(topics, 0, sizeof(topics));
    for (size_t i = 0; i < ntopics && size >= 32; i++) {
        memcpy(topics[i], data, 32);
        data += 32;
        size -= 32;
    }
    if (ntopics)
        memcpy(topics[0], ev->topic, 32);
    if (chain_abi_decode_log(ev, (const uint8_t(*)[32])topics, ntopics, data,
                             size, &vals, &err) == 0)
        chain_abi_values_free(vals, ev->nin);
}

static void fuzz_rlp(const uint8_t *data, size_t size, int depth)
{
    size_t pos = 0;
    struct chain_rlp_item item;
    struct kc_err err = { 0 };

    while (pos < size) {
        size_t before = pos;
        if (chain_rlp_next(data, size, &pos, &item, &err) < 0)
            return;
        if (pos <= before || pos > size)
            KC_BUG("rlp position did not advance within the input");
        if (item.p < data || item.p + item.len > data + size)
            KC_BUG("rlp item outside the input");
        if (item.is_list && depth < 32) {
            fuzz_rlp(item.p, item.len, depth + 1);
        } else if (!item.is_list) {
            uint64_t v;
            (void)chain_rlp_item_uint(&item, &v, &err);
        }
    }
}

static void fuzz_hex(const char *s, size_t len)
{
    uint8_t w[32], a[20];
    uint8_t *bytes = NULL;
    size_t n = 0;
    uint64_t q;
    struct kc_err err = { 0 };
    char out[43];

    if (chain_hex_decode_alloc(s, 4096, &bytes, &n, "x", &err) == 0)
        free(bytes);
    (void)chain_hex_decode_fixed(s, len, w, sizeof(w), "x", &err);
    if (chain_quantity_parse(s, &q, "x", &err) == 0) {
        char f[19];
        uint64_t back;
        chain_quantity_format(q, f);
        if (chain_quantity_parse(f, &back, "x", &err) < 0 || back != q)
            KC_BUG("quantity %s does not round trip", f);
    }
    (void)chain_quantity_parse_u256(s, w, "x", &err);
    if (chain_address_parse(s, a, "x", &err) == 0) {
        uint8_t b[20];
        chain_address_format(a, out);
        if (chain_address_parse(out, b, "x", &err) < 0 || memcmp(a, b, 20))
            KC_BUG("address %s does not round trip", out);
    }
}

static void fuzz_json_abi(const char *s, size_t len)
{
    struct json_object *j = NULL;
    struct chain_abi *a = NULL;
    struct kc_err err = { 0 };

    if (kc_json_parse(s, len, "abi", &j, &err) < 0)
        return;
    if (chain_abi_from_json(j, &a, &err) == 0) {
        for (size_t i = 0; i < a->n; i++) {
            (void)chain_abi_find(a, a->entries[i]->kind, a->entries[i]->name);
            (void)chain_abi_find_error(a, a->entries[i]->selector);
        }
        chain_abi_free(a);
    }
    json_object_put(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    struct kc_buf out = { 0 };

    fuzz_init();
    if (size < 1)
        return 0;
    /* Hex and string decoders want a NUL-terminated copy. */
    s = kc_xstrndup((const char *)data + 1, size - 1);
    switch (data[0] % 7) {
    case 0:
        fuzz_decode(data + 1, size - 1);
        break;
    case 1:
        fuzz_type_string(s);
        break;
    case 2:
        if (chain_abi_describe_revert(data[0] & 8 ? abi : NULL, data + 1,
                                      size - 1, &out) < 0 ||
            out.len == 0)
            KC_BUG("revert description failed");
        break;
    case 3:
        fuzz_log(data + 1, size - 1);
        break;
    case 4:
        fuzz_rlp(data + 1, size - 1, 0);
        break;
    case 5:
        fuzz_hex(s, strlen(s));
        break;
    default:
        fuzz_json_abi(s, strlen(s));
        break;
    }
    kc_buf_release(&out);
    free(s);
    return 0;
}
