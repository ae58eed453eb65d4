/* tests/headers/use.c — compiled as C11 and (as use.cpp's include) as C++17 with -Wall -Wextra
 * -pedantic -Werror by tests/headers/check.py: the public headers must compile cleanly as written,
 * and every inline function and macro below is instantiated. */
#include <ouro.h>

static int use_everything(void) {
    ouro_lock_t lock = OURO_LOCK_INIT;
    if (ouro_lock(&lock) != 0 || !ouro_lock_is_held(&lock) || ouro_unlock(&lock) != 0) return 1;
    if (ouro_lock_try(&lock)) (void)ouro_unlock(&lock);
    ouro_safepoint();
    ouro_object *none = OURO_NONE;
    ouro_incref(none);
    ouro_decref(none);
    void *p = ouro_alloc(16);
    ouro_free(p);
    return ouro_config_check();
}

int main(void) { return use_everything(); }
