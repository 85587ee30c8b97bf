/* fuzz_url.c - the URL parser (host/url.c) on any bytes.
 *
 * Besides memory safety (the sanitizers), it holds url.h's promises: an
 * error message and a printable form always fit their buffer; a password
 * the parser accepts is always masked, both in the printable form and in
 * what rsgUrlRedact makes of the text the user typed; rsgUrlScrub only
 * overwrites bytes with '*' and never changes the length (argv). */
#include <string.h>

#include "fuzz.h"
#include "url.h"

/* The input as a C string (a URL comes from argv or a script: no NULs). */
static char *cstring(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return NULL;
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = cstring(data, size);
    if (!s) return 0;
    size_t len = strlen(s);

    rsgRedisUrl u;
    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = rsgUrlParse(s, &u, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);

    /* Redaction at a size that fits and at sizes that truncate. */
    size_t rlen = 3 * len + 64;
    char *red = malloc(rlen);
    FUZZ_CHECK(red != NULL);
    rsgUrlRedact(s, red, rlen);
    FUZZ_CHECK(strlen(red) < rlen);
    char tiny[5];
    for (size_t n = 1; n <= sizeof(tiny); n++) {
        rsgUrlRedact(s, tiny, n);
        FUZZ_CHECK(strlen(tiny) < n);
    }

    if (rc == -1) {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    } else {
        char buf[1024];
        rsgUrlFormat(&u, buf, sizeof(buf));
        FUZZ_CHECK(strlen(buf) < sizeof(buf));
        for (size_t n = 1; n <= sizeof(tiny); n++) {
            rsgUrlFormat(&u, tiny, n);
            FUZZ_CHECK(strlen(tiny) < n);
        }
        /* A password that was given shows as *** in both forms. */
        int secret =
            (u.password && u.password[0]) || (u.sentinel_password && u.sentinel_password[0]);
        if (secret) FUZZ_CHECK(strstr(red, "***") != NULL);
        if (u.password && u.password[0] && strlen(buf) + 1 < sizeof(buf))
            FUZZ_CHECK(strstr(buf, "***") != NULL);
        FUZZ_CHECK(u.port >= 0 && u.port <= 65535);
        FUZZ_CHECK(u.nsentinels == 0 || u.sentinels != NULL);
        FUZZ_CHECK((u.host != NULL) + (u.path != NULL) + (u.nsentinels > 0) == 1);
        rsgUrlFree(&u);
    }

    /* Scrubbing overwrites secrets in place and nothing else. */
    char *scrubbed = cstring(data, size);
    FUZZ_CHECK(scrubbed != NULL);
    rsgUrlScrub(scrubbed);
    FUZZ_CHECK(strlen(scrubbed) == len);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(scrubbed[i] == s[i] || scrubbed[i] == '*');
    free(scrubbed);
    free(red);
    free(s);
    return 0;
}
