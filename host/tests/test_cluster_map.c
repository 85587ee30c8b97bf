/* Unit tests of cluster_map.c: key slots against the values the Redis
 * documentation gives (CLUSTER KEYSLOT's page, the cluster specification's
 * hash-tag rules and its CRC16 check value), the slot map from CLUSTER SLOTS
 * and CLUSTER SHARDS replies as a Redis 7 server sends them, and MOVED/ASK
 * redirections. Replies are real hiredis replies, made by hiredis's own
 * reader from RESP text, so the parser sees exactly what the host sees. */
#include <stdlib.h>

#include "cluster_map.h"
#include "test.h"

/* One reply parsed from RESP text by hiredis; free with freeReplyObject. */
static redisReply *resp(const char *text) {
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    redisReaderFeed(r, text, strlen(text));
    if (redisReaderGetReply(r, &reply) != REDIS_OK || !reply) {
        fprintf(stderr, "bad RESP fixture: %s\n", text);
        exit(2);
    }
    redisReaderFree(r);
    return reply;
}

static int slotOf(const char *key) {
    return rsgClusterKeySlot(key, strlen(key));
}

static void crc16MatchesTheSpecification(void) {
    /* The cluster specification's check value for its CRC16 (XMODEM). */
    CHECK(rsgClusterCrc16("123456789", 9) == 0x31C3);
    CHECK(rsgClusterCrc16("", 0) == 0);
}

static void keySlotsAsDocumented(void) {
    /* CLUSTER KEYSLOT's documented examples. */
    CHECK(slotOf("somekey") == 11058);
    CHECK(slotOf("foo{hash_tag}") == 2515);
    CHECK(slotOf("bar{hash_tag}") == 2515);
    /* The specification's hash-tag rules: the first '{', the first '}'
     * after it, and only a non-empty tag counts. */
    CHECK(slotOf("{user1000}.following") == slotOf("user1000"));
    CHECK(slotOf("{user1000}.followers") == slotOf("user1000"));
    CHECK(slotOf("{user1000}.following") == 3443);
    CHECK(slotOf("foo{}{bar}") == (int)(rsgClusterCrc16("foo{}{bar}", 10) & 16383));
    CHECK(slotOf("foo{}{bar}") == 8363);
    CHECK(slotOf("foo{{bar}}zap") == slotOf("{bar"));
    CHECK(slotOf("foo{{bar}}zap") == 4015);
    CHECK(slotOf("foo{bar}{zap}") == slotOf("bar"));
    CHECK(slotOf("foo{bar}{zap}") == 5061);
    /* What README.md tells users: a shared tag puts streams together. */
    CHECK(slotOf("{orders}:eu") == slotOf("{orders}:us"));
    CHECK(slotOf("{orders}:eu") == 105);
    /* Unclosed or lone braces: the whole key. */
    CHECK(slotOf("{") == 4092);
    CHECK(slotOf("a{b") == 13340);
    CHECK(slotOf("") == 0);
    CHECK(slotOf("foo") == 12182);
    /* Binary keys: a NUL inside is part of the key. */
    CHECK(rsgClusterKeySlot("a\0b", 3) != rsgClusterKeySlot("a", 1));
}

/* A three-master, three-replica cluster as redis-cli --cluster create makes
 * it, as CLUSTER SLOTS on Redis 7 answers (with the hostname metadata map). */
static const char *SLOTS3 = "*3\r\n"
                            "*4\r\n:0\r\n:5460\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n$3\r\naaa\r\n*0\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30005\r\n$3\r\nddd\r\n*0\r\n"
                            "*4\r\n:5461\r\n:10922\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30002\r\n$3\r\nbbb\r\n*0\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30006\r\n$3\r\neee\r\n*0\r\n"
                            "*4\r\n:10923\r\n:16383\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30003\r\n$3\r\nccc\r\n*0\r\n"
                            "*4\r\n$9\r\n127.0.0.1\r\n:30004\r\n$3\r\nfff\r\n*0\r\n";

