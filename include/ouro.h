/* ouro.h — the umbrella header of ouro, a concurrent runtime core.
 *
 * Include this one header. It pulls in the generated build configuration (ouro/config.h), the error
 * and fatal-handler API (ouro/error.h), the allocator (ouro/alloc.h), threads (ouro/threads.h), the object
 * lock (ouro/lock.h), objects (ouro/object.h) and the built-in types (ouro/str.h, number.h, list.h, dict.h,
 * weakref.h) and the cycle collector (ouro/gc.h). Every public symbol is named ouro_* / OURO_*. */
#ifndef OURO_H
#define OURO_H

#include "ouro/config.h"
#include "ouro/error.h"
#include "ouro/alloc.h"
#include "ouro/threads.h"
#include "ouro/lock.h"
#include "ouro/object.h"
#include "ouro/str.h"
#include "ouro/number.h"
#include "ouro/list.h"
#include "ouro/dict.h"
#include "ouro/weakref.h"
#include "ouro/gc.h"

#endif /* OURO_H */
