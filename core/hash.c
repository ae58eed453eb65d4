/* core/hash.c — keyed hashing of byte strings: SipHash-1-3 under a per-process 128-bit key.
 *
 * Why keyed: a table keyed by strings an attacker chooses (JSON keys, HTTP headers) degrades to a list
 * when the attacker can make many keys collide; with an unpredictable key per process the collisions
 * cannot be computed offline (the hash-flooding attacks of 2011, CPython's PEP 456). SipHash-1-3 (one
 * compression round per 8-byte word, three finalisation rounds) is CPython's choice since 3.11: the
 * reduced-round variant keeps the keyed construction at about the speed of FNV for short keys.
 *
 * SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012), written from the paper:
 * four 64-bit words of state, initialised from the key k0 || k1 xor the constants "somepseudorandomly
 * generatedbytes"; each little-endian 8-byte word m of the message is absorbed as v3 ^= m, c SipRounds,
 * v0 ^= m; the last word holds the 0..7 remaining bytes and the message length mod 256 in its top byte;
 * then v2 ^= 0xff, d SipRounds, and the output is v0 ^ v1 ^ v2 ^ v3.
 *
 * The key. Chosen once, at the first hash of the process (or the first ouro_hash_set_seed):
 *   OURO_HASH_SEED unset, empty or "random"  128 bits from getrandom();
 *   OURO_HASH_SEED=<decimal 0..2^64-1>       a fixed key derived from the number (splitmix64 twice),
 *                                            for tests and reproducible runs (like PYTHONHASHSEED);
 *   anything else                            a warning, then a random key.
 * ouro_hash_set_seed() fixes the key from a number programmatically, and wins over the environment,
 * but only until the first hash: after it every cached hash depends on the key, so a change is refused.
 *
 * Key state machine (key_state, under key_lock except the fast-path load):
 *   KEY_UNSET --set_seed--> KEY_SEEDED --first hash--> KEY_USED
 *   KEY_UNSET -----------------first hash-----------> KEY_USED      (KEY_USED is final)
 * hash_key is written only under key_lock before the release store of KEY_USED; readers load it after
 * the acquire load that sees KEY_USED. A forked child keeps the parent's key (its cached hashes). */
#include "core/objimpl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { KEY_UNSET, KEY_SEEDED, KEY_USED };

static _Atomic int key_state;
static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static uint64_t hash_key[2];                                 /* k0, k1: see key_state */

/* ---- SipHash ---------------------------------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

typedef struct { uint64_t v0, v1, v2, v3; } sip_state;

static inline void sip_round(sip_state *s) {
    s->v0 += s->v1;
    s->v1 = rotl64(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl64(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl64(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl64(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl64(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl64(s->v2, 32);
}

/* SipHash-1-3 of n bytes at p under the key (k0, k1). */
static uint64_t siphash13(uint64_t k0, uint64_t k1, const unsigned char *p, size_t n) {
    sip_state s = {
        .v0 = k0 ^ 0x736f6d6570736575ull, /* "somepseu" */
        .v1 = k1 ^ 0x646f72616e646f6dull, /* "dorandom" */
        .v2 = k0 ^ 0x6c7967656e657261ull, /* "lygenera" */
        .v3 = k1 ^ 0x7465646279746573ull, /* "tedbytes" */
    };
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        s.v3 ^= m;
        sip_round(&s);
        s.v0 ^= m;
    }
    uint64_t last = (uint64_t)(n & 0xff) << 56;
    for (size_t i = 0; i < (n & 7); i++) last |= (uint64_t)p[whole + i] << (8 * i);
    s.v3 ^= last;
    sip_round(&s);
    s.v0 ^= last;
    s.v2 ^= 0xff;
    sip_round(&s);
    sip_round(&s);
    sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t ouro_siphash13(const void *key, const void *p, size_t n) {
    static const unsigned char zero_key[16];
    const unsigned char *k = key ? key : zero_key;
    if (!p && n) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_siphash13: p is NULL with n = %zu", n);
        n = 0;
    }
    return siphash13(load_le64(k), load_le64(k + 8), p, n);
}

/* ---- the process key --------------------------------------------------------------------------------- */

/* splitmix64 (Steele, Lea and Flood): a bijective mixer, enough to spread a small seed over a key. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void key_from_seed(uint64_t seed) {
    hash_key[0] = splitmix64(&seed);
    hash_key[1] = splitmix64(&seed);
}

/* 16 random bytes: getrandom(), then /dev/urandom, then (with a warning) the clock and the pid. */
static void key_random(void) {
    unsigned char buf[16];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = _ouro_sys_getrandom(buf + got, sizeof buf - got, 0);
        if (r > 0) got += (size_t)r;
        else if (r == 0 || errno != EINTR) break;
    }
    if (got < sizeof buf) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        while (fd >= 0 && got < sizeof buf) {
            ssize_t r = read(fd, buf + got, sizeof buf - got);
            if (r > 0) got += (size_t)r;
            else if (r == 0 || errno != EINTR) break;
        }
        if (fd >= 0) close(fd);
    }
    if (got < sizeof buf) {
        _ouro_warn("no OS randomness for the hash key; using the clock (hashes are predictable)");
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
        key_from_seed(x);
        return;
    }
    hash_key[0] = load_le64(buf);
    hash_key[1] = load_le64(buf + 8);
}

/* The key from OURO_HASH_SEED (key_lock held). */
static void key_from_environment(void) {
    const char *v = getenv("OURO_HASH_SEED");
    if (!v || !*v || strcmp(v, "random") == 0) {
        key_random();
        return;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long seed = strtoull(v, &end, 10);
    if (errno || *end || !isdigit((unsigned char)*v)) { /* strtoull would skip spaces, take signs */
        _ouro_warn("OURO_HASH_SEED='%s' is not \"random\" nor a decimal number below 2^64; using a random key", v);
        key_random();
        return;
    }
    key_from_seed((uint64_t)seed);
}

OURO_COLD static void key_init_slow(void) {
    pthread_mutex_lock(&key_lock);
    int state = atomic_load_explicit(&key_state, memory_order_relaxed);
    if (state == KEY_UNSET) key_from_environment();
    if (state != KEY_USED) atomic_store_explicit(&key_state, KEY_USED, memory_order_release); /* pairs with key_get() */
    pthread_mutex_unlock(&key_lock);
}

/* The process key, fixing it at the first call. */
static inline const uint64_t *key_get(void) {
    if (OURO_UNLIKELY(atomic_load_explicit(&key_state, memory_order_acquire) != KEY_USED)) /* pairs with key_init_slow() */
        key_init_slow();
    return hash_key;
}

int ouro_hash_set_seed(uint64_t seed) {
    pthread_mutex_lock(&key_lock);
    if (atomic_load_explicit(&key_state, memory_order_relaxed) == KEY_USED) {
        pthread_mutex_unlock(&key_lock);
        _ouro_err_set(OURO_ERR_STATE, "ouro_hash_set_seed: a hash was already computed with the current key");
        return -1;
    }
    key_from_seed(seed);
    atomic_store_explicit(&key_state, KEY_SEEDED, memory_order_relaxed); /* published by key_init_slow */
    pthread_mutex_unlock(&key_lock);
    return 0;
}

int64_t ouro_hash_bytes(const void *p, size_t n) {
    if (!p && n) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_hash_bytes: p is NULL with n = %zu", n);
        return 0;
    }
    const uint64_t *k = key_get();
    int64_t h = (int64_t)siphash13(k[0], k[1], p, n);
    return h == -1 ? -2 : h;
}
