/* tests/unit/test_chain_contracts.c: the test contracts (tests/contracts,
 * compiled into $KC_BUILD_DIR/artifacts) have the dstack surface of
 * reference/dstack.md section 3, and the codecs work against a real node:
 * transactions signed here are accepted by anvil with the hash computed
 * here, contracts land at the predicted CREATE addresses, and reverts of a
 * non-owner decode to the custom error with the caller's address. */
#include "reconcile/buf.h"
#include "resources/chain/abi.h"
#include "resources/chain/artifact.h"
#include "resources/chain/hex.h"
#include "resources/chain/keccak.h"
#include "resources/chain/signer.h"
#include "resources/chain/tx.h"

#include "helpers/chain_anvil.h"

#include <criterion/criterion.h>
#include <unistd.h>

static struct chain_artifact *load(const char *name)
{
    struct chain_artifact *a = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(chain_artifact_load(chain_anvil_artifacts(), name, &a, &err),
                 0, "%s", err.msg);
    return a;
}

Test(chain_contracts, artifacts_carry_every_reference_signature)
{
    static const char *const kms_fns[] = {
        "initialize(address,address)",
        "setKmsInfo((bytes,bytes,bytes,bytes))",
        "setKmsQuote(bytes)",
        "setKmsEventlog(bytes)",
        "setGatewayAppId(string)",
        "registerApp(address)",
        "setAppImplementation(address)",
        "deployAndRegisterApp(address,bool,bool,bytes32,bytes32)",
        "addKmsAggregatedMr(bytes32)",
        "removeKmsAggregatedMr(bytes32)",
        "addKmsDevice(bytes32)",
        "removeKmsDevice(bytes32)",
        "addOsImageHash(bytes32)",
        "removeOsImageHash(bytes32)",
        "isKmsAllowed((address,bytes32,address,bytes32,bytes32,bytes32,"
        "bytes32,string,string[]))",
        "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,"
        "bytes32,string,string[]))",
        "kmsInfo()",
        "gatewayAppId()",
        "registeredApps(address)",
        "kmsAllowedAggregatedMrs(bytes32)",
        "kmsAllowedDeviceIds(bytes32)",
        "allowedOsImages(bytes32)",
        "appImplementation()",
        "owner()",
        "transferOwnership(address)",
        "renounceOwnership()",
        "upgradeToAndCall(address,bytes)",
        "proxiableUUID()",
        "UPGRADE_INTERFACE_VERSION()",
        "supportsInterface(bytes4)",
    };
    static const char *const kms_events[] = {
        "AppRegistered(address)",
        "KmsInfoSet(bytes)",
        "KmsAggregatedMrAdded(bytes32)",
        "KmsAggregatedMrRemoved(bytes32)",
        "KmsDeviceAdded(bytes32)",
        "KmsDeviceRemoved(bytes32)",
        "OsImageHashAdded(bytes32)",
        "OsImageHashRemoved(bytes32)",
        "GatewayAppIdSet(string)",
        "AppImplementationSet(address)",
        "AppDeployedViaFactory(address,address)",
        "OwnershipTransferred(address,address)",
        "Initialized(uint64)",
    };
    static const char *const app_fns[] = {
        "initialize(address,bool,bool,bytes32,bytes32)",
        "addComposeHash(bytes32)",
        "removeComposeHash(bytes32)",
        "setAllowAnyDevice(bool)",
        "addDevice(bytes32)",
        "removeDevice(bytes32)",
        "disableUpgrades()",
        "allowedComposeHashes(bytes32)",
        "allowAnyDevice()",
        "allowedDeviceIds(bytes32)",
        "owner()",
        "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,"
        "bytes32,string,string[]))",
    };
    static const char *const app_events[] = {
        "ComposeHashAdded(bytes32)", "ComposeHashRemoved(bytes32)",
        "DeviceAdded(bytes32)",      "DeviceRemoved(bytes32)",
        "AllowAnyDeviceSet(bool)",   "UpgradesDisabled()",
    };
    struct chain_artifact *kms = load("DstackKms");
    struct chain_artifact *app = load("DstackApp");
    struct chain_artifact *proxy = load("ERC1967Proxy");

    for (size_t i = 0; i < KC_ARRAY_SIZE(kms_fns); i++)
        cr_expect_not_null(
            chain_abi_find(kms->abi, CHAIN_ABI_FUNCTION, kms_fns[i]),
            "DstackKms lacks %s", kms_fns[i]);
    for (size_t i = 0; i < KC_ARRAY_SIZE(kms_events); i++)
        cr_expect_not_null(
            chain_abi_find(kms->abi, CHAIN_ABI_EVENT, kms_events[i]),
            "DstackKms lacks event %s", kms_events[i]);
    for (size_t i = 0; i < KC_ARRAY_SIZE(app_fns); i++)
        cr_expect_not_null(
            chain_abi_find(app->abi, CHAIN_ABI_FUNCTION, app_fns[i]),
            "DstackApp lacks %s", app_fns[i]);
    for (size_t i = 0; i < KC_ARRAY_SIZE(app_events); i++)
        cr_expect_not_null(
            chain_abi_find(app->abi, CHAIN_ABI_EVENT, app_events[i]),
            "DstackApp lacks event %s", app_events[i]);
    cr_expect_not_null(chain_abi_find(kms->abi, CHAIN_ABI_ERROR,
                                      "OwnableUnauthorizedAccount(address)"));
    cr_expect_not_null(chain_abi_find(proxy->abi, CHAIN_ABI_CONSTRUCTOR, ""));
    cr_expect_gt(proxy->bytecode_len, 0);
    chain_artifact_free(kms);
    chain_artifact_free(app);
    chain_artifact_free(proxy);
}

