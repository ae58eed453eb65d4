/* ouro/dict.h — placeholder: written by the issue-4 work in progress. */
#ifndef OURO_DICT_H
#define OURO_DICT_H
#include "ouro/object.h"
#endif
