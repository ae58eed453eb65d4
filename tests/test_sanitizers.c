/* tests/test_sanitizers.c — the memory checkers see ouro's blocks (alloc/sanitize.h, docs/building.md):
 * ASan reports a use after free and an overflow of an ouro block (death tests in a forked child: the
 * asan step runs with abort_on_error=1), memcheck counts a use after free (the memcheck step), and
 * OURO_LEAK_CHECK lists what is live at exit. Each test skips, saying why, in a build without its
 * checker. */
#include "testutil.h"

#include "ouro/config.h"
#if OURO_VALGRIND
#include <valgrind/memcheck.h>
#endif

/* Skips the calling test, saying why (cmocka's skip() says nothing). */
#define test_skip(why)                                       \
    do {                                                     \
        fprintf(stderr, "  skipped: %s\n", why);             \
        skip();                                              \
    } while (0)

/* A read the compiler must keep. */
static unsigned char touch(const volatile unsigned char *p) { return *p; }

/* ---- ASan ---------------------------------------------------------------------------------------------- */

static void child_use_after_free(void) {
    unsigned char *p = ouro_alloc(64), *keep = ouro_alloc(64); /* keep: the pool stays in use */
    memset(p, 1, 64);
    ouro_free(p);
    touch(p + 10);
    ouro_free(keep);
}

static void child_list_items_after_free(void) {
    ouro_object *l = ouro_list_new(4), *f = ouro_float_from(2.5), *keep = ouro_float_from(1.0);
    assert_int_equal(ouro_list_append(l, f), 0);
    ouro_decref(f);            /* the list holds the only reference */
    ouro_decref(l);            /* frees the list, then its item */
    touch((unsigned char *)f + 32); /* the float's value, past the header words that stay addressable */
    ouro_decref(keep);
}

static void child_freed_list_body(void) {
    ouro_object *l = ouro_list_new(4), *keep = ouro_list_new(0);
    ouro_decref(l);
    touch((unsigned char *)l + sizeof(ouro_object)); /* the list's array pointer */
    ouro_decref(keep);
}

static void child_one_byte_overflow(void) {
    unsigned char *p = ouro_alloc(40);
    p[40] = 1;
    ouro_free(p);
}

static void child_large_overflow(void) {
    unsigned char *p = ouro_alloc(100000);
    touch(p + 100000);
    ouro_free(p);
}

static void test_asan_reports_ouro_blocks(void **state) {
    if (!TEST_ASAN) test_skip("not an ASan build (./zigw build asan runs these)");
    test_expect_abort(child_use_after_free, "ouro: read after free: byte 10 of free block");
    test_expect_abort(child_use_after_free, "AddressSanitizer: use-after-poison");
    test_expect_abort(child_list_items_after_free, "ouro: read after free: byte 32 of free object block");
    test_expect_abort(child_freed_list_body, "ouro: read after free: byte 32 of free object block");
    test_expect_abort(child_one_byte_overflow, "ouro: buffer overflow: write at byte 40 of block");
    test_expect_abort(child_large_overflow, "ouro: buffer overflow: read at byte 100000 of large block");
}

/* ---- memcheck -------------------------------------------------------------------------------------------- */

#if OURO_VALGRIND
static void child_memcheck_use_after_free(void) {
    unsigned char *p = ouro_alloc(64), *keep = ouro_alloc(64);
    memset(p, 1, 64);
    ouro_free(p);
    unsigned before = VALGRIND_COUNT_ERRORS;
    touch(p + 10);
    unsigned after = VALGRIND_COUNT_ERRORS;
    fprintf(stderr, "memcheck: %u new error(s)\n", after - before);
    ouro_free(keep);
    _exit(0); /* memcheck's --error-exitcode makes the status 1: the parent reads the line above */
}
#endif

static void test_memcheck_reports_ouro_blocks(void **state) {
#if OURO_VALGRIND
    if (!RUNNING_ON_VALGRIND) test_skip("built with -Dvalgrind=true but not running under valgrind");
    fprintf(stderr, "test_sanitizers: the next memcheck error (an invalid read of size 1 in a forked child) is expected\n");
    char out[4096];
    test_in_child(child_memcheck_use_after_free, out, sizeof out);
    if (!strstr(out, "memcheck: 1 new error(s)")) fprintf(stderr, "child said: %s\n", out);
    assert_non_null(strstr(out, "memcheck: 1 new error(s)"));
#else
    test_skip("built without -Dvalgrind=true (./zigw build memcheck runs it)");
#endif
}

/* ---- OURO_LEAK_CHECK -------------------------------------------------------------------------------------- */

typedef struct {
    ouro_object head;
    long payload;
} leaky;
static ouro_type leaky_type = {.head = OURO_TYPE_HEAD, .name = "leaky_thing", .basic_size = sizeof(leaky)};

static void child_leaks(void) {
    setenv("OURO_LEAK_CHECK", "1", 1);
    leaky *l = (leaky *)ouro_new(&leaky_type);
    assert_non_null(l);
    l->payload = 42; /* never dropped */
    exit(0);         /* exit handlers run: the leak check among them */
}

static void child_leaks_exit_status(void) {
    setenv("OURO_LEAK_CHECK", "exit", 1);
    assert_non_null(ouro_new(&leaky_type));
    exit(0);
}

static void test_leak_check_lists_live_objects(void **state) {
    char out[8192];
    int status = test_in_child(child_leaks, out, sizeof out);
    if (!strstr(out, "type leaky_thing: 1 objects live")) fprintf(stderr, "child status %d, said: %s\n", status, out);
    assert_non_null(strstr(out, "ouro: leak check: "));
    assert_non_null(strstr(out, "type leaky_thing: 1 objects live (1 made, 0 freed)"));
    status = test_in_child(child_leaks_exit_status, out, sizeof out);
    /* Under memcheck too: its leak report lists the object but does not count as an error
     * (--errors-for-leak-kinds=none), so OURO_LEAK_CHECK=exit's status is the child's. */
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 23);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_asan_reports_ouro_blocks),
        cmocka_unit_test(test_memcheck_reports_ouro_blocks),
        cmocka_unit_test(test_leak_check_lists_live_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
