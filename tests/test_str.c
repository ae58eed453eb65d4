/* tests/test_str.c — str, bytes, keyed hashing and interning: SipHash-1-3 against reference vectors
 * (CPython 3.11's, whose bytes hash is SipHash-1-3), the process key and OURO_HASH_SEED (in child
 * processes), UTF-8 validation edge by edge, every operation and its error paths, per-type counts back
 * to baseline after every test, and interning from many threads at once (an oracle after the join). */
#include "testutil.h"

#include <limits.h>
#include <pthread.h>
#include <time.h>

/* ---- helpers ---------------------------------------------------------------------------------------- */

static size_t live_of(const ouro_type *t) {
    ouro_type_stats st;
    assert_int_equal(ouro_type_get_stats(t, &st), 0);
    return st.live;
}

/* Live str and bytes instances once queued frees are merged (the immortal empty ones made first). */
static size_t str_live(void) {
    assert_non_null(ouro_str_from_utf8("", 0));
    assert_non_null(ouro_bytes_new("", 0));
    ouro_refcount_merge_queued();
    return live_of(&ouro_str_type);
}
static size_t bytes_live(void) {
    assert_non_null(ouro_str_from_utf8("", 0));
    assert_non_null(ouro_bytes_new("", 0));
    ouro_refcount_merge_queued();
    return live_of(&ouro_bytes_type);
}

static ouro_object *str(const char *s) {
    ouro_object *o = ouro_str_from_cstr(s);
    assert_non_null(o);
    return o;
}

static ouro_object *str_n(const char *s, size_t n) {
    ouro_object *o = ouro_str_from_utf8(s, n);
    assert_non_null(o);
    return o;
}

/* Asserts that str o holds exactly text (NUL-terminated). */
static void assert_text(ouro_object *o, const char *text) {
    assert_non_null(o);
    size_t n = 0;
    const char *p = ouro_str_utf8(o, &n);
    assert_non_null(p);
    if (n != strlen(text) || memcmp(p, text, n) != 0) fprintf(stderr, "got '%.*s', expected '%s'\n", (int)n, p, text);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(p, text, n);
    assert_int_equal(p[n], '\0');
}

/* Asserts that the repr of o is text, and drops o. */
static void assert_repr_of(ouro_object *o, const char *text) {
    ouro_object *r = ouro_repr(o);
    assert_text(r, text);
    ouro_decref(r);
    ouro_decref(o);
}

static void expect_err(ouro_err code) {
    if (ouro_err_occurred() != code) fprintf(stderr, "error %d (%s), expected %d\n", ouro_err_occurred(), ouro_err_message(), code);
    assert_int_equal(ouro_err_occurred(), code);
    ouro_err_clear();
}

static const char *self_exe;

/* The hash of text printed by this program run with OURO_HASH_SEED=seed (NULL: unset). */
static uint64_t child_hash(const char *seed, const char *text) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s%s%s '%s' --hash '%s' 2>/dev/null", seed ? "OURO_HASH_SEED='" : "env -u OURO_HASH_SEED",
             seed ? seed : "", seed ? "'" : "", self_exe, text);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    unsigned long long h = 0;
    int got = fscanf(f, "%llx", &h);
    int status = pclose(f);
    assert_int_equal(got, 1);
    assert_int_equal(status, 0);
    return (uint64_t)h;
}

/* ---- keyed hashing ---------------------------------------------------------------------------------- */

/* Must run first: the key can be fixed only before the first hash of the process. */
static void test_hash_set_seed(void **state) {
    assert_int_equal(ouro_hash_set_seed(7), 0);
    assert_int_equal(ouro_hash_set_seed(1234), 0); /* the last one before the first hash wins */
    int64_t h = ouro_hash_bytes("abc", 3);
    assert_int_equal(ouro_hash_set_seed(99), -1);
    expect_err(OURO_ERR_STATE);
    assert_int_equal(ouro_hash_bytes("abc", 3), h);
    /* OURO_HASH_SEED=1234 derives the same key in another process. */
    assert_int_equal(child_hash("1234", "abc"), (uint64_t)h);
    assert_int_equal(child_hash("1234", "abc"), child_hash("1234", "abc"));
    assert_int_not_equal(child_hash("1235", "abc"), (uint64_t)h);
    assert_int_not_equal(child_hash("0", "abc"), child_hash("1", "abc"));
    /* random (unset, or "random"): a fresh key per process; equal by chance once in 2^64 */
    assert_int_not_equal(child_hash(NULL, "abc"), child_hash(NULL, "abc"));
    assert_int_not_equal(child_hash("random", "abc"), child_hash("random", "abc"));
    /* not a number: a warning and a random key */
    assert_int_not_equal(child_hash("12x", "abc"), child_hash("12x", "abc"));
    assert_int_not_equal(child_hash("+5", "abc"), child_hash("+5", "abc"));
    assert_int_not_equal(child_hash("18446744073709551616", "abc"), child_hash("18446744073709551616", "abc"));
    assert_int_equal(child_hash("18446744073709551615", "abc"), child_hash("18446744073709551615", "abc"));
}

/* SipHash-1-3 outputs for the message 00 01 02 .. (n-1), taken from CPython 3.11 (sys.hash_info
 * algorithm 'siphash13'): hash(bytes(range(n))) under PYTHONHASHSEED=0 (the zero key) and
 * PYTHONHASHSEED=1 (a key from CPython's LCG, rebuilt below). */
static const struct { size_t n; uint64_t h; } sip_zero_key[] = {
    {1, 0x68a914128e01e473ull},  {2, 0x010bac45c41e3669ull},  {3, 0x4d4c9a4a8ef6e0adull},
    {7, 0x2f098ab0c751325aull},  {8, 0xead411e67ebe2eeaull},  {9, 0x75927f9d95124362ull},
    {15, 0xf30eb725bb91c9eaull}, {16, 0x8972188433a5c5b7ull}, {17, 0x4883c49a2c009c1dull},
    {63, 0x385d3e39e5f37359ull}, {64, 0x75e05fd5bbc870c6ull},
};
static const struct { size_t n; uint64_t h; } sip_seed1_key[] = {
    {1, 0xecd3e5afcecda4b9ull},  {2, 0xbf360f1ea1745965ull},  {3, 0x8d5b20ab227ba858ull},
    {7, 0xfd15e78052a69ddfull},  {8, 0xc0b5739e7e28dd01ull},  {9, 0x208a1a5a0cbbf778ull},
    {15, 0xfa87985f39e97a53ull}, {16, 0x12e9d283f9f37002ull}, {17, 0x9f5bb4237f61907full},
    {63, 0x542052345bc68274ull}, {64, 0x7e644b6edc375dc8ull},
};

