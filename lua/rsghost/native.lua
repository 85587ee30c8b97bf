-- The host's own C rules, for the Lua code that must follow them exactly:
-- the test kit (UTF-8 checks, read sizing, the words of a log line) and
-- rsghost.hiredis (URL parsing). Not a second implementation: the same C
-- sources the host is built from (host/rules.h, host/encoding.h,
-- host/url.h), loaded through the FFI.
--
-- Inside the host the functions come from the executable itself (it exports
-- its symbols). Elsewhere (busted, the kit) from librsghost_rules.so:
-- $RSGHOST_RULES_LIB, or found from this file's own place: beside the
-- installed modules (share/rsghost/lib), or the build tree of a checkout
-- (build/).

local ffi = require "ffi"

ffi.cdef [[
long rsgReadCount(long room, int keys, long count, long read_chunk);
int rsgReadKeys(long room, int keys, long count, long read_chunk);
long rsgReadShare(long room, int keys, long count, long read_chunk);
char *rsgBadFieldWhat(char *buf, size_t len, size_t k, const char *name, size_t nlen,
                      const char *why);
char *rsgBadFieldLine(char *buf, size_t len, const char *stream, size_t slen, const char *id,
                      size_t idlen, size_t k, const char *name, size_t nlen, const char *why,
                      int pending, const char *dead);
char *rsgBadItemLine(char *buf, size_t len, const char *list, const char *proc, const char *item,
                     size_t ilen, const char *why, const char *dead);
char *rsgBadItemWhat(char *buf, size_t len, const char *why);
size_t rsgUtf8Check(const char *s, size_t len);
int rsgUtf8Why(const char *s, size_t len, char *why, size_t whylen);

/* host/url.h; the layout is checked against the C one by a CTest test
   (host/tests/layout_test.lua). */
typedef struct rsgAddr { char *host; int port; } rsgAddr;
typedef struct rsgRedisUrl {
  char *host;
  int port;
  char *path;
  char *user;
  char *password;
  int db;
  int tls;
  rsgAddr *sentinels;
  int nsentinels;
  char *master;
  char *sentinel_user;
  char *sentinel_password;
  int cluster;
  rsgAddr *seeds;
  int nseeds;
} rsgRedisUrl;
int rsgUrlParse(const char *url, rsgRedisUrl *out, char *err, size_t errlen);
void rsgUrlFree(rsgRedisUrl *u);
void rsgUrlRedact(const char *s, char *buf, size_t len);

/* host/cluster_map.h */
int rsgClusterKeySlot(const char *key, size_t len);
]]

local function dir_of_this_file()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return src:sub(2):match("^(.*)/rsghost/[^/]*$") -- the directory holding rsghost/
end

