/* ouro.h — the umbrella header of ouro, a concurrent runtime core.
 *
 * Include this one header. It pulls in the generated build configuration (ouro/config.h), the error
 * and fatal-handler API (ouro/error.h), the allocator (ouro/alloc.h), threads (ouro/threads.h), the object
 * lock (ouro/lock.h) and objects (ouro/object.h). Later modules (gc) add their headers here. Every public symbol is named ouro_* / OURO_*. */
#ifndef OURO_H
#define OURO_H

#include "ouro/config.h"
#include "ouro/error.h"
#include "ouro/alloc.h"
#include "ouro/threads.h"
#include "ouro/lock.h"
#include "ouro/object.h"

#endif /* OURO_H */
