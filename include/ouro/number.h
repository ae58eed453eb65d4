/* ouro/number.h — placeholder: written by the issue-4 work in progress. */
#ifndef OURO_NUMBER_H
#define OURO_NUMBER_H
#include "ouro/object.h"
#endif
