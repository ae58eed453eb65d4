/* tests/test_misuse.c — misuse that debug builds (debug level >= 1) catch, each a death test in a forked
 * child whose message must name the problem, the type and the address. Skipped at level 0. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define NEED_DEBUG()                                                                         \
    do {                                                                                     \
        if (OURO_DEBUG_LEVEL < 1) {                                                          \
            fprintf(stderr, "skipped: the check needs debug level >= 1 (this build: %d)\n", \
                    OURO_DEBUG_LEVEL);                                                       \
            skip();                                                                          \
        }                                                                                    \
    } while (0)

/* An address as the message prints it (%p). */
static const char *addr(const void *p) {
    static char buf[32];
    snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

static ouro_object *victim;

/* ---- the same thread takes an object lock twice -------------------------------------------------------- */
static void child_lock_twice(void) {
    ouro_lock(&victim->lock);
    ouro_lock(&victim->lock); /* not recursive: would spin and park for ever */
    _exit(0);
}

static void test_lock_twice(void **state) {
    NEED_DEBUG();
    victim = ouro_list_new(0);
    char want[96];
    snprintf(want, sizeof want, "already holds lock %p (the lock of list object %s)", (void *)&victim->lock, addr(victim));
    test_expect_abort(child_lock_twice, want);
    ouro_decref(victim);
}

/* ---- the holder of a stop waits for an object lock a parked thread holds ---------------------------- */
static atomic_int holder_ready;

static void *hold_and_poll(void *arg) {
    (void)arg;
    ouro_thread_attach();
    ouro_lock(&victim->lock);
    atomic_store(&holder_ready, 1);
    for (;;) ouro_safepoint(); /* parks at the stop, the lock held */
    return NULL;
}

static void child_stop_then_lock(void) {
    alarm(20);
    ouro_thread_attach();
    pthread_t t;
    pthread_create(&t, NULL, hold_and_poll, NULL);
    while (!atomic_load(&holder_ready)) ouro_safepoint();
    ouro_stop_the_world("misuse");
    ouro_lock(&victim->lock); /* a deadlock: caught */
    _exit(0);
}

static void test_stop_holder_waits_for_lock(void **state) {
    NEED_DEBUG();
    victim = ouro_dict_new();
    char want[96];
    snprintf(want, sizeof want, "holder of a stop of the world waits for lock %p (the lock of dict object %s)",
             (void *)&victim->lock, addr(victim));
    test_expect_abort(child_stop_then_lock, want);
    ouro_decref(victim);
}

/* ---- an object API inside an offline section ---------------------------------------------------------- */
static void child_offline_append(void) {
    ouro_thread_attach();
    ouro_offline_begin();
    ouro_list_append(victim, OURO_NONE);
    _exit(0);
}

static void test_object_api_offline(void **state) {
    NEED_DEBUG();
    victim = ouro_list_new(0);
    char want[128];
    snprintf(want, sizeof want, "ouro_list_append: called inside an offline section on list object %s", addr(victim));
    test_expect_abort(child_offline_append, want);
    ouro_decref(victim);
}

static void child_offline_new(void) {
    ouro_thread_attach();
    ouro_offline_begin();
    ouro_dict_new();
    _exit(0);
}

static void test_object_new_offline(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_offline_new, "ouro_new: called inside an offline section");
}

/* ---- a traverse that visits a freed object ------------------------------------------------------------ */
static ouro_object *borrowed; /* what the broken type's instance points at without owning it */

static int bad_traverse(ouro_object *self, ouro_visitproc visit, void *arg) {
    (void)self;
    return visit(borrowed, arg);
}

static void child_traverse_freed(void) {
    ouro_type_spec spec = {.name = "broken", .basic_size = sizeof(ouro_object), .flags = OURO_TYPE_GC, .traverse = bad_traverse};
    ouro_type *t = ouro_type_new(&spec);
    ouro_object *o = ouro_new(t);
    borrowed = ouro_list_new(0);
    ouro_decref(borrowed); /* freed; the broken instance still "refers" to it */
    ouro_gc_collect(0);
    (void)o;
    _exit(0);
}

static void test_traverse_visits_freed(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_traverse_freed, "the traverse of broken object");
    test_expect_abort(child_traverse_freed, ", a freed block");
}

/* ---- ouro_free of an object's block -------------------------------------------------------------------- */
static void child_free_object(void) {
    ouro_free(victim); /* an object: its reference must be dropped with ouro_decref */
    _exit(0);
}

