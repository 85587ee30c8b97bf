/* print.c - see print.h. */
#include "print.h"

#include <string.h>

/* See print.h. Control bytes as \n, \t or \xNN, the rest as
 * is (UTF-8 stays readable). Returns the number of columns written, counting
 * each byte as one. With out NULL only counts. */
size_t rsgPrintVisible(FILE *out, rsgStr s) {
    size_t w = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        char buf[8];
        if (ch == '\n')
            strcpy(buf, "\\n");
        else if (ch == '\t')
            strcpy(buf, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            snprintf(buf, sizeof(buf), "\\x%02x", ch);
        else {
            buf[0] = (char)ch;
            buf[1] = '\0';
        }
        if (out) fputs(buf, out);
        w += strlen(buf);
    }
    return w;
}

/* Writes s as a JSON string: quote, backslash and control bytes escaped;
 * other bytes as they are (so bytes that are not UTF-8 stay so). */
void rsgPrintJsonString(FILE *out, rsgStr s) {
    fputc('"', out);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}