static void mapFromClusterSlots(void) {
    rsgClusterMap m;
    char err[256];
    redisReply *r = resp(SLOTS3);
    CHECK(rsgClusterMapFromSlots(&m, r, "10.0.0.9", err, sizeof(err)) == 0);
    CHECK(m.nnodes == 6);
    CHECK(m.covered == RSG_CLUSTER_SLOTS);
    int a = rsgClusterMapOwner(&m, 0), b = rsgClusterMapOwner(&m, 5461),
        c = rsgClusterMapOwner(&m, 16383);
    CHECK(a >= 0 && b >= 0 && c >= 0);
    CHECK(m.nodes[a].port == 30001 && m.nodes[a].master);
    CHECK_STR(m.nodes[a].id, "aaa");
    CHECK_STR(m.nodes[a].host, "127.0.0.1");
    CHECK(rsgClusterMapOwner(&m, 5460) == a);
    CHECK(m.nodes[b].port == 30002 && m.nodes[c].port == 30003);
    CHECK(rsgClusterMapOwner(&m, 10922) == b && rsgClusterMapOwner(&m, 10923) == c);
    int d = rsgClusterMapFind(&m, "127.0.0.1", 30005);
    CHECK(d >= 0 && !m.nodes[d].master && m.nodes[d].of == a);
    CHECK(rsgClusterMapFind(&m, "127.0.0.1", 30007) == -1);
    CHECK(rsgClusterMapOwner(&m, 16384) == -1 && rsgClusterMapOwner(&m, -1) == -1);
    /* The documented examples land where the ranges say. */
    CHECK(rsgClusterMapOwner(&m, slotOf("somekey")) == c);
    CHECK(rsgClusterMapOwner(&m, slotOf("foo{hash_tag}")) == a);
    rsgClusterMapFree(&m);
    CHECK(m.nnodes == 0 && m.nodes == NULL && rsgClusterMapOwner(&m, 0) == -1);
    rsgClusterMapFree(&m); /* twice is harmless */
    freeReplyObject(r);
}

static void slotsWithUnknownEndpointAndGaps(void) {
    rsgClusterMap m;
    char err[256];
    /* One node, slots 0-5000 only, its host empty (Redis 7: "the node you
     * asked"), as a lone cluster-enabled server answers. */
    redisReply *r =
        resp("*1\r\n*3\r\n:0\r\n:5000\r\n*4\r\n$0\r\n\r\n:17391\r\n$3\r\nxyz\r\n*0\r\n");
    CHECK(rsgClusterMapFromSlots(&m, r, "127.0.0.1", err, sizeof(err)) == 0);
    CHECK(m.nnodes == 1 && m.covered == 5001);
    CHECK_STR(m.nodes[0].host, "127.0.0.1");
    CHECK(rsgClusterMapOwner(&m, 5000) == 0 && rsgClusterMapOwner(&m, 5001) == -1);
    rsgClusterMapFree(&m);
    freeReplyObject(r);
    /* Redis 3-era replies: [host, port] without an id. */
    r = resp("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$4\r\nnode\r\n:7000\r\n");
    CHECK(rsgClusterMapFromSlots(&m, r, "x", err, sizeof(err)) == 0);
    CHECK(m.nnodes == 1 && m.nodes[0].id == NULL && m.covered == RSG_CLUSTER_SLOTS);
    rsgClusterMapFree(&m);
    freeReplyObject(r);
}

static void refusesMalformedSlots(void) {
    rsgClusterMap m;
    char err[256];
    const char *bad[] = {
        ":1\r\n",                                                  /* not an array */
        "*1\r\n*2\r\n:0\r\n:10\r\n",                               /* no master */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",     /* slot out of range */
        "*1\r\n*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n",         /* reversed range */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:0\r\n",         /* port 0 */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n$4\r\n6379\r\n", /* port not an integer */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = resp(bad[i]);
        err[0] = '\0';
        CHECK(rsgClusterMapFromSlots(&m, r, "h", err, sizeof(err)) == -1);
        CHECK(strncmp(err, "CLUSTER SLOTS", 13) == 0);
        CHECK(m.nnodes == 0 && m.nodes == NULL);
        freeReplyObject(r);
    }
    redisReply *r = resp("-ERR This instance has cluster support disabled\r\n");
    CHECK(rsgClusterMapFromSlots(&m, r, "h", err, sizeof(err)) == -1);
    CHECK(strstr(err, "cluster support disabled") != NULL);
    freeReplyObject(r);
}