static void test_siphash13_vectors(void **state) {
    unsigned char msg[64], zero[16] = {0}, key1[16];
    for (int i = 0; i < 64; i++) msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof sip_zero_key / sizeof sip_zero_key[0]; i++) {
        assert_int_equal(ouro_siphash13(zero, msg, sip_zero_key[i].n), sip_zero_key[i].h);
        assert_int_equal(ouro_siphash13(NULL, msg, sip_zero_key[i].n), sip_zero_key[i].h);
    }
    /* CPython's key for PYTHONHASHSEED=x: x' = x * 214013 + 2531011 (mod 2^32), byte = x' >> 16. */
    unsigned x = 1;
    for (int i = 0; i < 16; i++) {
        x = x * 214013u + 2531011u;
        key1[i] = (unsigned char)(x >> 16);
    }
    for (size_t i = 0; i < sizeof sip_seed1_key / sizeof sip_seed1_key[0]; i++)
        assert_int_equal(ouro_siphash13(key1, msg, sip_seed1_key[i].n), sip_seed1_key[i].h);
    assert_int_equal(ouro_siphash13(zero, "abc", 3), 0xc03bc3a0042630f2ull);
    assert_int_equal(ouro_siphash13(key1, "abc", 3), 0xbf3a636edf177675ull);
    /* the empty message is hashed too (CPython special-cases it to 0; ouro does not) */
    assert_int_equal(ouro_siphash13(zero, NULL, 0), ouro_siphash13(zero, "", 0));
    ouro_err_clear();
    assert_int_equal(ouro_siphash13(zero, NULL, 5), ouro_siphash13(zero, "", 0));
    expect_err(OURO_ERR_INVALID);
}

static void test_hash_bytes(void **state) {
    int64_t h = ouro_hash_bytes("hello", 5);
    assert_int_equal(ouro_hash_bytes("hello", 5), h);
    assert_int_not_equal(ouro_hash_bytes("hellp", 5), h);
    assert_int_not_equal(ouro_hash_bytes("hello", 4), h);
    assert_int_equal(ouro_hash_bytes(NULL, 0), ouro_hash_bytes("", 0));
    ouro_err_clear();
    assert_int_equal(ouro_hash_bytes(NULL, 3), 0);
    expect_err(OURO_ERR_INVALID);
    /* str, bytes and raw bytes agree */
    ouro_object *s = str("hello");
    ouro_object *b = ouro_bytes_new("hello", 5);
    assert_int_equal(ouro_hash(s), h);
    assert_int_equal(ouro_hash(b), h);
    assert_int_equal(ouro_eq(s, b), 0); /* equal hashes, different types */
    ouro_decref(s);
    ouro_decref(b);
}

/* Distribution: 16384 keys "key-<i>" over 256 buckets by the low and by the high bits; each bucket's
 * count within 6 standard deviations of the mean 64 (sd 8), and no two keys share a 64-bit hash. */
static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_hash_distribution(void **state) {
    enum { N = 16384, B = 256 };
    static int64_t h[N];
    unsigned lo[B] = {0}, hi[B] = {0};
    unsigned bits[64] = {0};
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "key-%d", i);
        h[i] = ouro_hash_bytes(k, (size_t)n);
        assert_int_not_equal(h[i], -1);
        lo[(uint64_t)h[i] % B]++;
        hi[(uint64_t)h[i] >> 56]++;
        for (int j = 0; j < 64; j++) bits[j] += ((uint64_t)h[i] >> j) & 1;
    }
    for (int b = 0; b < B; b++) {
        assert_in_range(lo[b], 64 - 48, 64 + 48);
        assert_in_range(hi[b], 64 - 48, 64 + 48);
    }
    for (int j = 0; j < 64; j++) assert_in_range(bits[j], N / 2 - 6 * 64, N / 2 + 6 * 64); /* sd 64 */
    qsort(h, N, sizeof h[0], cmp_i64);
    for (int i = 1; i < N; i++) assert_true(h[i] != h[i - 1]);
}

/* ---- UTF-8 validation ------------------------------------------------------------------------------- */

