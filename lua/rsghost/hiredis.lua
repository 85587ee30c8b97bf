-- A small synchronous Redis client for LuaJIT, through the FFI on the
-- system's libhiredis (0.14 on Debian 12, 1.2 on Debian 13). The busted test
-- kit and the integration specs use it to talk to a real redis-server; the
-- host does not (it has its own asynchronous connections).
--
--   local hiredis = require "rsghost.hiredis"
--   local r = hiredis.connect("redis://:secret@127.0.0.1:6379/2")
--   r:call("XADD", "s", "*", "f", "v")   --> "1700000000000-0"
--   r:pcall("NOPE")                      --> nil, "ERR unknown command 'NOPE', ..."
--   r:close()
--   hiredis.connect("rediss://127.0.0.1:6380/0",
--     { tls = { ca_cert = "ca.crt", cert = "client.crt", key = "client.key", server_name = "redis" } })
--
-- rediss:// (TLS) needs hiredis_ssl, which only hiredis 1.x has (Debian 13's
-- libhiredis1.1.0); M.TLS says whether it was loaded. The server's certificate
-- is verified against tls.ca_cert (else the system's CA store); server_name
-- is sent as SNI. Unlike the host, this client does not check that the
-- certificate names the host: hiredis' own context does not, and the specs
-- only need a working channel.
--
-- Replies are converted the way redis' own Lua does it (and the rsghost host,
-- which converts with M.reply_at):
-- status -> string, integer -> number, bulk -> string, nil bulk -> nil at the
-- top level and false inside arrays, array -> table. An error nested inside an
-- array (EXEC, pipelines) becomes { err = message }. Arguments and values are
-- binary safe: commands go through redisCommandArgv with explicit lengths.
local ffi = require "ffi"
local native = require "rsghost.native"

-- Debian's package installs only the versioned soname (libhiredis0.14 on
-- Debian 12, libhiredis1.1.0 on Debian 13); the unversioned name exists
-- only with libhiredis-dev.
local function load_library()
  local errors = {}
  for _, name in ipairs { "hiredis", "libhiredis.so.1.1.0", "libhiredis.so.1", "libhiredis.so.1.0.0",
    "libhiredis.so.0.14", "libhiredis.so.0.13", "libhiredis.so.0" } do
    -- Global: Debian's libhiredis_ssl does not list libhiredis as a
    -- dependency and finds hiredis' symbols only in the global scope (a
    -- library loaded locally cannot be made global afterwards reliably).
    local ok, lib = pcall(ffi.load, name, true)
    if ok then return lib end
    errors[#errors + 1] = tostring(lib)
  end
  error("rsghost.hiredis: cannot load libhiredis (install libhiredis-dev): " .. table.concat(errors, "; "), 0)
end

local C = load_library()

-- hiredis_ssl, when this hiredis has it: nil otherwise (0.14 has none).
local function load_ssl_library()
  for _, name in ipairs { "hiredis_ssl", "libhiredis_ssl.so.1.1.0", "libhiredis_ssl.so.1" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
  return nil
end

-- The major version of the library loaded decides the struct layouts:
-- hiredis 1.0 added redisConnectWithOptions, a double (dval) and a verbatim
-- type (vtype) to redisReply, and a function table in front of redisContext.
ffi.cdef [[
typedef struct redisReader redisReader;
struct rsghost_hiredis_timeval {
  long tv_sec;
  long tv_usec;
};
void *redisConnectWithOptions(const void *options);
]]
local MAJOR = pcall(function() return C.redisConnectWithOptions end) and 1 or 0
local SSL = MAJOR >= 1 and load_ssl_library() or nil

-- Every field we read must sit where the loaded library puts it; fields
-- after the last one we read are left out (we never allocate these structs).
if MAJOR >= 1 then
  ffi.cdef [[
typedef struct redisReply {
  int type;
  long long integer;
  double dval;
  size_t len;
  char *str;
  char vtype[4];
  size_t elements;
  struct redisReply **element;
} redisReply;

typedef struct redisContext {
  const void *funcs;
  int err;
  char errstr[128];
  int fd;
  int flags;
  char *obuf;
  redisReader *reader;
} redisContext;
]]
else
  ffi.cdef [[
typedef struct redisReply {
  int type;
  long long integer;
  size_t len;
  char *str;
  size_t elements;
  struct redisReply **element;
} redisReply;

typedef struct redisContext {
  int err;
  char errstr[128];
  int fd;
  int flags;
  char *obuf;
  redisReader *reader;
} redisContext;
]]
end

ffi.cdef [[
redisContext *redisConnectWithTimeout(const char *ip, int port,
                                      const struct rsghost_hiredis_timeval tv);
redisContext *redisConnectUnixWithTimeout(const char *path,
                                          const struct rsghost_hiredis_timeval tv);
int redisSetTimeout(redisContext *c, const struct rsghost_hiredis_timeval tv);
void redisFree(redisContext *c);
void *redisCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen);
int redisAppendCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen);
int redisGetReply(redisContext *c, void **reply);
void freeReplyObject(void *reply);
]]

