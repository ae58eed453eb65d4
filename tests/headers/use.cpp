/* tests/headers/use.cpp — use.c compiled as C++17 (tests/headers/check.py). */
#include "use.c"