static const struct {
    const char *bytes;
    size_t n;
    ptrdiff_t cps; /* code points, or -1: invalid */
    size_t bad;    /* the offset the error names */
} utf8_cases[] = {
    {"", 0, 0, 0},
    {"a", 1, 1, 0},
    {"a\0b", 3, 3, 0},                      /* embedded NUL */
    {"\x7f", 1, 1, 0},                      /* U+007F */
    {"\xc2\x80", 2, 1, 0},                  /* U+0080 */
    {"\xdf\xbf", 2, 1, 0},                  /* U+07FF */
    {"\xe0\xa0\x80", 3, 1, 0},              /* U+0800 */
    {"\xed\x9f\xbf", 3, 1, 0},              /* U+D7FF */
    {"\xee\x80\x80", 3, 1, 0},              /* U+E000 */
    {"\xef\xbf\xbf", 3, 1, 0},              /* U+FFFF */
    {"\xf0\x90\x80\x80", 4, 1, 0},          /* U+10000 */
    {"\xf4\x8f\xbf\xbf", 4, 1, 0},          /* U+10FFFF */
    {"h\xc3\xa9llo \xe4\xb8\xad\xf0\x9f\x98\x80", 14, 8, 0},
    {"\x80", 1, -1, 0},                     /* a lone continuation byte */
    {"ab\xbf", 3, -1, 2},
    {"\xc0\x80", 2, -1, 0},                 /* overlong NUL */
    {"\xc1\xbf", 2, -1, 0},                 /* overlong U+007F */
    {"\xe0\x80\x80", 3, -1, 0},             /* overlong NUL in 3 */
    {"\xe0\x9f\xbf", 3, -1, 0},             /* overlong U+07FF */
    {"\xf0\x80\x80\x80", 4, -1, 0},         /* overlong NUL in 4 */
    {"\xf0\x8f\xbf\xbf", 4, -1, 0},         /* overlong U+FFFF */
    {"x\xed\xa0\x80", 4, -1, 1},            /* U+D800 */
    {"\xed\xbf\xbf", 3, -1, 0},             /* U+DFFF */
    {"\xed\xa0\xbd\xed\xb8\x80", 6, -1, 0}, /* a CESU-8 surrogate pair */
    {"\xf4\x90\x80\x80", 4, -1, 0},         /* U+110000 */
    {"\xf5\x80\x80\x80", 4, -1, 0},
    {"\xf7\xbf\xbf\xbf", 4, -1, 0},
    {"\xf8\x88\x80\x80\x80", 5, -1, 0},     /* 5-byte form */
    {"\xfe", 1, -1, 0},
    {"\xff", 1, -1, 0},
    {"\xc2", 1, -1, 0},                     /* truncated */
    {"ab\xe2\x82", 4, -1, 2},
    {"\xf0\x90\x80", 3, -1, 0},
    {"\xc2\x41", 2, -1, 0},                 /* a continuation that is not */
    {"\xe2\x28\xa1", 3, -1, 0},
    {"\xe2\x82\x28", 3, -1, 0},
    {"\xf0\x90\x28\xbc", 4, -1, 0},
    {"ok\xc3\xa9\xc3", 5, -1, 4},
};

static void test_utf8_validation(void **state) {
    size_t base = str_live();
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        ouro_err_clear();
        ouro_object *s = ouro_str_from_utf8(utf8_cases[i].bytes, utf8_cases[i].n);
        if (utf8_cases[i].cps < 0) {
            if (s) fprintf(stderr, "case %zu accepted\n", i);
            assert_null(s);
            assert_int_equal(ouro_err_occurred(), OURO_ERR_VALUE);
            char want[64];
            snprintf(want, sizeof want, "at byte %zu", utf8_cases[i].bad);
            if (!strstr(ouro_err_message(), want)) fprintf(stderr, "case %zu: '%s'\n", i, ouro_err_message());
            assert_non_null(strstr(ouro_err_message(), want));
        } else {
            if (!s) fprintf(stderr, "case %zu refused: %s\n", i, ouro_err_message());
            assert_non_null(s);
            assert_int_equal(ouro_str_len(s), utf8_cases[i].cps);
            assert_int_equal(ouro_str_size(s), (ptrdiff_t)utf8_cases[i].n);
            ouro_decref(s);
        }
    }
    /* every 1- and 2-byte sequence against a decoder written independently */
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            char two[2] = {(char)a, (char)b};
            bool ok = (a < 0x80 && b < 0x80) || (a >= 0xc2 && a <= 0xdf && (b & 0xc0) == 0x80);
            ouro_object *s = ouro_str_from_utf8(two, 2);
            assert_int_equal(s != NULL, ok);
            ouro_xdecref(s);
        }
    ouro_err_clear();
    assert_null(ouro_str_from_utf8(NULL, 1));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_from_utf8("x", SIZE_MAX));
    expect_err(OURO_ERR_OVERFLOW);
    assert_null(ouro_str_from_utf8("x", (size_t)PTRDIFF_MAX));
    expect_err(OURO_ERR_OVERFLOW);
    assert_null(ouro_str_from_cstr(NULL));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_from_format("%c", 0xff));
    expect_err(OURO_ERR_VALUE);
    assert_int_equal(str_live(), base);
}

/* ---- str ----------------------------------------------------------------------------------------------- */

static void test_str_basics(void **state) {
    size_t base = str_live();
    ouro_object *s = str("h\xc3\xa9llo");
    assert_true(ouro_is_type(s, &ouro_str_type));
    assert_int_equal(ouro_str_len(s), 5);
    assert_int_equal(ouro_str_size(s), 6);
    assert_text(s, "h\xc3\xa9llo");
    assert_non_null(ouro_str_utf8(s, NULL)); /* len may be NULL */
    ouro_object *t = str_n("h\xc3\xa9llo!", 6);
    assert_int_equal(ouro_eq(s, t), 1);
    assert_int_equal(ouro_hash(s), ouro_hash(t));
    ouro_object *u = ouro_str_from_format("%s-%d", "n", 42);
    assert_text(u, "n-42");
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ouro_object *v = ouro_str_from_format("<%s>", big); /* past the formatter's stack buffer */
    assert_int_equal(ouro_str_len(v), 601);
    assert_int_equal(ouro_eq(s, u), 0);
    ouro_decref(s);
    ouro_decref(t);
    ouro_decref(u);
    ouro_decref(v);
    /* errors */
    ouro_object *b = ouro_bytes_new("x", 1);
    ouro_err_clear();
    assert_int_equal(ouro_str_len(NULL), -1);
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_str_len(b), -1);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_size(b), -1);
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_str_utf8(b, NULL));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_str_utf8(NULL, NULL));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_from_format(NULL));
    expect_err(OURO_ERR_INVALID);
    ouro_decref(b);
    assert_int_equal(str_live(), base);
}

static void test_str_empty_singleton(void **state) {
    ouro_object *e = ouro_str_from_utf8("", 0);
    size_t base = str_live();
    assert_non_null(e);
    assert_true(ouro_is_immortal(e));
    assert_ptr_equal(ouro_str_from_utf8(NULL, 0), e);
    assert_ptr_equal(ouro_str_from_cstr(""), e);
    assert_ptr_equal(ouro_str_from_format("%s", ""), e);
    ouro_object *s = str("abc");
    ouro_object *sl = ouro_str_slice(s, 2, 1);
    assert_ptr_equal(sl, e);
    assert_int_equal(ouro_str_len(e), 0);
    assert_text(e, "");
    ouro_decref(e); /* immortal: no-ops */
    ouro_decref(e);
    ouro_decref(s);
    assert_int_equal(str_live(), base);
}

