/* core/bytes.c — placeholder: written by the issue-4 work in progress. */
#include "core/objimpl.h"
