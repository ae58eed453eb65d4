/* ouro/weakref.h — placeholder: written by the issue-4 work in progress. */
#ifndef OURO_WEAKREF_H
#define OURO_WEAKREF_H
#include "ouro/object.h"
#endif
