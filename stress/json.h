/* stress/json.h — the one JSON string writer of the harnesses (ouro-stress and ouro-bench include it). */
#ifndef OURO_STRESS_JSON_H
#define OURO_STRESS_JSON_H

#include <stdio.h>

/* Writes s to f as a JSON string literal: quotes, backslash escapes, control characters as \u00XX. */
static inline void json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

#endif /* OURO_STRESS_JSON_H */
