/* core/seq.h — what core/tuple.c and core/list.c share: the sequence repr, and
 * a tuple made from references the caller hands over. */
#ifndef OURO_CORE_SEQ_H
#define OURO_CORE_SEQ_H

#include "core/objimpl.h"

/* The item at index i of seq as a new reference, NULL at the end (no error) or on an error (set). */
typedef ouro_object *(*_ouro_seq_item_fn)(ouro_object *seq, size_t i, bool *error);

/* The repr of a sequence: open, the ouro_repr of each item joined by ", ", close; one_comma adds the
 * trailing comma of a 1-tuple. A sequence already being printed by this thread (a list holding itself,
 * directly or not) prints as open "..." close; the guard and its depth limit are core/repr.h's. */
OURO_INTERNAL ouro_object *_ouro_seq_repr(ouro_object *seq, const char *open, const char *close, bool one_comma,
                                          _ouro_seq_item_fn item);

/* A new tuple of the n references in items, which it steals (on failure it drops them). */
OURO_INTERNAL ouro_object *_ouro_tuple_steal_array(size_t n, ouro_object **items);

#endif /* OURO_CORE_SEQ_H */