local function load()
  if pcall(function() return ffi.C.rsgReadCount end) then return ffi.C, "the host" end
  local tried = {}
  local candidates = {}
  local env = os.getenv("RSGHOST_RULES_LIB")
  if env and env ~= "" then candidates[#candidates + 1] = env end
  local luadir = dir_of_this_file()
  if luadir then
    for _, rel in ipairs { "/../lib/librsghost_rules.so", "/../librsghost_rules.so", "/../build/librsghost_rules.so" } do
      candidates[#candidates + 1] = luadir .. rel
    end
  end
  candidates[#candidates + 1] = "rsghost_rules"
  for _, path in ipairs(candidates) do
    local ok, lib = pcall(ffi.load, path)
    if ok then return lib, path end
    tried[#tried + 1] = path
  end
  error("rsghost.native: cannot find librsghost_rules.so, the host's rules the test kit runs "
    .. "(build rsghost first: scripts/build; or set RSGHOST_RULES_LIB). Tried: " .. table.concat(tried, ", "), 0)
end

local C, where = load()

local M = { C = C, where = where }

-- rsgReadCount: messages per key a read of streams asks for (a window of
-- them when the room is thin: rsgReadKeys says how many it names).
function M.read_count(room, keys, count, read_chunk)
  return tonumber(C.rsgReadCount(room, keys, count or 0, read_chunk or 0))
end

function M.read_keys(room, keys, count, read_chunk)
  return tonumber(C.rsgReadKeys(room, keys, count or 0, read_chunk or 0))
end

-- rsgReadShare: the room shared evenly among keys read all at once (lists).
function M.read_share(room, keys, count, read_chunk)
  return tonumber(C.rsgReadShare(room, keys, count or 0, read_chunk or 0))
end

local why_buf = ffi.new("char[160]")
local line_buf = ffi.new("char[1024]")

-- Whether s is valid UTF-8: nil, or the host's reason ("not valid utf-8
-- (byte 0x.. at offset N)").
function M.utf8_why(s)
  if C.rsgUtf8Why(s, #s, why_buf, 160) == 0 then return nil end
  return ffi.string(why_buf)
end

-- Why a message's field string k (0-based over name, value, ...) is
-- refused; name: the field's name when k is a value. What a dead letter of
-- it records.
function M.bad_field_what(k, name, why)
  name = name or ""
  C.rsgBadFieldWhat(line_buf, 1024, k, name, #name, why)
  return ffi.string(line_buf)
end

-- The host's error line for a message whose field string k is invalid:
-- dead-lettered to dead, or left pending, or skipped.
function M.bad_field_line(stream, id, k, name, why, pending, dead)
  name = name or ""
  C.rsgBadFieldLine(line_buf, 1024, stream, #stream, id, #id, k, name, #name, why, pending and 1 or 0, dead)
  return ffi.string(line_buf)
end

-- The host's error line for a list item whose bytes are invalid:
-- dead-lettered to dead, kept in the processing list proc (reliable), or
-- dropped (both nil).
function M.bad_item_line(list, proc, item, why, dead)
  C.rsgBadItemLine(line_buf, 1024, list, proc, item, #item, why, dead)
  return ffi.string(line_buf)
end

-- What the dead letter of such an item records.
function M.bad_item_what(why)
  C.rsgBadItemWhat(line_buf, 1024, why)
  return ffi.string(line_buf)
end

-- The URL parsed as the host parses it: { host=, port=, path=, user=,
-- password=, db=, tls=, sentinels = { {host=, port=} ... }, master=,
-- sentinel_user=, sentinel_password=, cluster = { {host=, port=} ... } (the
-- seed nodes of a redis+cluster:// URL) }, or nil and the host's error (its
-- passwords masked).
function M.parse_url(url)
  local u = ffi.new("rsgRedisUrl")
  local err = ffi.new("char[1024]")
  if C.rsgUrlParse(url, u, err, 1024) ~= 0 then return nil, ffi.string(err) end
  local function str(p) return p ~= nil and ffi.string(p) or nil end
  local out = {
    host = str(u.host), port = u.port, path = str(u.path), user = str(u.user), password = str(u.password),
    db = u.db, tls = u.tls ~= 0, master = str(u.master), sentinel_user = str(u.sentinel_user),
    sentinel_password = str(u.sentinel_password),
  }
  if u.nsentinels > 0 then
    out.sentinels = {}
    for i = 0, u.nsentinels - 1 do
      out.sentinels[i + 1] = { host = ffi.string(u.sentinels[i].host), port = u.sentinels[i].port }
    end
  end
  if u.cluster ~= 0 then
    out.cluster = {}
    for i = 0, u.nseeds - 1 do
      out.cluster[i + 1] = { host = ffi.string(u.seeds[i].host), port = u.seeds[i].port }
    end
  end
  C.rsgUrlFree(u)
  return out
end

-- The Redis Cluster slot of a key (its hash tag's, when it has one), as
-- the host routes it (host/cluster_map.c).
function M.key_slot(key)
  return C.rsgClusterKeySlot(key, #key)
end

-- The string with every password masked, as the host prints URLs.
function M.redact(s)
  local buf = ffi.new("char[?]", #s + 64)
  C.rsgUrlRedact(s, buf, #s + 64)
  return ffi.string(buf)
end

return M
