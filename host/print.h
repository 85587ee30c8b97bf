/* print.h - writing Redis's bytes for people and for scripts: the
 * subcommands' tables and JSON. */
#ifndef RSG_PRINT_H
#define RSG_PRINT_H

#include <stddef.h>
#include <stdio.h>

#include "types.h"

/* Writes s for a terminal: control bytes as \n, \t or \xNN, the rest as
 * is (UTF-8 stays readable). Returns the number of columns written, counting
 * each byte as one. With out NULL only counts. */
size_t rsgPrintVisible(FILE *out, rsgStr s);

/* Writes s as a JSON string: quote, backslash and control bytes escaped;
 * other bytes as they are (so bytes that are not UTF-8 stay so). */
void rsgPrintJsonString(FILE *out, rsgStr s);

#endif
