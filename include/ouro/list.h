/* ouro/list.h — placeholder: written by the issue-4 work in progress. */
#ifndef OURO_LIST_H
#define OURO_LIST_H
#include "ouro/object.h"
#endif