/* CLUSTER SHARDS, RESP2, two shards: one with two slot ranges and a
 * replica listed before its master, one whose replica has failed. */
static const char *SHARDS2 =
    "*2\r\n"
    "*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:200\r\n:299\r\n$5\r\nnodes\r\n*2\r\n"
    "*14\r\n$2\r\nid\r\n$3\r\nrrr\r\n$4\r\nport\r\n:30004\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n"
    "$18\r\nreplication-offset\r\n:10\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*14\r\n$2\r\nid\r\n$3\r\nmmm\r\n$4\r\nport\r\n:30001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    "$18\r\nreplication-offset\r\n:10\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*4\r\n$5\r\nslots\r\n*2\r\n:100\r\n:199\r\n$5\r\nnodes\r\n*2\r\n"
    "*10\r\n$2\r\nid\r\n$3\r\nnnn\r\n$4\r\nport\r\n:30002\r\n$8\r\nendpoint\r\n$4\r\nhost\r\n"
    "$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*10\r\n$2\r\nid\r\n$3\r\nfff\r\n$4\r\nport\r\n:30005\r\n$8\r\nendpoint\r\n$4\r\nhost\r\n"
    "$4\r\nrole\r\n$7\r\nreplica\r\n$6\r\nhealth\r\n$4\r\nfail\r\n";

static void mapFromClusterShards(void) {
    rsgClusterMap m;
    char err[256];
    redisReply *r = resp(SHARDS2);
    CHECK(rsgClusterMapFromShards(&m, r, "asked", err, sizeof(err)) == 0);
    CHECK(m.nnodes == 3); /* the failed replica is left out */
    CHECK(m.covered == 300);
    int a = rsgClusterMapOwner(&m, 0), b = rsgClusterMapOwner(&m, 150);
    CHECK(a >= 0 && b >= 0 && a != b);
    CHECK(m.nodes[a].port == 30001 && m.nodes[a].master);
    CHECK_STR(m.nodes[a].id, "mmm");
    CHECK_STR(m.nodes[a].host, "127.0.0.1"); /* empty endpoint: the ip */
    CHECK(rsgClusterMapOwner(&m, 250) == a && rsgClusterMapOwner(&m, 300) == -1);
    CHECK_STR(m.nodes[b].host, "host");
    int rep = rsgClusterMapFind(&m, "127.0.0.1", 30004);
    CHECK(rep >= 0 && !m.nodes[rep].master && m.nodes[rep].of == a);
    CHECK(rsgClusterMapFind(&m, "host", 30005) == -1);
    rsgClusterMapFree(&m);
    freeReplyObject(r);
    r = resp("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*0\r\n");
    CHECK(rsgClusterMapFromShards(&m, r, "h", err, sizeof(err)) == -1);
    CHECK(strstr(err, "no master") != NULL);
    freeReplyObject(r);
}

/* The slot cmd routes by, formatted as the host formats commands. */
static int routed(int argc, const char **argv) {
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    int slot = rsgClusterCommandSlot(cmd, (size_t)len);
    redisFreeCommand(cmd);
    return slot;
}