if SSL then
  ffi.cdef [[
typedef struct redisSSLContext redisSSLContext;
int redisInitOpenSSL(void);
redisSSLContext *redisCreateSSLContext(const char *cacert_filename, const char *capath,
    const char *cert_filename, const char *private_key_filename, const char *server_name,
    int *error);
const char *redisSSLContextGetError(int error);
void redisFreeSSLContext(redisSSLContext *ctx);
int redisInitiateSSLWithContext(redisContext *c, redisSSLContext *ctx);
]]
end

local REPLY_STRING, REPLY_ARRAY, REPLY_INTEGER, REPLY_NIL, REPLY_STATUS, REPLY_ERROR = 1, 2, 3, 4, 5, 6
-- hiredis 1.x types of RESP3 (seen only after HELLO 3, which we never send).
local REPLY_DOUBLE, REPLY_BOOL, REPLY_MAP, REPLY_SET, REPLY_PUSH, REPLY_BIGNUM, REPLY_VERB =
  7, 8, 9, 10, 12, 13, 14
local REDIS_OK = 0

local M = {}

-- The loaded library's major version (0 or 1) and the library itself, for
-- spec helpers that need more of it.
M.MAJOR, M.C = MAJOR, C
-- hiredis_ssl (nil without it) and whether rediss:// works.
M.SSL, M.TLS = SSL, SSL ~= nil

local openssl_ready = false

-- A hiredis SSL context for opts.tls ({ ca_cert=, cert=, key=, server_name= }),
-- freed with its last user. Raises when TLS is missing or a file is unusable.
local function ssl_context(tls)
  if not SSL then
    error("rsghost.hiredis: rediss:// needs hiredis_ssl, which the loaded libhiredis (hiredis "
      .. (MAJOR >= 1 and "1.x without libhiredis_ssl" or "0.14") .. ") lacks: install hiredis 1.x "
      .. "with TLS (Debian 13's libhiredis-dev), or use redis:// through a TLS tunnel (stunnel)", 0)
  end
  if not openssl_ready then
    SSL.redisInitOpenSSL()
    openssl_ready = true
  end
  local code = ffi.new("int[1]")
  local ctx = SSL.redisCreateSSLContext(tls.ca_cert, nil, tls.cert, tls.key, tls.server_name, code)
  if ctx == nil then
    error(string.format("rsghost.hiredis: cannot set up TLS (ca_cert=%s, cert=%s, key=%s): %s",
      tostring(tls.ca_cert), tostring(tls.cert), tostring(tls.key),
      ffi.string(SSL.redisSSLContextGetError(code[0]))), 0)
  end
  return ffi.gc(ctx, SSL.redisFreeSSLContext)
end

local function timeval(seconds)
  local tv = ffi.new("struct rsghost_hiredis_timeval")
  local whole = math.floor(seconds)
  tv.tv_sec = whole
  tv.tv_usec = math.floor((seconds - whole) * 1e6)
  return tv
end

-- Parses a URL exactly as the host does (host/url.c, through rsghost.native):
-- redis://[[user]:password@]host[:port][/db] (rediss:// the same, over TLS)
-- and unix:///path[?db=N] into { host=, port=, path=, user=, password=,
-- db=, tls= }. redis://secret@host means a password, as in redis-cli and the
-- host. Raises the host's error (passwords masked) on a bad URL, and on a
-- Sentinel or cluster URL (this client connects to one server).
function M.parse_url(url)
  if type(url) ~= "string" then error("rsghost.hiredis: URL must be a string", 0) end
  local u, err = native.parse_url(url)
  if not u then error("rsghost.hiredis: " .. err, 0) end
  if u.sentinels then
    error("rsghost.hiredis: connects to one server, not through Sentinel: " .. M.redact(url), 0)
  end
  if u.cluster then
    error("rsghost.hiredis: connects to one server, not to a Redis Cluster: " .. M.redact(url), 0)
  end
  return {
    host = u.host, port = u.host and u.port or nil, path = u.path,
    user = u.user, password = u.password, db = u.db, tls = u.tls or nil,
  }