/* Strings past OURO_OBJECT_MAX_SIZE keep their bytes in a separate block. */
static void test_str_large(void **state) {
    size_t base = str_live();
    enum { N = 100000 }; /* code points: N - 3 times "é", then "xyz" (2N - 3 bytes) */
    char *buf = malloc(2 * N);
    assert_non_null(buf);
    for (int i = 0; i < N - 3; i++) memcpy(buf + 2 * i, "\xc3\xa9", 2);
    memcpy(buf + 2 * (N - 3), "xyz", 3);
    ouro_object *s = ouro_str_from_utf8(buf, 2 * N - 3);
    assert_non_null(s);
    assert_int_equal(ouro_str_size(s), 2 * N - 3);
    assert_int_equal(ouro_str_len(s), N);
    assert_true(ouro_sizeof(s) > 2 * N);
    ouro_object *x = str("xyz");
    assert_int_equal(ouro_str_find(s, x), N - 3);
    assert_int_equal(ouro_str_endswith(s, x), 1);
    ouro_object *tail = ouro_str_slice(s, -4, PTRDIFF_MAX);
    assert_text(tail, "\xc3\xa9xyz");
    ouro_object *twice = ouro_str_concat(s, s);
    assert_int_equal(ouro_str_len(twice), 2 * N);
    assert_int_equal(ouro_str_size(twice), 4 * N - 6);
    ouro_object *back = ouro_str_slice(twice, N, 2 * N);
    assert_int_equal(ouro_eq(back, s), 1);
    assert_int_equal(ouro_hash(back), ouro_hash(s));
    assert_int_equal(ouro_str_compare(back, s), 0);
    ouro_decref(s);
    ouro_decref(x);
    ouro_decref(tail);
    ouro_decref(twice);
    ouro_decref(back);
    free(buf);
    assert_int_equal(str_live(), base);
}

static void test_str_concat(void **state) {
    size_t base = str_live();
    ouro_object *a = str("h\xc3\xa9"), *b = str("\xf0\x9f\x98\x80!"), *e = str("");
    ouro_object *ab = ouro_str_concat(a, b);
    assert_text(ab, "h\xc3\xa9\xf0\x9f\x98\x80!");
    assert_int_equal(ouro_str_len(ab), 4);
    ouro_object *ae = ouro_str_concat(a, e), *ea = ouro_str_concat(e, a), *ee = ouro_str_concat(e, e);
    assert_ptr_equal(ae, a); /* immutable: the operand itself */
    assert_ptr_equal(ea, a);
    assert_ptr_equal(ee, e);
    ouro_object *bytes = ouro_bytes_new("x", 1);
    ouro_err_clear();
    assert_null(ouro_str_concat(a, bytes));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_str_concat(bytes, a));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_str_concat(NULL, a));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_concat(a, NULL));
    expect_err(OURO_ERR_INVALID);
    ouro_decref(bytes);
    ouro_decref(ab);
    ouro_decref(ae);
    ouro_decref(ea);
    ouro_decref(ee);
    ouro_decref(a);
    ouro_decref(b);
    assert_int_equal(str_live(), base);
}

static void test_str_slice(void **state) {
    size_t base = str_live();
    /* "héllo wörld": 11 code points, 13 bytes */
    ouro_object *s = str("h\xc3\xa9llo w\xc3\xb6rld"), *ascii = str("hello world");
    static const struct { ptrdiff_t start, stop; const char *want, *want_ascii; } cases[] = {
        {0, 5, "h\xc3\xa9llo", "hello"},
        {-5, 100, "w\xc3\xb6rld", "world"},
        {-100, 2, "h\xc3\xa9", "he"},
        {3, 1, "", ""},
        {6, -1, "w\xc3\xb6rl", "worl"},
        {1, 2, "\xc3\xa9", "e"},
        {11, 11, "", ""},
        {12, 20, "", ""},
        {-1, PTRDIFF_MAX, "d", "d"},
        {PTRDIFF_MIN, -10, "h", "h"},
        {-11, -10, "h", "h"},
        {-12, 0, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ouro_object *r = ouro_str_slice(s, cases[i].start, cases[i].stop);
        assert_text(r, cases[i].want);
        ouro_object *check = str(cases[i].want);
        assert_int_equal(ouro_str_len(r), ouro_str_len(check));
        ouro_decref(check);
        ouro_decref(r);
        r = ouro_str_slice(ascii, cases[i].start, cases[i].stop);
        assert_text(r, cases[i].want_ascii);
        ouro_decref(r);
    }
    ouro_object *all = ouro_str_slice(s, PTRDIFF_MIN, PTRDIFF_MAX);
    assert_ptr_equal(all, s);
    ouro_decref(all);
    ouro_err_clear();
    assert_null(ouro_str_slice(NULL, 0, 1));
    expect_err(OURO_ERR_INVALID);
    ouro_object *b = ouro_bytes_new("ab", 2);
    assert_null(ouro_str_slice(b, 0, 1));
    expect_err(OURO_ERR_TYPE);
    ouro_decref(b);
    ouro_decref(s);
    ouro_decref(ascii);
    assert_int_equal(str_live(), base);
}

static void test_str_compare(void **state) {
    size_t base = str_live();
    /* in code point order */
    static const char *const sorted[] = {
        "", "\x01", "A", "a", "a\0", "ab", "b", "z", "\xc2\x80", "\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80",
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
    };
    enum { N = sizeof sorted / sizeof sorted[0] };
    ouro_object *o[N];
    for (int i = 0; i < N; i++) o[i] = str_n(sorted[i], i == 4 ? 2 : strlen(sorted[i]));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int want = (i > j) - (i < j);
            assert_int_equal(ouro_str_compare(o[i], o[j]), want);
            assert_int_equal(ouro_eq(o[i], o[j]), i == j);
        }
    ouro_object *b = ouro_bytes_new("a", 1);
    ouro_err_clear();
    assert_int_equal(ouro_str_compare(o[1], b), -2);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_compare(NULL, o[1]), -2);
    expect_err(OURO_ERR_INVALID);
    ouro_decref(b);
    for (int i = 0; i < N; i++) ouro_decref(o[i]);
    assert_int_equal(str_live(), base);
}