static void commandRouting(void) {
    const char *xack[] = {"XACK", "somekey", "g", "1-1", "1-2"};
    CHECK(routed(5, xack) == 11058);
    const char *rpush[] = {"rpush", "{user1000}.following", "a"};
    CHECK(routed(3, rpush) == 3443);
    /* Scripts: the first key after numkeys; none when numkeys is 0. */
    const char *eval[] = {"EVAL", "return 1", "2", "foo{hash_tag}", "somekey", "arg"};
    CHECK(routed(6, eval) == 2515);
    const char *eval0[] = {"EVALSHA", "abc", "0", "somekey"};
    CHECK(routed(4, eval0) == -1);
    const char *fcall[] = {"FCALL_RO", "f", "1", "somekey"};
    CHECK(routed(4, fcall) == 11058);
    /* Stream reads: the first stream after STREAMS. */
    const char *xrg[] = {
        "XREADGROUP",    "GROUP",         "g", "c", "COUNT", "10", "BLOCK", "100", "streams",
        "foo{hash_tag}", "bar{hash_tag}", ">", ">"};
    CHECK(routed(13, xrg) == 2515);
    const char *xread[] = {"XREAD", "STREAMS", "somekey", "0"};
    CHECK(routed(4, xread) == 11058);
    /* Subcommands: the key comes after them. */
    const char *xgroup[] = {"XGROUP", "CREATE", "somekey", "g", "0", "MKSTREAM"};
    CHECK(routed(6, xgroup) == 11058);
    const char *xinfo[] = {"XINFO", "CONSUMERS", "foo{hash_tag}", "g"};
    CHECK(routed(4, xinfo) == 2515);
    /* Commands of the server or the connection: any master. */
    const char *keyless[][2] = {{"PING", NULL},      {"publish", "somekey"}, {"CLUSTER", "SLOTS"},
                                {"INFO", "somekey"}, {"SCRIPT", "LOAD"},     {"WAIT", "1"}};
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
        CHECK(routed(keyless[i][1] ? 2 : 1, keyless[i]) == -1);
    /* Binary keys route by all their bytes. */
    const char *bin[] = {"GET", "a\0b"};
    size_t lens[] = {3, 3};
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, 2, bin, lens);
    CHECK(rsgClusterCommandSlot(cmd, (size_t)len) == rsgClusterKeySlot("a\0b", 3));
    redisFreeCommand(cmd);
    /* Not RESP: no slot, and no reading past the end. */
    CHECK(rsgClusterCommandSlot("GET x\r\n", 7) == -1);
    CHECK(rsgClusterCommandSlot("*2\r\n$3\r\nGET\r\n$9\r\nsho", 22) == -1);
    CHECK(rsgClusterCommandSlot("", 0) == -1);
    CHECK(rsgClusterCommandIs("*1\r\n$9\r\nsubscribe\r\n", 19, "SUBSCRIBE") == 1);
    CHECK(rsgClusterCommandIs("*1\r\n$4\r\nPING\r\n", 14, "SUBSCRIBE") == 0);
}

static void redirections(void) {
    rsgClusterRedirect d;
    const char *moved = "MOVED 3999 127.0.0.1:6381";
    CHECK(rsgClusterParseRedirect(moved, strlen(moved), &d) == 1);
    CHECK(d.ask == 0 && d.slot == 3999 && d.port == 6381);
    CHECK_STR(d.host, "127.0.0.1");
    const char *ask = "ASK 3999 127.0.0.1:6381";
    CHECK(rsgClusterParseRedirect(ask, strlen(ask), &d) == 1);
    CHECK(d.ask == 1 && d.slot == 3999);
    const char *v6 = "MOVED 16383 ::1:30002";
    CHECK(rsgClusterParseRedirect(v6, strlen(v6), &d) == 1);
    CHECK_STR(d.host, "::1");
    CHECK(d.port == 30002 && d.slot == 16383);
    const char *br = "ASK 0 [fe80::1]:7000";
    CHECK(rsgClusterParseRedirect(br, strlen(br), &d) == 1);
    CHECK_STR(d.host, "fe80::1");
    const char *nohost = "MOVED 12 :30003";
    CHECK(rsgClusterParseRedirect(nohost, strlen(nohost), &d) == 1);
    CHECK_STR(d.host, "");
    CHECK(d.port == 30003);
    /* Only the reply's own length counts. */
    CHECK(rsgClusterParseRedirect(moved, 12, &d) == 0);
    const char *nots[] = {"ERR wrong number of arguments",
                          "MOVED",
                          "MOVED x 1.2.3.4:5",
                          "MOVED 16384 h:1",
                          "MOVED 1 h",
                          "MOVED 1 h:0",
                          "MOVED 1 h:65536",
                          "ASK 1 h:12a",
                          "MOVED 1  h:1x",
                          "CROSSSLOT Keys in request don't hash"};
    for (size_t i = 0; i < sizeof(nots) / sizeof(nots[0]); i++) {
        d.slot = -7;
        CHECK(rsgClusterParseRedirect(nots[i], strlen(nots[i]), &d) == 0);
        CHECK(d.slot == -7);
    }
}

int main(void) {
    crc16MatchesTheSpecification();
    keySlotsAsDocumented();
    mapFromClusterSlots();
    slotsWithUnknownEndpointAndGaps();
    refusesMalformedSlots();
    mapFromClusterShards();
    commandRouting();
    redirections();
    TEST_DONE();
}
