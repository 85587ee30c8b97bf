/* Unit tests of url.c: the URL forms users type, and that no error or
 * printable form ever shows the password. */
#include "test.h"
#include "url.h"

static void parsesFullTcpUrl(void) {
    rsgRedisUrl u;
    char err[256];
    CHECK(rsgUrlParse("redis://alice:s3cret@example.org:6380/4", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.host, "example.org");
    CHECK(u.port == 6380);
    CHECK(u.db == 4);
    CHECK_STR(u.user, "alice");
    CHECK_STR(u.password, "s3cret");
    char buf[256];
    rsgUrlFormat(&u, buf, sizeof(buf));
    CHECK(strstr(buf, "s3cret") == NULL);
    CHECK_STR(buf, "redis://alice:***@example.org:6380/4");
    rsgUrlFree(&u);
}

static void appliesDefaults(void) {
    rsgRedisUrl u;
    char err[256];
    CHECK(rsgUrlParse("redis://localhost", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.host, "localhost");
    CHECK(u.port == 6379 && u.db == 0 && u.user == NULL && u.password == NULL);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("redis://", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.host, "127.0.0.1");
    rsgUrlFree(&u);
}

static void passwordOnlyAndEscapes(void) {
    rsgRedisUrl u;
    char err[256];
    CHECK(rsgUrlParse("redis://:p%40ss%3Aw@127.0.0.1:7000/0", &u, err, sizeof(err)) == 0);
    CHECK(u.user == NULL);
    CHECK_STR(u.password, "p@ss:w");
    CHECK(u.port == 7000);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("redis://:bad%zzescape@h", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "bad") == NULL);
}

static void ipv6AndUnix(void) {
    rsgRedisUrl u;
    char err[256];
    CHECK(rsgUrlParse("redis://[::1]:6390/2", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.host, "::1");
    CHECK(u.port == 6390 && u.db == 2);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("unix:///run/redis.sock?db=3", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.path, "/run/redis.sock");
    CHECK(u.host == NULL && u.db == 3);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("unix://relative.sock", &u, err, sizeof(err)) == -1);
}

static void rejectsGarbage(void) {
    rsgRedisUrl u;
    char err[256];
    CHECK(rsgUrlParse("http://h:1", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "redis://") != NULL);
    CHECK(rsgUrlParse("redis://h:99999", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis://h:port", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis://h:1/x", &u, err, sizeof(err)) == -1);
}

static void scrubsPasswordInPlace(void) {
    char a[] = "redis://user:topsecret@h:1/0";
    rsgUrlScrub(a);
    CHECK_STR(a, "redis://user:*********@h:1/0");
    char b[] = "redis://h:1/0";
    rsgUrlScrub(b);
    CHECK_STR(b, "redis://h:1/0");
}

int main(void) {
    parsesFullTcpUrl();
    appliesDefaults();
    passwordOnlyAndEscapes();
    ipv6AndUnix();
    rejectsGarbage();
    scrubsPasswordInPlace();
    TEST_DONE();
}