static void test_str_eq_cstr_find_affixes(void **state) {
    size_t base = str_live();
    ouro_object *s = str("h\xc3\xa9llo w\xc3\xb6rld, hello"), *nul = str_n("a\0b", 3);
    assert_int_equal(ouro_str_eq_cstr(s, "h\xc3\xa9llo w\xc3\xb6rld, hello"), 1);
    assert_int_equal(ouro_str_eq_cstr(s, "h\xc3\xa9llo"), 0);
    assert_int_equal(ouro_str_eq_cstr(nul, "a"), 0);
    assert_int_equal(ouro_str_eq_cstr(nul, "a\0b"), 0); /* a C string stops at its NUL */
    static const struct { const char *sub; ptrdiff_t at; } finds[] = {
        {"", 0}, {"h", 0}, {"\xc3\xa9", 1}, {"llo", 2}, {"w\xc3\xb6", 6}, {"rld", 8}, {"hello", 13},
        {"o", 4}, {"xyz", -1}, {"h\xc3\xa9llo w\xc3\xb6rld, hello!", -1}, {"\xc3", -1},
    };
    for (size_t i = 0; i < sizeof finds / sizeof finds[0]; i++) {
        ouro_object *sub = ouro_str_from_cstr(finds[i].sub);
        if (!sub) { /* "\xc3" alone is not UTF-8: not a str, nothing to find */
            ouro_err_clear();
            continue;
        }
        ouro_err_clear();
        assert_int_equal(ouro_str_find(s, sub), finds[i].at);
        assert_int_equal(ouro_err_occurred(), OURO_OK); /* not found is no error */
        ouro_decref(sub);
    }
    ouro_object *zero = str_n("\0", 1);
    assert_int_equal(ouro_str_find(nul, zero), 1);
    ouro_object *pre = str("h\xc3\xa9l"), *suf = str("hello"), *e = str("");
    assert_int_equal(ouro_str_startswith(s, pre), 1);
    assert_int_equal(ouro_str_startswith(s, suf), 0);
    assert_int_equal(ouro_str_startswith(s, e), 1);
    assert_int_equal(ouro_str_startswith(pre, s), 0);
    assert_int_equal(ouro_str_endswith(s, suf), 1);
    assert_int_equal(ouro_str_endswith(s, pre), 0);
    assert_int_equal(ouro_str_endswith(s, e), 1);
    assert_int_equal(ouro_str_endswith(suf, s), 0);
    assert_int_equal(ouro_str_startswith(s, s), 1);
    ouro_object *b = ouro_bytes_new("h", 1);
    ouro_err_clear();
    assert_int_equal(ouro_str_find(s, b), -2);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_find(NULL, s), -2);
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_str_startswith(s, b), -1);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_endswith(b, s), -1);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_eq_cstr(s, NULL), -1);
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_str_eq_cstr(b, "h"), -1);
    expect_err(OURO_ERR_TYPE);
    ouro_decref(b);
    ouro_decref(zero);
    ouro_decref(pre);
    ouro_decref(suf);
    ouro_decref(s);
    ouro_decref(nul);
    assert_int_equal(str_live(), base);
}

/* Expected strings from CPython 3.11's repr(). */
static void test_str_repr(void **state) {
    size_t base = str_live();
    assert_repr_of(str("abc"), "'abc'");
    assert_repr_of(str("it's"), "\"it's\"");
    assert_repr_of(str("a'b\"c"), "'a\\'b\"c'");
    assert_repr_of(str("say \"hi\""), "'say \"hi\"'");
    assert_repr_of(str("a\\b"), "'a\\\\b'");
    assert_repr_of(str("\t\n\r"), "'\\t\\n\\r'");
    assert_repr_of(str("\x01\x7f"), "'\\x01\\x7f'");
    assert_repr_of(str_n("a\0b", 3), "'a\\x00b'");
    assert_repr_of(str("\xc3\xa9"), "'\xc3\xa9'");                 /* é */
    assert_repr_of(str("\xc2\xa0"), "'\\xa0'");                    /* no-break space */
    assert_repr_of(str("\xc2\x85"), "'\\x85'");                    /* C1 control */
    assert_repr_of(str("\xc2\xad"), "'\\xad'");                    /* soft hyphen */
    assert_repr_of(str("\xe2\x80\xa8"), "'\\u2028'");              /* line separator */
    assert_repr_of(str("\xe2\x80\x8b"), "'\\u200b'");              /* zero-width space */
    assert_repr_of(str("\xef\xbb\xbf"), "'\\ufeff'");              /* BOM */
    assert_repr_of(str("\xee\x80\x80"), "'\\ue000'");              /* private use */
    assert_repr_of(str("\xf4\x8f\xbf\xbf"), "'\\U0010ffff'");      /* non-character */
    assert_repr_of(str("\xf3\xa0\x80\x81"), "'\\U000e0001'");      /* language tag */
    assert_repr_of(str("\xf0\x9f\x98\x80"), "'\xf0\x9f\x98\x80'"); /* emoji */
    assert_repr_of(str("\xe4\xb8\xad\xe6\x96\x87"), "'\xe4\xb8\xad\xe6\x96\x87'");
    assert_repr_of(str(""), "''");
    ouro_object *o = str("\x01\xc3\xa9");
    ouro_object *r = ouro_repr(o);
    assert_int_equal(ouro_str_len(r), 7); /* '\x01é' */
    ouro_decref(r);
    ouro_decref(o);
    ouro_err_clear();
    assert_null(ouro_repr(NULL));
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(str_live(), base + 0);
}

/* The hash is computed once: the second call on a 16 MiB str costs no CPU to speak of. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void test_str_hash_cached(void **state) {
    size_t base = str_live();
    size_t n = 16u << 20;
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) buf[i] = (char)('a' + i % 26);
    ouro_object *s = str_n(buf, n);
    double t0 = cpu_now();
    int64_t h = ouro_hash(s);
    double t1 = cpu_now();
    for (int i = 0; i < 100; i++) assert_int_equal(ouro_hash(s), h);
    double t2 = cpu_now();
    assert_true(t2 - t1 < (t1 - t0) / 4); /* 100 cached hashes against one computed */
    assert_int_equal(h, ouro_hash_bytes(buf, n));
    assert_int_not_equal(h, -1);
    ouro_decref(s);
    free(buf);
    assert_int_equal(str_live(), base);
}

