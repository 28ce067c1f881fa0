/* resources/chain/keccak.c: Keccak-f[1600] and the Keccak-256 sponge. */
#include "resources/chain/keccak.h"

static const uint64_t keccak_rc[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* Rotation offsets and the pi lane order, as in the Keccak reference. */
static const unsigned keccak_rotc[24] = {
    1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
    27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44,
};
static const unsigned keccak_piln[24] = {
    10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
    15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1,
};

static uint64_t rotl64(uint64_t x, unsigned n)
{
    return (x << n) | (x >> (64 - n));
}

static void keccak_f1600(uint64_t st[25])
{
    uint64_t bc[5], t;

    for (int round = 0; round < 24; round++) {
        /* theta */
        for (int i = 0; i < 5; i++)
            bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        for (int i = 0; i < 5; i++) {
            t = bc[(i + 4) % 5] ^ rotl64(bc[(i + 1) % 5], 1);
            for (int j = 0; j < 25; j += 5)
                st[j + i] ^= t;
        }
        /* rho and pi */
        t = st[1];
        for (int i = 0; i < 24; i++) {
            unsigned j = keccak_piln[i];
            bc[0] = st[j];
            st[j] = rotl64(t, keccak_rotc[i]);
            t = bc[0];
        }
        /* chi */
        for (int j = 0; j < 25; j += 5) {
            for (int i = 0; i < 5; i++)
                bc[i] = st[j + i];
            for (int i = 0; i < 5; i++)
                st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
        }
        /* iota */
        st[0] ^= keccak_rc[round];
    }
}

static void keccak_absorb_block(struct chain_keccak *k, const uint8_t *p)
{
    for (int i = 0; i < CHAIN_KECCAK_RATE / 8; i++) {
        uint64_t lane = 0;
        for (int b = 0; b < 8; b++)
            lane |= (uint64_t)p[8 * i + b] << (8 * b);
        k->st[i] ^= lane;
    }
    keccak_f1600(k->st);
}

void chain_keccak_init(struct chain_keccak *k)
{
    memset(k, 0, sizeof(*k));
}

void chain_keccak_update(struct chain_keccak *k, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (k->n > 0) {
        size_t take = CHAIN_KECCAK_RATE - k->n;
        if (take > len)
            take = len;
        memcpy(k->buf + k->n, p, take);
        k->n += take;
        p += take;
        len -= take;
        if (k->n < CHAIN_KECCAK_RATE)
            return;
        keccak_absorb_block(k, k->buf);
        k->n = 0;
    }
    while (len >= CHAIN_KECCAK_RATE) {
        keccak_absorb_block(k, p);
        p += CHAIN_KECCAK_RATE;
        len -= CHAIN_KECCAK_RATE;
    }
    if (len > 0) {
        memcpy(k->buf, p, len);
        k->n = len;
    }
}

void chain_keccak_final(struct chain_keccak *k, uint8_t out[32])
{
    /* Original Keccak multi-rate padding: 0x01 ... 0x80 (one byte 0x81 when
     * a single byte of padding is left). FIPS 202 would use 0x06. */
    memset(k->buf + k->n, 0, CHAIN_KECCAK_RATE - k->n);
    k->buf[k->n] ^= 0x01;
    k->buf[CHAIN_KECCAK_RATE - 1] ^= 0x80;
    keccak_absorb_block(k, k->buf);
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            out[8 * i + b] = (uint8_t)(k->st[i] >> (8 * b));
    kc_memzero(k, sizeof(*k));
}

void chain_keccak256(const void *data, size_t len, uint8_t out[32])
{
    struct chain_keccak k;

    chain_keccak_init(&k);
    chain_keccak_update(&k, data, len);
    chain_keccak_final(&k, out);
}

void chain_selector(const char *signature, uint8_t out[4])
{
    uint8_t h[32];

    chain_keccak256(signature, strlen(signature), h);
    memcpy(out, h, 4);
}
