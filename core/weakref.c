/* core/weakref.c — placeholder: written by the issue-4 work in progress. */
#include "core/objimpl.h"

/* Placeholder until weak references exist: no object has OURO_OBJ_WEAKREFS set. */
void _ouro_weakref_clear(ouro_object *o) { (void)o; }
