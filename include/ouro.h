/* ouro.h — the umbrella header of ouro, a concurrent runtime core.
 *
 * Include this one header. It pulls in the generated build configuration (ouro/config.h), the error
 * and fatal-handler API (ouro/error.h) and the allocator (ouro/alloc.h). Later modules (threads, core
 * objects, gc) add their headers here. Every public symbol is named ouro_* / OURO_*. */
#ifndef OURO_H
#define OURO_H

#include "ouro/config.h"
#include "ouro/error.h"
#include "ouro/alloc.h"

#endif /* OURO_H */