static void test_free_of_object(void **state) {
    NEED_DEBUG();
    victim = ouro_dict_new();
    char want[96];
    snprintf(want, sizeof want, "ouro_free: %s is a dict object", addr(victim));
    test_expect_abort(child_free_object, want);
    ouro_decref(victim);
}

/* ---- decref after ouro_fini ---------------------------------------------------------------------------- */
static void child_decref_after_fini(void) {
    ouro_thread_attach();
    ouro_object *l = ouro_list_new(0);
    if (ouro_fini() != 0) _exit(2);
    ouro_decref(l);
    _exit(0);
}

static void test_decref_after_fini(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_decref_after_fini, "list object");
    test_expect_abort(child_decref_after_fini, "dropped after ouro_fini");
}

/* After ouro_fini, starting again makes old objects usable: no report. */
static void child_decref_after_init(void) {
    ouro_thread_attach();
    ouro_object *l = ouro_list_new(0);
    if (ouro_fini() != 0 || ouro_init(NULL) != 0) _exit(2);
    ouro_decref(l);
    _exit(0);
}

static void test_decref_after_init_again(void **state) { test_expect_child_ok(child_decref_after_init); }

/* ---- a lock released by a thread that does not hold it; a thread that leaves holding one -------------- */
static atomic_int locker_ready;

static void *lock_and_wait(void *arg) {
    (void)arg;
    ouro_thread_attach();
    ouro_lock(&victim->lock);
    atomic_store(&locker_ready, 1);
    ouro_offline_begin();
    for (;;) pause();
    return NULL;
}

static void child_unlock_other(void) {
    alarm(20);
    ouro_thread_attach();
    pthread_t t;
    pthread_create(&t, NULL, lock_and_wait, NULL);
    while (!atomic_load(&locker_ready)) ouro_safepoint();
    ouro_unlock(&victim->lock); /* the other thread's lock */
    _exit(0);
}

static void test_unlock_by_other_thread(void **state) {
    NEED_DEBUG();
    victim = ouro_list_new(0);
    char want[128];
    snprintf(want, sizeof want, "ouro_unlock: the calling thread does not hold lock %p (the lock of list object %s)",
             (void *)&victim->lock, addr(victim));
    test_expect_abort(child_unlock_other, want);
    ouro_decref(victim);
}

static void child_detach_holding(void) {
    ouro_thread_attach();
    ouro_lock(&victim->lock);
    ouro_thread_detach();
    _exit(0);
}

static void *lock_and_exit(void *arg) {
    (void)arg;
    ouro_thread_attach();
    ouro_lock(&victim->lock);
    return NULL; /* the thread-exit hook detaches it */
}

static void child_exit_holding(void) {
    pthread_t t;
    pthread_create(&t, NULL, lock_and_exit, NULL);
    pthread_join(t, NULL);
    _exit(0);
}

static void child_fini_holding(void) {
    ouro_thread_attach();
    ouro_lock(&victim->lock);
    ouro_fini();
    _exit(0);
}

static void test_leave_holding_lock(void **state) {
    NEED_DEBUG();
    victim = ouro_dict_new();
    char want[128];
    snprintf(want, sizeof want, "detaches (or exits) while holding lock %p (the lock of dict object %s)",
             (void *)&victim->lock, addr(victim));
    test_expect_abort(child_detach_holding, want);
    test_expect_abort(child_exit_holding, want);
    test_expect_abort(child_fini_holding, want);
    ouro_decref(victim);
}

/* ---- the last reference dropped inside an offline section ------------------------------------------- */
static void child_offline_free(void) {
    ouro_thread_attach();
    ouro_object *l = ouro_list_new(0);
    victim = l;
    ouro_offline_begin();
    ouro_decref(l); /* frees it: other threads' collections do not wait for us */
    _exit(0);
}

static void test_free_offline(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_offline_free, "ouro_decref (of the last reference): called inside an offline section on list object");
}

/* ---- an object used after its last reference was dropped --------------------------------------------- */
static void child_use_freed(void) {
    ouro_object *l = ouro_list_new(0);
    victim = l;
    ouro_decref(l);
    ouro_list_append(l, OURO_NONE);
    _exit(0);
}

static void test_use_of_freed_object(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_use_freed, "ouro_list_append: 0x");
    test_expect_abort(child_use_freed, "is a freed object (list): used after its last reference was dropped");
}