/* Threads hash one fresh str at once: all agree (racing stores of the cache store the same value). */
enum { HASHERS = 6 };
typedef struct {
    ouro_object *s;
    int64_t h[HASHERS];
    pthread_barrier_t go;
} hash_race;

typedef struct { hash_race *r; int i; } hasher_arg;

static void *hasher(void *p) {
    hasher_arg *a = p;
    ouro_incref(a->r->s);
    pthread_barrier_wait(&a->r->go);
    a->r->h[a->i] = ouro_hash(a->r->s);
    ouro_decref(a->r->s);
    return NULL;
}

static void test_str_hash_race(void **state) {
    size_t base = str_live();
    for (int round = 0; round < 20; round++) {
        hash_race r;
        r.s = ouro_str_from_format("racing-%d", round);
        pthread_barrier_init(&r.go, NULL, HASHERS);
        pthread_t t[HASHERS];
        hasher_arg args[HASHERS];
        for (int i = 0; i < HASHERS; i++) {
            args[i] = (hasher_arg){&r, i};
            pthread_create(&t[i], NULL, hasher, &args[i]);
        }
        ouro_offline_begin();
        for (int i = 0; i < HASHERS; i++) pthread_join(t[i], NULL);
        ouro_offline_end();
        for (int i = 0; i < HASHERS; i++) assert_int_equal(r.h[i], r.h[0]);
        assert_int_equal(ouro_hash(r.s), r.h[0]);
        pthread_barrier_destroy(&r.go);
        ouro_decref(r.s);
    }
    assert_int_equal(str_live(), base);
}

static void test_str_nomem(void **state) {
    size_t base = str_live(), bbase = bytes_live();
    size_t n = 8u << 20; /* a dedicated mapping */
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'q', n);
    ouro_err_clear();
    ouro_debug_fail_os_map(1);
    assert_null(ouro_str_from_utf8(buf, n));
    expect_err(OURO_ERR_NOMEM);
    ouro_debug_fail_os_map(1);
    assert_null(ouro_bytes_new(buf, n));
    expect_err(OURO_ERR_NOMEM);
    ouro_object *half = str_n(buf, n / 2);
    ouro_debug_fail_os_map(1);
    assert_null(ouro_str_concat(half, half));
    expect_err(OURO_ERR_NOMEM);
    ouro_debug_fail_os_map(0);
    ouro_decref(half);
    free(buf);
    assert_int_equal(str_live(), base);
    assert_int_equal(bytes_live(), bbase);
}

/* ---- bytes ---------------------------------------------------------------------------------------------- */

static void test_bytes(void **state) {
    size_t base = bytes_live(), sbase = str_live();
    ouro_object *e = ouro_bytes_new(NULL, 0);
    assert_non_null(e);
    assert_true(ouro_is_immortal(e));
    assert_ptr_equal(ouro_bytes_new("", 0), e);
    ouro_object *a = ouro_bytes_new("ab\0\xff", 4), *b = ouro_bytes_new("cd", 2);
    assert_true(ouro_is_type(a, &ouro_bytes_type));
    assert_int_equal(ouro_bytes_size(a), 4);
    assert_memory_equal(ouro_bytes_data(a), "ab\0\xff", 5); /* and a NUL after */
    ouro_object *ab = ouro_bytes_concat(a, b);
    assert_int_equal(ouro_bytes_size(ab), 6);
    assert_memory_equal(ouro_bytes_data(ab), "ab\0\xff" "cd", 6);
    assert_ptr_equal(ouro_bytes_concat(a, e), a); /* a new reference to a */
    ouro_decref(a);
    ouro_decref(a);
    assert_ptr_equal(ouro_bytes_concat(e, b), b);
    ouro_decref(b);
    ouro_decref(b);
    ouro_object *s1 = ouro_bytes_slice(ab, 2, -1);
    assert_int_equal(ouro_bytes_size(s1), 3);
    assert_memory_equal(ouro_bytes_data(s1), "\0\xff" "c", 3);
    ouro_object *s2 = ouro_bytes_slice(ab, -100, 100);
    assert_ptr_equal(s2, ab);
    ouro_object *s3 = ouro_bytes_slice(ab, 4, 2);
    assert_ptr_equal(s3, e);
    ouro_object *s4 = ouro_bytes_slice(ab, PTRDIFF_MIN, -5);
    assert_int_equal(ouro_bytes_size(s4), 1);
    ouro_object *again = ouro_bytes_new("ab\0\xff" "cd", 6);
    assert_int_equal(ouro_bytes_eq(again, ab), 1);
    assert_int_equal(ouro_eq(again, ab), 1);
    assert_int_equal(ouro_bytes_eq(again, s1), 0);
    assert_int_equal(ouro_hash(again), ouro_hash(ab));
    assert_int_equal(ouro_hash(ab), ouro_hash_bytes("ab\0\xff" "cd", 6));
    ouro_object *str_ab = str("ab");
    ouro_object *bytes_ab = ouro_bytes_new("ab", 2);
    assert_int_equal(ouro_eq(str_ab, bytes_ab), 0);
    assert_int_equal(ouro_eq(bytes_ab, str_ab), 0);
    assert_int_equal(ouro_hash(str_ab), ouro_hash(bytes_ab));
    /* errors */
    ouro_err_clear();
    assert_null(ouro_bytes_new(NULL, 1));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_bytes_new("x", SIZE_MAX));
    expect_err(OURO_ERR_OVERFLOW);
    assert_null(ouro_bytes_data(str_ab));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_bytes_data(NULL));
    expect_err(OURO_ERR_INVALID);
    assert_int_equal(ouro_bytes_size(str_ab), -1);
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_bytes_concat(ab, str_ab));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_bytes_concat(NULL, ab));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_bytes_slice(str_ab, 0, 1));
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_bytes_eq(ab, str_ab), -1);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_bytes_eq(NULL, ab), -1);
    expect_err(OURO_ERR_INVALID);
    ouro_decref(str_ab);
    ouro_decref(bytes_ab);
    ouro_decref(again);
    ouro_decref(s1);
    ouro_decref(s2);
    ouro_decref(s3);
    ouro_decref(s4);
    ouro_decref(ab);
    assert_int_equal(bytes_live(), base);
    assert_int_equal(str_live(), sbase);
}