end

-- The URL (or any string) with every password masked, as the host prints it.
function M.redact(url)
  return native.redact(tostring(url))
end

-- Converts a reply; top: nil bulk is nil at the top level, false in arrays.
local function convert(reply, top)
  local t = reply.type
  if t == REPLY_STRING or t == REPLY_STATUS or t == REPLY_BIGNUM or t == REPLY_VERB then
    return ffi.string(reply.str, reply.len)
  elseif t == REPLY_INTEGER then
    return tonumber(reply.integer)
  elseif t == REPLY_NIL then
    if top then return nil end
    return false
  elseif t == REPLY_DOUBLE then
    return tonumber(ffi.string(reply.str, reply.len))
  elseif t == REPLY_BOOL then
    return reply.integer ~= 0
  elseif t == REPLY_ARRAY or t == REPLY_MAP or t == REPLY_SET or t == REPLY_PUSH then
    local n = tonumber(reply.elements)
    local out = {}
    for i = 0, n - 1 do
      out[i + 1] = convert(reply.element[i], false)
    end
    return out
  elseif t == REPLY_ERROR then
    if top then return nil, ffi.string(reply.str, reply.len) end
    return { err = ffi.string(reply.str, reply.len) }
  end
  return nil, "rsghost.hiredis: unknown reply type " .. tostring(t)
end

-- For the C host: the reply its command connection got (a redisReply it
-- holds during the reply callback), converted exactly as this client
-- converts its own: value, or nil and the error reply. One converter for
-- the host's rsghost.redis.call and for the kit against a real server.
function M.reply_at(ptr)
  return convert(ffi.cast("redisReply *", ptr), true)
end

local Client = {}
Client.__index = Client

-- argv for hiredis from args[1..n] (a table: no unpack, so no limit on the
-- number of arguments, e.g. an RPUSH of a whole batch).
local function argv_of(args, n)
  local keep = {}
  local argv = ffi.new("const char *[?]", n)
  local lens = ffi.new("size_t[?]", n)
  for i = 1, n do
    local a = args[i]
    local ta = type(a)
    if ta == "number" then
      -- Integers print without an exponent or ".0" (Redis wants "10", not "1e+01").
      if a == math.floor(a) and a > -2^53 and a < 2^53 then a = string.format("%d", a) else a = string.format("%.17g", a) end
    elseif ta ~= "string" then
      error("rsghost.hiredis: argument " .. i .. " must be a string or number, got " .. ta, 3)
    end
    keep[i] = a
    argv[i - 1] = a
    lens[i - 1] = #a
  end
  -- keep holds the strings alive as long as argv points at them.
  return n, argv, lens, keep
end

function Client:_connect()
  local cfg = self.cfg
  local ctx
  if cfg.path then
    ctx = C.redisConnectUnixWithTimeout(cfg.path, timeval(self.connect_timeout))
  else
    ctx = C.redisConnectWithTimeout(cfg.host, cfg.port, timeval(self.connect_timeout))
  end
  if ctx == nil then return nil, "rsghost.hiredis: out of memory" end
  if ctx.err ~= 0 then
    local msg = ffi.string(ctx.errstr)
    C.redisFree(ctx)
    return nil, string.format("rsghost.hiredis: cannot connect to %s: %s", self.where, msg)
  end
  ctx = ffi.gc(ctx, C.redisFree)
  if self.sslctx then
    -- The handshake is blocking: bound it by the connect timeout.
    C.redisSetTimeout(ctx, timeval(self.connect_timeout))
    if SSL.redisInitiateSSLWithContext(ctx, self.sslctx) ~= REDIS_OK then
      local msg = ffi.string(ctx.errstr)
      self.ctx = ctx
      self:close()
      return nil, string.format("rsghost.hiredis: TLS with %s failed: %s", self.where, msg)
    end
    C.redisSetTimeout(ctx, timeval(self.timeout or 0))
  elseif self.timeout then
    C.redisSetTimeout(ctx, timeval(self.timeout))
  end
  self.ctx = ctx
  if cfg.password then
    local _, err
    if cfg.user then _, err = self:_command("AUTH", cfg.user, cfg.password)
    else _, err = self:_command("AUTH", cfg.password) end
    if err then
      self:close()
      return nil, string.format("rsghost.hiredis: AUTH failed on %s: %s", self.where, err)
    end
  end
  if cfg.db and cfg.db ~= 0 then
    local _, err = self:_command("SELECT", cfg.db)
    if err then
      self:close()
      return nil, string.format("rsghost.hiredis: SELECT %d failed on %s: %s", cfg.db, self.where, err)
    end
  end
  return true