Test(chain_contracts, unlinked_library_placeholders_are_refused)
{
    struct chain_artifact *a = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(
        chain_artifact_load(chain_anvil_artifacts(), "NeedsLibrary", &a, &err),
        KC_EINVAL);
    cr_expect_null(a);
    cr_expect_not_null(strstr(err.msg, "unlinked library"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "ExternalMath"), "%s", err.msg);
    cr_expect_eq(chain_artifact_load(chain_anvil_artifacts(), "NoSuchContract",
                                     &a, &err),
                 KC_ENOENT);
}

/* --- against anvil --------------------------------------------------- */

static struct chain_anvil anvil;

static void anvil_up(void)
{
    cr_assert_eq(chain_anvil_start(&anvil, NULL), 0);
}

static void anvil_down(void)
{
    chain_anvil_stop(&anvil);
}

static uint64_t nonce_of(const char *addr)
{
    char params[128];

    snprintf(params, sizeof(params), "[\"%s\",\"pending\"]", addr);
    return chain_anvil_rpc_u64(anvil.url, "eth_getTransactionCount", params);
}

/* Signs and sends a transaction; checks anvil's hash is ours; returns the
 * receipt (caller puts). */
static struct json_object *send_tx(const struct chain_signer *s, bool legacy,
                                   const uint8_t *to, const struct kc_buf *data)
{
    struct chain_tx tx = { 0 };
    struct kc_buf raw = { 0 }, params = { 0 };
    struct kc_err err = { 0 };
    uint8_t hash[32];
    char from[43], hexhash[67];
    struct json_object *res, *rcpt;

    chain_address_format(chain_signer_address(s), from);
    tx.type = legacy ? CHAIN_TX_LEGACY : CHAIN_TX_EIP1559;
    tx.chain_id = chain_anvil_rpc_u64(anvil.url, "eth_chainId", NULL);
    tx.nonce = nonce_of(from);
    tx.gas = 5000000;
    tx.gas_price = 10000000000ULL;
    tx.max_fee = 10000000000ULL;
    tx.max_priority_fee = 1000000000ULL;
    tx.has_to = to != NULL;
    if (to)
        memcpy(tx.to, to, 20);
    tx.data = (const uint8_t *)data->data;
    tx.data_len = data->len;
    cr_assert_eq(chain_tx_sign(&tx, s, &raw, hash, &err), 0, "%s", err.msg);
    kc_buf_addstr(&params, "[\"");
    chain_hex_add(&params, raw.data, raw.len);
    kc_buf_addstr(&params, "\"]");
    res =
        chain_anvil_rpc(anvil.url, "eth_sendRawTransaction", params.data, NULL);
    cr_assert_not_null(res);
    chain_hex_encode(hash, 32, true, hexhash, sizeof(hexhash));
    cr_assert_str_eq(json_object_get_string(res), hexhash,
                     "anvil's tx hash differs from ours");
    json_object_put(res);
    kc_buf_reset(&params);
    kc_buf_addf(&params, "[\"%s\"]", hexhash);
    /* automine: the receipt shows up within moments */
    for (int i = 0; i < 200; i++) {
        rcpt = chain_anvil_rpc(anvil.url, "eth_getTransactionReceipt",
                               params.data, NULL);
        if (rcpt)
            break;
        usleep(25000);
    }
    cr_assert_not_null(rcpt);
    cr_assert_str_eq(
        json_object_get_string(json_object_object_get(rcpt, "status")), "0x1");
    kc_buf_release(&raw);
    kc_buf_release(&params);
    return rcpt;
}

