/* resources/chain/tx.c: EIP-1559 and EIP-155 transactions. */
#include "resources/chain/tx.h"

#include "resources/chain/keccak.h"
#include "resources/chain/rlp.h"

/* The fields both the signing payload and the signed form start with. */
static int tx_add_fields(const struct chain_tx *tx, struct kc_buf *b)
{
    int ret = 0;

    if (tx->type == CHAIN_TX_EIP1559) {
        ret = chain_rlp_add_uint(b, tx->chain_id);
        if (ret == 0)
            ret = chain_rlp_add_uint(b, tx->nonce);
        if (ret == 0)
            ret = chain_rlp_add_uint(b, tx->max_priority_fee);
        if (ret == 0)
            ret = chain_rlp_add_uint(b, tx->max_fee);
    } else {
        ret = chain_rlp_add_uint(b, tx->nonce);
        if (ret == 0)
            ret = chain_rlp_add_uint(b, tx->gas_price);
    }
    if (ret == 0)
        ret = chain_rlp_add_uint(b, tx->gas);
    if (ret == 0)
        ret = chain_rlp_add_bytes(b, tx->to, tx->has_to ? 20 : 0);
    if (ret == 0)
        ret = chain_rlp_add_be(b, tx->value, 32);
    if (ret == 0)
        ret = chain_rlp_add_bytes(b, tx->data, tx->data_len);
    if (ret == 0 && tx->type == CHAIN_TX_EIP1559)
        ret = chain_rlp_add_list(b, NULL, 0); /* empty access list */
    return ret;
}

static int tx_wrap(const struct chain_tx *tx, const struct kc_buf *fields,
                   struct kc_buf *out)
{
    int ret = 0;

    if (tx->type == CHAIN_TX_EIP1559)
        ret = kc_buf_addch(out, 0x02);
    if (ret == 0)
        ret = chain_rlp_add_list(out, fields->data, fields->len);
    return ret;
}

int chain_tx_signing_payload(const struct chain_tx *tx, struct kc_buf *out)
{
    struct kc_buf f = { 0 };
    int ret;

    if (tx->type != CHAIN_TX_EIP1559 && tx->type != CHAIN_TX_LEGACY)
        return KC_EINVAL;
    ret = tx_add_fields(tx, &f);
    if (ret == 0 && tx->type == CHAIN_TX_LEGACY) {
        ret = chain_rlp_add_uint(&f, tx->chain_id);
        if (ret == 0)
            ret = chain_rlp_add_uint(&f, 0);
        if (ret == 0)
            ret = chain_rlp_add_uint(&f, 0);
    }
    if (ret == 0)
        ret = tx_wrap(tx, &f, out);
    kc_buf_release(&f);
    return ret;
}

int chain_tx_serialize(const struct chain_tx *tx, const struct chain_sig *sig,
                       struct kc_buf *raw, struct kc_err *err)
{
    struct kc_buf f = { 0 };
    int ret;

    if (tx->type != CHAIN_TX_EIP1559 && tx->type != CHAIN_TX_LEGACY)
        return kc_err_set(err, KC_EINVAL, "unsupported transaction type %d",
                          (int)tx->type);
    if (tx->type == CHAIN_TX_LEGACY && tx->chain_id > (UINT64_MAX - 36) / 2)
        return kc_err_set(err, KC_ERANGE, "chain id %llu too large for v",
                          (unsigned long long)tx->chain_id);
    ret = tx_add_fields(tx, &f);
    if (ret == 0)
        ret = chain_rlp_add_uint(&f, tx->type == CHAIN_TX_EIP1559
                                         ? (uint64_t)sig->recid
                                         : (uint64_t)sig->recid +
                                               tx->chain_id * 2 + 35);
    if (ret == 0)
        ret = chain_rlp_add_be(&f, sig->r, 32);
    if (ret == 0)
        ret = chain_rlp_add_be(&f, sig->s, 32);
    if (ret == 0)
        ret = tx_wrap(tx, &f, raw);
    kc_buf_release(&f);
    if (ret < 0)
        return kc_err_set(err, ret, "serialising a transaction: %s",
                          kc_strerror(ret));
    return 0;
}

int chain_tx_sign(const struct chain_tx *tx, const struct chain_signer *signer,
                  struct kc_buf *raw, uint8_t hash[32], struct kc_err *err)
{
    struct kc_buf payload = { 0 };
    struct chain_sig sig;
    uint8_t sighash[32];
    size_t start = raw->len;
    int ret;

    ret = chain_tx_signing_payload(tx, &payload);
    if (ret < 0) {
        kc_buf_release(&payload);
        return kc_err_set(err, ret, "encoding a transaction: %s",
                          kc_strerror(ret));
    }
    chain_keccak256(payload.data, payload.len, sighash);
    kc_buf_release(&payload);
    ret = chain_signer_sign(signer, sighash, &sig, err);
    if (ret == 0)
        ret = chain_tx_serialize(tx, &sig, raw, err);
    if (ret == 0)
        chain_keccak256(raw->data + start, raw->len - start, hash);
    return ret;
}

void chain_create_address(const uint8_t sender[20], uint64_t nonce,
                          uint8_t out[20])
{
    struct kc_buf items = { 0 }, list = { 0 };
    uint8_t h[32];

    if (chain_rlp_add_bytes(&items, sender, 20) < 0 ||
        chain_rlp_add_uint(&items, nonce) < 0 ||
        chain_rlp_add_list(&list, items.data, items.len) < 0)
        KC_BUG("rlp of a create address");
    chain_keccak256(list.data, list.len, h);
    memcpy(out, h + 12, 20);
    kc_buf_release(&items);
    kc_buf_release(&list);
}