static void test_bytes_repr(void **state) {
    size_t base = bytes_live(), sbase = str_live();
    assert_repr_of(ouro_bytes_new("abc", 3), "b'abc'");
    assert_repr_of(ouro_bytes_new("\0\xff", 2), "b'\\x00\\xff'");
    assert_repr_of(ouro_bytes_new("it's", 4), "b\"it's\"");
    assert_repr_of(ouro_bytes_new("a'b\"c", 5), "b'a\\'b\"c'");
    assert_repr_of(ouro_bytes_new("\\", 1), "b'\\\\'");
    assert_repr_of(ouro_bytes_new("\t\n\r\x7f", 4), "b'\\t\\n\\r\\x7f'");
    assert_repr_of(ouro_bytes_new("", 0), "b''");
    assert_repr_of(ouro_bytes_new("\xc3\xa9", 2), "b'\\xc3\\xa9'");
    assert_int_equal(bytes_live(), base);
    assert_int_equal(str_live(), sbase);
}

/* ---- interning -------------------------------------------------------------------------------------------- */

static void test_intern_basics(void **state) {
    size_t base = str_live();
    ouro_object *a = str("intern-basics-a");
    assert_int_equal(ouro_str_is_interned(a), 0);
    ouro_object *ia = ouro_str_intern(a);
    assert_ptr_equal(ia, a); /* the first: a itself, owned by this thread */
    assert_true(ouro_is_immortal(a));
    assert_int_equal(ouro_str_is_interned(a), 1);
    ouro_object *b = str("intern-basics-a");
    ouro_object *ib = ouro_str_intern(b);
    assert_ptr_equal(ib, a);
    assert_int_equal(ouro_str_is_interned(b), 0);
    assert_false(ouro_is_immortal(b));
    ouro_object *ic = ouro_str_intern_cstr("intern-basics-a");
    assert_ptr_equal(ic, a);
    ouro_object *id = ouro_str_intern(a); /* interning the interned one */
    assert_ptr_equal(id, a);
    ouro_decref(b); /* freed */
    ouro_decref(ia);
    ouro_decref(ib);
    ouro_decref(ic);
    ouro_decref(id);
    ouro_decref(a);
    assert_int_equal(str_live(), base + 1); /* a, immortal */
    /* a cstr first: the str made for it is the interned one */
    ouro_object *x = ouro_str_intern_cstr("intern-basics-x \xc3\xa9");
    assert_non_null(x);
    assert_int_equal(ouro_str_is_interned(x), 1);
    assert_int_equal(ouro_str_len(x), 17);
    assert_int_equal(ouro_hash(x), ouro_hash_bytes("intern-basics-x \xc3\xa9", 18));
    ouro_object *y = str("intern-basics-x \xc3\xa9");
    assert_ptr_equal(ouro_str_intern(y), x);
    ouro_decref(y);
    assert_int_equal(str_live(), base + 2);
    /* the empty str interns as itself */
    ouro_object *e = ouro_str_intern_cstr("");
    assert_ptr_equal(e, ouro_str_from_cstr(""));
    assert_int_equal(ouro_str_is_interned(e), 1);
    ouro_object *e2 = str("");
    assert_ptr_equal(ouro_str_intern(e2), e);
    /* embedded NUL: distinct from the prefix */
    ouro_object *n1 = ouro_str_intern(str_n("nul\0a", 5));
    ouro_object *n2 = ouro_str_intern_cstr("nul");
    assert_ptr_not_equal(n1, n2);
    assert_int_equal(ouro_str_size(n1), 5);
    assert_int_equal(str_live(), base + 4);
    /* errors */
    ouro_object *bytes = ouro_bytes_new("intern", 6);
    ouro_err_clear();
    assert_null(ouro_str_intern(bytes));
    expect_err(OURO_ERR_TYPE);
    assert_null(ouro_str_intern(NULL));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_intern_cstr(NULL));
    expect_err(OURO_ERR_INVALID);
    assert_null(ouro_str_intern_cstr("bad \xc0\x80"));
    expect_err(OURO_ERR_VALUE);
    assert_int_equal(ouro_str_is_interned(bytes), -1);
    expect_err(OURO_ERR_TYPE);
    assert_int_equal(ouro_str_is_interned(NULL), -1);
    expect_err(OURO_ERR_INVALID);
    ouro_object *off = str("intern-offline");
    assert_int_equal(ouro_offline_begin(), 0);
    assert_null(ouro_str_intern(off));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_null(ouro_str_intern_cstr("intern-offline"));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_STATE);
    assert_int_equal(ouro_offline_end(), 0);
    ouro_err_clear();
    assert_int_equal(ouro_str_is_interned(off), 0);
    ouro_decref(off);
    ouro_decref(bytes);
    assert_int_equal(str_live(), base + 4);
}

/* A str owned by another thread is not made immortal by a non-owner: an immortal copy is interned. */
static void *make_str(void *arg) {
    *(ouro_object **)arg = ouro_str_from_cstr("intern-foreign");
    return NULL;
}

static void test_intern_foreign_owner(void **state) {
    size_t base = str_live();
    ouro_object *s = NULL;
    pthread_t t;
    pthread_create(&t, NULL, make_str, &s);
    ouro_offline_begin();
    pthread_join(t, NULL);
    ouro_offline_end();
    assert_non_null(s);
    ouro_object *i = ouro_str_intern(s);
    if (OURO_REFCOUNT_ATOMIC) { /* no owners: s itself */
        assert_ptr_equal(i, s);
        assert_int_equal(str_live(), base + 1);
        return;
    }
    assert_ptr_not_equal(i, s);
    assert_int_equal(ouro_eq(i, s), 1);
    assert_true(ouro_is_immortal(i));
    assert_false(ouro_is_immortal(s));
    assert_int_equal(ouro_str_is_interned(s), 0);
    assert_int_equal(ouro_str_is_interned(i), 1);
    assert_ptr_equal(ouro_str_intern(s), i);
    ouro_decref(s); /* freed: the copy is what the table holds */
    assert_int_equal(str_live(), base + 1);
    assert_text(i, "intern-foreign");
}