static void deploy(const struct chain_signer *s, const struct chain_artifact *a,
                   const struct kc_buf *ctor_args, uint8_t out[20])
{
    struct kc_buf code = { 0 };
    struct json_object *rcpt;
    struct kc_err err = { 0 };
    char from[43];
    uint8_t got[20];

    chain_address_format(chain_signer_address(s), from);
    chain_create_address(chain_signer_address(s), nonce_of(from), out);
    kc_buf_add(&code, a->bytecode, a->bytecode_len);
    if (ctor_args)
        kc_buf_add(&code, ctor_args->data, ctor_args->len);
    rcpt = send_tx(s, false, NULL, &code);
    cr_assert_eq(
        chain_address_parse(json_object_get_string(json_object_object_get(
                                rcpt, "contractAddress")),
                            got, "contractAddress", &err),
        0);
    cr_assert_eq(memcmp(got, out, 20), 0, "CREATE address mispredicted");
    json_object_put(rcpt);
    kc_buf_release(&code);
}

static struct chain_signer *signer(const char *hexkey)
{
    struct kc_secret *k = kc_secret_new(hexkey, strlen(hexkey));
    struct chain_signer *s = NULL;
    struct kc_err err = { 0 };

    cr_assert_eq(chain_signer_from_hex(k, &s, &err), 0);
    kc_secret_free(k);
    return s;
}

