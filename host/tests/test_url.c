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
    char err[512];
    CHECK(rsgUrlParse("http://h:1", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "redis://") != NULL);
    /* A wrong scheme is quoted whole, its password masked. */
    CHECK(rsgUrlParse("https://user:secret@host:6379/0", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "secret") == NULL);
    CHECK(strstr(err, "'https://user:***@host:6379/0'") != NULL);
    CHECK(rsgUrlParse("redis//secret@h", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "secret") == NULL);
    /* A query parameter nobody reads is an error, not silence. */
    CHECK(rsgUrlParse("redis://:pw@h:1/0?timeout=5&password=hunter2", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "'timeout'") != NULL);
    CHECK(strstr(err, "hunter2") == NULL && strstr(err, ":pw@") == NULL);
    CHECK(rsgUrlParse("redis://h:1?db=3", &u, err, sizeof(err)) == 0 && u.db == 3);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("redis://h1:1,h2:2", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "sentinel") != NULL);
    CHECK(rsgUrlParse("redis://h:99999", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis://h:port", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis://h:1/x", &u, err, sizeof(err)) == -1);
}

static void tlsAndSentinel(void) {
    rsgRedisUrl u;
    char err[512], buf[512];
    CHECK(rsgUrlParse("rediss://:pw@cache.example:6380/1", &u, err, sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.port == 6380 && u.db == 1);
    rsgUrlFormat(&u, buf, sizeof(buf));
    CHECK_STR(buf, "rediss://:***@cache.example:6380/1");
    rsgUrlFree(&u);

    CHECK(rsgUrlParse("redis+sentinel://app:pw@s1,s2:26380,[::1]:26381/mymaster/2"
                      "?sentinel_password=sp%21",
                      &u, err, sizeof(err)) == 0);
    CHECK(u.nsentinels == 3 && u.host == NULL && u.tls == 0);
    CHECK_STR(u.sentinels[0].host, "s1");
    CHECK(u.sentinels[0].port == RSG_SENTINEL_PORT);
    CHECK(u.sentinels[1].port == 26380);
    CHECK_STR(u.sentinels[2].host, "::1");
    CHECK_STR(u.master, "mymaster");
    CHECK(u.db == 2);
    CHECK_STR(u.user, "app");
    CHECK_STR(u.password, "pw");
    CHECK_STR(u.sentinel_password, "sp!");
    rsgUrlFormat(&u, buf, sizeof(buf));
    CHECK_STR(buf, "redis+sentinel://app:***@s1:26379,s2:26380,[::1]:26381/mymaster/2");
    rsgUrlFree(&u);

    CHECK(rsgUrlParse("rediss+sentinel://s1/m", &u, err, sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.nsentinels == 1 && u.db == 0);
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("redis+sentinel://s1:26379", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "MASTER") != NULL);
    CHECK(rsgUrlParse("redis+sentinel://s1,,s2/m", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis://h/0?sentinel_password=x", &u, err, sizeof(err)) == -1);
}

static void cluster(void) {
    rsgRedisUrl u;
    char err[512], buf[512];
    CHECK(rsgUrlParse("redis+cluster://app:pw@10.0.0.1:7000,node-b,[::1]:7002", &u, err,
                      sizeof(err)) == 0);
    CHECK(u.cluster == 1 && u.nseeds == 3 && u.host == NULL && u.nsentinels == 0);
    CHECK_STR(u.seeds[0].host, "10.0.0.1");
    CHECK(u.seeds[0].port == 7000);
    CHECK_STR(u.seeds[1].host, "node-b");
    CHECK(u.seeds[1].port == 6379);
    CHECK_STR(u.seeds[2].host, "::1");
    CHECK(u.seeds[2].port == 7002);
    CHECK_STR(u.user, "app");
    CHECK_STR(u.password, "pw");
    CHECK(u.db == 0 && u.tls == 0);
    rsgUrlFormat(&u, buf, sizeof(buf));
    CHECK_STR(buf, "redis+cluster://app:***@10.0.0.1:7000,node-b:6379,[::1]:7002");
    rsgUrlFree(&u);
    CHECK(u.nseeds == 0 && u.seeds == NULL && u.cluster == 0);

    CHECK(rsgUrlParse("rediss+cluster://:s%40cret@c1:6380", &u, err, sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.cluster == 1 && u.nseeds == 1);
    CHECK_STR(u.password, "s@cret");
    rsgUrlFree(&u);
    CHECK(rsgUrlParse("redis+cluster://c1:7000/0", &u, err, sizeof(err)) == 0);
    rsgUrlFree(&u);
    /* A cluster has database 0 only: any other is refused, not ignored. */
    CHECK(rsgUrlParse("redis+cluster://:pw@c1:7000/3", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "only database 0") != NULL && strstr(err, "pw") == NULL);
    CHECK(rsgUrlParse("redis+cluster://c1:7000?db=2", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis+cluster://c1,,c2", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "cluster nodes") != NULL);
    CHECK(rsgUrlParse("redis+cluster://c1?sentinel_password=x", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis+cluster://c1:0", &u, err, sizeof(err)) == -1);
    CHECK(rsgUrlParse("redis+clusters://c1", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "redis+cluster://") != NULL);
    char r[] = "redis+cluster://u:topsecret@a:1,b:2";
    rsgUrlScrub(r);
    CHECK_STR(r, "redis+cluster://u:*********@a:1,b:2");
}

static void redactsAnything(void) {
    char buf[256];
    rsgUrlRedact("redis://u:p@h/0", buf, sizeof(buf));
    CHECK_STR(buf, "redis://u:***@h/0");
    rsgUrlRedact("lonesecret@h", buf, sizeof(buf));
    CHECK_STR(buf, "***@h");
    rsgUrlRedact("redis+sentinel://s/m?sentinel_password=abc&db=1", buf, sizeof(buf));
    CHECK_STR(buf, "redis+sentinel://s/m?sentinel_password=***&db=1");
    rsgUrlRedact("redis://h:1/0", buf, sizeof(buf));
    CHECK_STR(buf, "redis://h:1/0");
}

static void scrubsPasswordInPlace(void) {
    char a[] = "redis://user:topsecret@h:1/0";
    rsgUrlScrub(a);
    CHECK_STR(a, "redis://user:*********@h:1/0");
    char b[] = "redis://h:1/0";
    rsgUrlScrub(b);
    CHECK_STR(b, "redis://h:1/0");
    char c[] = "redis+sentinel://:pw@s/m?sentinel_password=xyz";
    rsgUrlScrub(c);
    CHECK_STR(c, "redis+sentinel://:**@s/m?sentinel_password=***");
}

/* Found by fuzz/fuzz_url: the redactor stopped at '#' where the parser did
 * not, so a password after or holding a '#' showed in errors and in ps. */
static void hashNeverRevealsPassword(void) {
    rsgRedisUrl u;
    char err[256], buf[256];
    CHECK(rsgUrlParse("redis://:q7#k9@host", &u, err, sizeof(err)) == -1);
    CHECK(strstr(err, "q7") == NULL && strstr(err, "k9") == NULL && strstr(err, "%23") != NULL);
    CHECK(rsgUrlParse("redis+sentinel://h/m?sentinel_user=a#&sentinel_password=s3cret", &u, err,
                      sizeof(err)) == -1);
    CHECK(strstr(err, "s3cret") == NULL);
    rsgUrlRedact("redis+sentinel://h/m?sentinel_user=a#&sentinel_password=s3cret", buf,
                 sizeof(buf));
    CHECK(strstr(buf, "s3cret") == NULL);
    char argv[] = "redis://:pa#ss@host";
    rsgUrlScrub(argv);
    CHECK_STR(argv, "redis://:*****@host");
    CHECK(rsgUrlParse("redis://:p%23ss@h", &u, err, sizeof(err)) == 0);
    CHECK_STR(u.password, "p#ss");
    rsgUrlFree(&u);
}

int main(void) {
    parsesFullTcpUrl();
    appliesDefaults();
    passwordOnlyAndEscapes();
    ipv6AndUnix();
    rejectsGarbage();
    tlsAndSentinel();
    cluster();
    redactsAnything();
    scrubsPasswordInPlace();
    hashNeverRevealsPassword();
    TEST_DONE();
}