/* Many threads intern the same names at once, each in its own order and half of them through a str
 * of its own (which, when it wins, becomes the interned one), half through the C string. Oracle after
 * the join: one pointer per name, holding that name (so distinct across names), immortal and marked,
 * and exactly one str per name left alive. The table grows meanwhile (liburcu's resize worker). */
#if OURO_TSAN
enum { INTERNERS = 4, NAMES = 1500 };
#else
enum { INTERNERS = 8, NAMES = 6000 };
#endif

typedef struct {
    int id;
    ouro_object *got[NAMES];
    int errors;
} interner;

static pthread_barrier_t intern_go;

static void *intern_worker(void *p) {
    interner *w = p;
    pthread_barrier_wait(&intern_go);
    uint32_t x = 2463534242u + (uint32_t)w->id * 7919u;
    for (int k = 0; k < NAMES; k++) {
        int i = (w->id & 1) ? NAMES - 1 - k : k;
        if (w->id >= 4) i = (int)((uint64_t)k * 2654435761u % NAMES); /* a scattered order */
        char name[48];
        snprintf(name, sizeof name, "intern-name-%d-\xc3\xa9", i);
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        ouro_object *r;
        if (x & 1) {
            r = ouro_str_intern_cstr(name);
        } else {
            ouro_object *mine = ouro_str_from_cstr(name);
            r = mine ? ouro_str_intern(mine) : NULL;
            ouro_xdecref(mine);
        }
        if (!r) w->errors++;
        w->got[i] = r;
    }
    return NULL;
}

static void test_intern_concurrent(void **state) {
    size_t base = str_live();
    static interner w[INTERNERS];
    pthread_t t[INTERNERS];
    pthread_barrier_init(&intern_go, NULL, INTERNERS);
    for (int i = 0; i < INTERNERS; i++) {
        w[i].id = i;
        w[i].errors = 0;
        assert_int_equal(pthread_create(&t[i], NULL, intern_worker, &w[i]), 0);
    }
    ouro_offline_begin();
    for (int i = 0; i < INTERNERS; i++) pthread_join(t[i], NULL);
    ouro_offline_end();
    pthread_barrier_destroy(&intern_go);
    for (int i = 0; i < INTERNERS; i++) assert_int_equal(w[i].errors, 0);
    for (int n = 0; n < NAMES; n++) {
        ouro_object *o = w[0].got[n];
        for (int i = 1; i < INTERNERS; i++) assert_ptr_equal(w[i].got[n], o);
        char name[48];
        snprintf(name, sizeof name, "intern-name-%d-\xc3\xa9", n);
        assert_int_equal(ouro_str_eq_cstr(o, name), 1);
        assert_true(ouro_is_immortal(o));
        assert_int_equal(ouro_str_is_interned(o), 1);
        assert_ptr_equal(ouro_str_intern_cstr(name), o); /* and from this thread too */
    }
    /* every loser's str freed: one per name left (the exited threads' frees are counted already) */
    assert_int_equal(str_live(), base + NAMES);
}

/* fork(): the child finds what the parent interned (same objects) and interns more, growing the table
 * (liburcu's fork handling, run by ouro's, pauses the resize worker and restarts it in the child). */
static int intern_in_child(ouro_object *known) {
    char name[48];
    snprintf(name, sizeof name, "intern-name-%d-\xc3\xa9", 5);
    if (ouro_str_intern_cstr(name) != known) return 1;
    ouro_object *first[2000];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "intern-child-%d", i);
        if (!(first[i] = ouro_str_intern_cstr(name))) return 2;
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "intern-child-%d", i);
        ouro_object *s = ouro_str_from_cstr(name);
        ouro_object *again = s ? ouro_str_intern(s) : NULL;
        if (again != first[i] || ouro_str_eq_cstr(again, name) != 1) return 3;
        ouro_decref(s);
    }
    return 0;
}

static void test_intern_fork(void **state) {
    char name[48];
    snprintf(name, sizeof name, "intern-name-%d-\xc3\xa9", 5);
    ouro_object *known = ouro_str_intern_cstr(name);
    assert_non_null(known);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(intern_in_child(known));
    assert_true(pid > 0);
    int status = 0;
    ouro_offline_begin();
    waitpid(pid, &status, 0);
    ouro_offline_end();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- main --------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--hash") == 0) { /* child_hash() runs this */
        printf("%llx\n", (unsigned long long)ouro_hash_bytes(argv[2], strlen(argv[2])));
        return 0;
    }
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 1;
    exe[n] = '\0';
    self_exe = exe;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_set_seed), /* first: before any hash */
        cmocka_unit_test(test_siphash13_vectors),
        cmocka_unit_test(test_hash_bytes),
        cmocka_unit_test(test_hash_distribution),
        cmocka_unit_test(test_utf8_validation),
        cmocka_unit_test(test_str_basics),
        cmocka_unit_test(test_str_empty_singleton),
        cmocka_unit_test(test_str_large),
        cmocka_unit_test(test_str_concat),
        cmocka_unit_test(test_str_slice),
        cmocka_unit_test(test_str_compare),
        cmocka_unit_test(test_str_eq_cstr_find_affixes),
        cmocka_unit_test(test_str_repr),
        cmocka_unit_test(test_str_hash_cached),
        cmocka_unit_test(test_str_hash_race),
        cmocka_unit_test(test_str_nomem),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_bytes_repr),
        cmocka_unit_test(test_intern_basics),
        cmocka_unit_test(test_intern_foreign_owner),
        cmocka_unit_test(test_intern_concurrent),
        cmocka_unit_test(test_intern_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