Test(chain_contracts, deploy_proxy_and_decode_a_non_owner_revert,
     .init = anvil_up, .fini = anvil_down, .timeout = 120)
{
    struct chain_signer *owner = signer(CHAIN_ANVIL_KEY0);
    struct chain_signer *other = signer(CHAIN_ANVIL_KEY1);
    struct chain_artifact *kms = load("DstackKms");
    struct chain_artifact *app = load("DstackApp");
    struct chain_artifact *proxy = load("ERC1967Proxy");
    const struct chain_abi_entry *init, *ctor, *add, *allowed;
    struct chain_abi_value args[2], v;
    struct kc_buf calldata = { 0 }, ctor_args = { 0 }, params = { 0 };
    struct kc_buf why = { 0 };
    struct json_object *r, *data;
    uint8_t app_impl[20], kms_impl[20], kms_proxy[20], h[32];
    uint8_t *rev = NULL;
    size_t revlen = 0;
    char addr[43], *errjson = NULL;
    struct kc_err err = { 0 };

    deploy(owner, app, NULL, app_impl);
    deploy(owner, kms, NULL, kms_impl);
    /* ERC1967Proxy(kmsImpl, initialize(owner, appImpl)) */
    init = chain_abi_find(kms->abi, CHAIN_ABI_FUNCTION,
                          "initialize(address,address)");
    cr_assert_not_null(init);
    chain_abi_val_address(&args[0], chain_signer_address(owner));
    chain_abi_val_address(&args[1], app_impl);
    cr_assert_eq(chain_abi_encode_call(init, args, 2, &calldata, &err), 0);
    ctor = chain_abi_find(proxy->abi, CHAIN_ABI_CONSTRUCTOR, "");
    cr_assert_not_null(ctor);
    chain_abi_val_address(&args[0], kms_impl);
    chain_abi_val_bytes(&args[1], calldata.data, calldata.len);
    cr_assert_eq(chain_abi_encode(ctor->in, args, 2, &ctor_args, &err), 0);
    chain_abi_value_release(&args[1]);
    deploy(owner, proxy, &ctor_args, kms_proxy);

    /* owner() through the proxy is the deployer */
    chain_address_format(kms_proxy, addr);
    kc_buf_addf(&params, "[{\"to\":\"%s\",\"data\":\"0x8da5cb5b\"},\"latest\"]",
                addr);
    r = chain_anvil_rpc(anvil.url, "eth_call", params.data, NULL);
    cr_assert_not_null(r);
    cr_expect_eq(
        strcasecmp(json_object_get_string(r) + 26, CHAIN_ANVIL_ADDR0 + 2), 0,
        "owner %s", json_object_get_string(r));
    json_object_put(r);

    /* addOsImageHash by the owner works; the getter says so */
    add = chain_abi_find(kms->abi, CHAIN_ABI_FUNCTION, "addOsImageHash");
    allowed = chain_abi_find(kms->abi, CHAIN_ABI_FUNCTION, "allowedOsImages");
    cr_assert(add && allowed);
    chain_keccak256("image", 5, h);
    chain_abi_val_bytes32(&v, h);
    kc_buf_reset(&calldata);
    cr_assert_eq(chain_abi_encode_call(add, &v, 1, &calldata, &err), 0);
    json_object_put(send_tx(owner, true, kms_proxy, &calldata));

    /* the same call by account 1, as eth_call: custom error, decoded */
    kc_buf_reset(&params);
    kc_buf_addf(&params, "[{\"from\":\"%s\",\"to\":\"%s\",\"data\":\"",
                CHAIN_ANVIL_ADDR1, addr);
    chain_hex_add(&params, calldata.data, calldata.len);
    kc_buf_addstr(&params, "\"},\"latest\"]");
    r = chain_anvil_rpc(anvil.url, "eth_call", params.data, &errjson);
    cr_assert_null(r);
    cr_assert_not_null(errjson);
    data = json_object_object_get(json_tokener_parse(errjson), "data");
    cr_assert_not_null(data, "%s", errjson);
    cr_assert_eq(chain_hex_decode_alloc(json_object_get_string(data), 1024,
                                        &rev, &revlen, "data", &err),
                 0);
    cr_assert_eq(chain_abi_describe_revert(kms->abi, rev, revlen, &why), 0);
    cr_expect_str_eq(kc_buf_str(&why),
                     "OwnableUnauthorizedAccount(" CHAIN_ANVIL_ADDR1 ")");
    (void)other;

    /* the getter through the proxy */
    kc_buf_reset(&calldata);
    cr_assert_eq(chain_abi_encode_call(allowed, &v, 1, &calldata, &err), 0);
    kc_buf_reset(&params);
    kc_buf_addf(&params, "[{\"to\":\"%s\",\"data\":\"", addr);
    chain_hex_add(&params, calldata.data, calldata.len);
    kc_buf_addstr(&params, "\"},\"latest\"]");
    r = chain_anvil_rpc(anvil.url, "eth_call", params.data, NULL);
    cr_assert_not_null(r);
    cr_expect_eq(json_object_get_string(r)[65], '1');
    json_object_put(r);

    free(rev);
    free(errjson);
    kc_buf_release(&calldata);
    kc_buf_release(&ctor_args);
    kc_buf_release(&params);
    kc_buf_release(&why);
    chain_artifact_free(kms);
    chain_artifact_free(app);
    chain_artifact_free(proxy);
    chain_signer_free(owner);
    chain_signer_free(other);
}