end

-- Drops a broken connection; the next command reconnects (so a spec can keep
-- its client across a redis-server restart).
function Client:_lost()
  local ctx = self.ctx
  local msg = ctx ~= nil and ffi.string(ctx.errstr) or "not connected"
  self:close()
  return "connection lost (" .. self.where .. "): " .. msg
end

-- Returns reply or nil, err. Errors: the server's error reply verbatim, or a
-- "connection lost ..." message.
function Client:_command(cmd, ...)
  -- select('#') keeps trailing nils visible so they are reported, not dropped.
  return self:command({ cmd, ... }, select("#", ...) + 1)
end

-- Runs the command given as an array { cmd, arg, ... } (n: its length, when
-- it holds nils to report). Returns reply, or nil, err like pcall.
function Client:command(args, n)
  if not self.ctx then
    local ok, err = self:_connect()
    if not ok then return nil, err end
  end
  local n, argv, lens, keep = argv_of(args, n or #args)
  local reply = C.redisCommandArgv(self.ctx, n, argv, lens)
  keep = nil
  if reply == nil then return nil, self:_lost() end
  reply = ffi.cast("redisReply *", reply)
  local ok, value, err = pcall(convert, reply, true)
  C.freeReplyObject(reply)
  if not ok then return nil, value end
  return value, err
end

-- Runs a command: returns the converted reply; raises the error reply's
-- message (exactly, no position added) on an error reply or a lost connection.
function Client:call(cmd, ...)
  local value, err = self:_command(cmd, ...)
  if err then error(err, 0) end
  return value
end

-- Like call, but returns nil, err instead of raising.
function Client:pcall(cmd, ...)
  return self:_command(cmd, ...)
end

-- Sends many commands in one round trip: cmds = { {cmd, arg, ...}, ... }.
-- Returns the array of replies (an error reply becomes { err = msg }; nil
-- bulk becomes false); raises only when the connection fails.
function Client:pipeline(cmds)
  if not self.ctx then
    local ok, err = self:_connect()
    if not ok then error(err, 0) end
  end
  for i = 1, #cmds do
    local n, argv, lens = argv_of(cmds[i], #cmds[i])
    if C.redisAppendCommandArgv(self.ctx, n, argv, lens) ~= REDIS_OK then
      error(self:_lost(), 0)
    end
  end
  local out = {}
  local slot = ffi.new("void *[1]")
  for i = 1, #cmds do
    if C.redisGetReply(self.ctx, slot) ~= REDIS_OK then error(self:_lost(), 0) end
    local reply = ffi.cast("redisReply *", slot[0])
    local ok, value = pcall(convert, reply, false)
    C.freeReplyObject(reply)
    if not ok then error(value, 0) end
    out[i] = value
  end
  return out
end

function Client:close()
  local ctx = self.ctx
  if ctx ~= nil then
    self.ctx = nil
    ffi.gc(ctx, nil)
    C.redisFree(ctx)
  end
end

-- Connects to url (default redis://127.0.0.1:6379/0). opts.connect_timeout
-- (seconds, default 5), opts.timeout (per command, default none), opts.tls
-- (rediss://: { ca_cert=, cert=, key=, server_name= }, all optional). Raises
-- a one-line error (password redacted) when the server cannot be reached,
-- TLS fails or is missing, AUTH fails or SELECT fails.
function M.connect(url, opts)
  opts = opts or {}
  url = url or "redis://127.0.0.1:6379/0"
  local cfg = M.parse_url(url)
  local self = setmetatable({
    cfg = cfg,
    url = url,
    where = cfg.path and ("unix:" .. cfg.path) or (cfg.host .. ":" .. cfg.port),
    connect_timeout = opts.connect_timeout or 5,
    timeout = opts.timeout,
    sslctx = cfg.tls and ssl_context(opts.tls or {}) or nil,
  }, Client)
  local ok, err = self:_connect()
  if not ok then error(err, 0) end
  return self
end

return M
