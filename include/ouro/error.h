/* ouro/error.h — errors and the fatal handler.
 *
 * Public functions report bad input and resource failures the same way: an object or pointer result
 * is NULL, an int result is -1, and the calling thread's error (a code and a readable message) is set.
 * The error stays set until ouro_err_clear() or the next error; successful calls do not clear it.
 *
 * Corruption that makes going on unsafe (a double free, a damaged free list, an overwritten canary)
 * is not an error but a fatal event: ouro prints one line with the address and what it knows about
 * the block, calls the fatal handler if one is set, then aborts. */
#ifndef OURO_ERROR_H
#define OURO_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. 0 means no error. */
typedef enum ouro_err {
    OURO_OK = 0,
    OURO_ERR_NOMEM = 1,    /* the OS refused memory */
    OURO_ERR_OVERFLOW = 2, /* a size computation overflowed */
    OURO_ERR_INVALID = 3,  /* an argument is not valid (e.g. a pointer ouro did not allocate) */
    OURO_ERR_STATE = 4,    /* the call is not allowed in the current state */
    OURO_ERR_TYPE = 5,     /* an object of the wrong type (or an unhashable key) */
    OURO_ERR_INDEX = 6,    /* an index out of range, or pop from an empty container */
    OURO_ERR_KEY = 7,      /* a key that is not in the dict or set */
    OURO_ERR_VALUE = 8,    /* a value of the right type that is not acceptable (invalid UTF-8, ...) */
} ouro_err;

/* The calling thread's current error code, OURO_OK when none is set. */
ouro_err ouro_err_occurred(void);

/* The calling thread's current error message: a NUL-terminated string owned by ouro, valid until the
 * thread's next error or ouro_err_clear(); "" when no error is set. Never NULL. */
const char *ouro_err_message(void);

/* Clears the calling thread's error. */
void ouro_err_clear(void);

/* Called on a fatal event with a one-line description (no trailing newline) before ouro aborts. The
 * handler may log and may not return normally (e.g. longjmp out of a test); if it returns, ouro
 * aborts. It must not call ouro. */
typedef void (*ouro_fatal_handler)(const char *message, void *arg);

/* Installs the fatal handler (NULL restores the default: print to stderr and abort). Returns the
 * previous handler. */
ouro_fatal_handler ouro_set_fatal_handler(ouro_fatal_handler handler, void *arg);

/* Returns 0 when the library was built with the same configuration as the ouro/config.h this program
 * was compiled with (debug level, hardening, torture, sanitizer, refcount mode), else -1 with
 * OURO_ERR_STATE. */
int ouro_config_check_(int debug_level, int hardened, int torture, int tsan, int refcount_atomic);
#define ouro_config_check() \
    ouro_config_check_(OURO_DEBUG_LEVEL, OURO_HARDENED, OURO_TORTURE, OURO_TSAN, OURO_REFCOUNT_ATOMIC)

#ifdef __cplusplus
}
#endif
#endif /* OURO_ERROR_H */