/* ---- a freed heap type used again ---------------------------------------------------------------------- */
static void test_type_used_after_free(void **state) {
    NEED_DEBUG();
    ouro_type_spec spec = {.name = "point", .basic_size = sizeof(ouro_object) + 16};
    ouro_type *t = ouro_type_new(&spec);
    assert_non_null(t);
    assert_int_equal(ouro_type_free(t), 0);
    assert_int_equal(ouro_type_free(t), -1);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_non_null(strstr(ouro_err_message(), "('point') was freed already"));
    assert_null(ouro_new(t));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_non_null(strstr(ouro_err_message(), "ouro_new: the type was freed"));
    ouro_err_clear();
}

/* ---- blocks: freed twice, used after free, an object given to ouro_realloc ------------------------------ */
static void child_large_double_free(void) {
    void *p = ouro_alloc(20000); /* a run of pools */
    ouro_free(p);
    ouro_free(p);
    _exit(0);
}

static void child_realloc_object(void) {
    ouro_realloc(victim, 100);
    _exit(0);
}

static void test_block_misuse(void **state) {
    NEED_DEBUG();
    test_expect_abort(child_large_double_free, "ouro_free: double free of large block");
    victim = ouro_list_new(0);
    char want[96];
    snprintf(want, sizeof want, "ouro_realloc: %s is a list object", addr(victim));
    test_expect_abort(child_realloc_object, want);
    ouro_decref(victim);
    /* a freed small block given to realloc and usable_size: an error, nothing done */
    char *p = ouro_alloc(64);
    ouro_free(p);
    ouro_err_clear();
    assert_null(ouro_realloc(p, 100));
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    assert_non_null(strstr(ouro_err_message(), "was freed already"));
    assert_int_equal(ouro_usable_size(p), 0);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
}

/* ---- bad input answered with an error at every debug level ----------------------------------------------- */
static void test_bad_input_any_level(void **state) {
    /* addresses below any arena, and one inside the program's data: reported and ignored */
    static char data[64];
    void *bad[] = {(void *)0x10, (void *)0x12340, (void *)(uintptr_t)(1u << 20), data + 16};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ouro_err_clear();
        ouro_free(bad[i]);
        assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
        assert_null(ouro_realloc(bad[i], 8));
        assert_int_equal(ouro_usable_size(bad[i]), 0);
    }
    /* sizes that would wrap around when the slots are laid out */
    const char *slots[] = {"x", "y", NULL};
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 6, SIZE_MAX - 15, (size_t)OURO_OBJECT_MAX_SIZE + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        ouro_type_spec spec = {.name = "huge", .basic_size = sizes[i]};
        assert_null(ouro_type_new(&spec));
        assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
        spec.slots = slots;
        assert_null(ouro_type_new(&spec));
        assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    }
    ouro_err_clear();
    assert_int_equal(ouro_debug_fault_pending((ouro_fault)OURO_FAULT_KINDS), 0);
    assert_int_equal(ouro_err_occurred(), OURO_ERR_INVALID);
    ouro_err_clear();
}

/* A lock taken and released, then taken again: no report (the tracking forgets released locks). */
static void test_lock_relock_fine(void **state) {
    ouro_object *l = ouro_list_new(0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ouro_lock(&l->lock), 0);
        assert_int_equal(ouro_unlock(&l->lock), 0);
        assert_true(ouro_lock_try(&l->lock));
        assert_int_equal(ouro_unlock(&l->lock), 0);
    }
    ouro_decref(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_relock_fine),
        cmocka_unit_test(test_lock_twice),
        cmocka_unit_test(test_stop_holder_waits_for_lock),
        cmocka_unit_test(test_object_api_offline),
        cmocka_unit_test(test_object_new_offline),
        cmocka_unit_test(test_traverse_visits_freed),
        cmocka_unit_test(test_free_of_object),
        cmocka_unit_test(test_decref_after_fini),
        cmocka_unit_test(test_decref_after_init_again),
        cmocka_unit_test(test_unlock_by_other_thread),
        cmocka_unit_test(test_leave_holding_lock),
        cmocka_unit_test(test_free_offline),
        cmocka_unit_test(test_use_of_freed_object),
        cmocka_unit_test(test_type_used_after_free),
        cmocka_unit_test(test_block_misuse),
        cmocka_unit_test(test_bad_input_any_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
