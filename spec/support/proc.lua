-- Child processes for the integration specs, through the FFI (no shell, so no
-- quoting bugs and the pid we hold is the program's own):
--
--   local proc = require "support.proc"
--   local p = proc.spawn { argv = { "build/rsghost", "s.lua", "c1" },
--                          env = { RSGHOST_REDIS_URL = false },  -- false unsets
--                          stdout = "/tmp/out", stderr = "/tmp/err" }
--   p:signal("TERM"); p:wait(30) --> 0 | 3 | "signal 9" | nil (still running)
--
-- Every child gets PR_SET_PDEATHSIG(SIGKILL), and the children still running
-- when the Lua state closes are killed and reaped, so a failing or aborted
-- spec leaves no redis-server or rsghost behind.
local ffi = require "ffi"

ffi.cdef [[
typedef int pid_t;
pid_t fork(void);
int execvpe(const char *file, char *const argv[], char *const envp[]);
int dup2(int oldfd, int newfd);
int open(const char *path, int flags, ...);
int close(int fd);
void _exit(int status);
pid_t waitpid(pid_t pid, int *status, int options);
int kill(pid_t pid, int sig);
pid_t getpid(void);
pid_t getppid(void);
int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
int chdir(const char *path);
typedef void (*sighandler_t)(int);
sighandler_t signal(int signum, sighandler_t handler);
typedef struct { unsigned long val[16]; } rsghost_sigset_t;
int sigemptyset(rsghost_sigset_t *set);
int sigprocmask(int how, const rsghost_sigset_t *set, rsghost_sigset_t *oldset);
int poll(void *fds, unsigned long nfds, int timeout);
char *strerror(int errnum);
struct rsghost_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct rsghost_timespec *ts);
extern char **environ;
]]

local C = ffi.C

-- Debian's lua-posix (luaposix) where it covers what we need: waiting for,
-- signalling and timing children. fork/exec stay on the FFI: the child must
-- set PR_SET_PDEATHSIG (prctl, which luaposix lacks) and exec with an
-- environment of its own (execvpe) making only system calls after fork.
local pwait = require "posix.sys.wait"
local psignal = require "posix.signal"
local ptime = require "posix.time"
local punistd = require "posix.unistd"

local O_WRONLY, O_RDONLY, O_CREAT, O_TRUNC, O_APPEND = 1, 0, 64, 512, 1024
local PR_SET_PDEATHSIG = 1
local SIG_SETMASK = 2
local ECHILD = 10

local M = {}

M.signals = {
  HUP = 1, INT = 2, QUIT = 3, ABRT = 6, KILL = 9, USR1 = 10, SEGV = 11, USR2 = 12,
  PIPE = 13, ALRM = 14, TERM = 15, CHLD = 17, CONT = 18, STOP = 19,
}

local function signum(sig)
  if type(sig) == "number" then return sig end
  local n = M.signals[tostring(sig):upper():gsub("^SIG", "")]
  if not n then error("support.proc: unknown signal " .. tostring(sig), 3) end
  return n
end

-- Sleeps without busy-waiting.
function M.sleep(seconds)
  seconds = math.max(0, seconds)
  local whole = math.floor(seconds)
  ptime.nanosleep { tv_sec = whole, tv_nsec = math.floor((seconds - whole) * 1e9) }
end

-- Monotonic seconds (float), for deadlines that wall-clock jumps cannot upset.
function M.now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec * 1e-9
end

function M.getpid()
  return punistd.getpid()
end

local function current_env()
  local env, order = {}, {}
  local e = C.environ
  local i = 0
  while e[i] ~= nil do
    local kv = ffi.string(e[i])
    local k, v = kv:match("^([^=]*)=(.*)$")
    if k then
      if env[k] == nil then order[#order + 1] = k end
      env[k] = v
    end
    i = i + 1
  end
  return env, order
end

local function cstrings(list)
  local arr = ffi.new("char *[?]", #list + 1)
  local keep = {}
  for i, s in ipairs(list) do
    local buf = ffi.new("char[?]", #s + 1, s)
    keep[i] = buf
    arr[i - 1] = buf
  end
  arr[#list] = nil
  return arr, keep
end

-- The running children, pid -> proc; reaped ones are removed.
local live = {}

local Proc = {}
Proc.__index = Proc

function Proc:pid()
  return self._pid
end

-- Reaps the child if it has exited; returns true once it is gone. The
-- result is the exit code, or "signal N".
function Proc:_poll()
  if self.result ~= nil then return true end
  local r, how, code = pwait.wait(self._pid, pwait.WNOHANG)
  if r == self._pid and how ~= "running" then
    self.result = how == "exited" and code or ("signal " .. code)
    live[self._pid] = nil
    return true
  elseif r == nil and code == ECHILD then
    -- Somebody else reaped it (should not happen); treat as gone.
    self.result = "unknown"
    live[self._pid] = nil
    return true
  end
  return false
end

function Proc:alive()
  return not self:_poll()
end

-- Sends a signal (name like "TERM"/"SIGKILL" or number). Returns true if sent.
function Proc:signal(sig)
  if self:_poll() then return false end
  return psignal.kill(self._pid, signum(sig)) == 0
end

-- Waits up to timeout seconds (default 30; math.huge to wait forever).
-- Returns the exit code, "signal N", or nil if it still runs.
function Proc:wait(timeout)
  timeout = timeout or 30
  local deadline = M.now() + timeout
  local step = 0.005
  while true do
    if self:_poll() then return self.result end
    if M.now() >= deadline then return nil end
    M.sleep(step)
    step = math.min(step * 2, 0.1)
  end
end

-- SIGKILL and reap: the way to make sure a child is gone.
function Proc:kill()
  if self:signal("KILL") then self:wait(30) end
  return self.result
end

-- Reads a file the child writes (its stdout/stderr), "" when missing.
local function slurp(path)
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
M.slurp = slurp

function Proc:stdout() return slurp(self.stdout_path) end
function Proc:stderr() return slurp(self.stderr_path) end

-- Starts a program. opts:
--   argv    { program, arg1, ... } (program looked up in PATH like execvp)
--   env     { NAME = value | false } changes to the inherited environment
--   stdout, stderr  file paths (truncated) or nil for /dev/null;
--                   append = true appends instead of truncating
--   stdin   file path, default /dev/null
--   cwd     working directory for the child
function M.spawn(opts)
  local argv = opts.argv
  assert(type(argv) == "table" and #argv > 0, "support.proc.spawn: argv required")
  local args = {}
  for i, a in ipairs(argv) do args[i] = tostring(a) end

  local env, order = current_env()
  for k, v in pairs(opts.env or {}) do
    if env[k] == nil and v then order[#order + 1] = k end
    env[k] = v or nil
  end
  local envlist = {}
  for _, k in ipairs(order) do
    if env[k] then envlist[#envlist + 1] = k .. "=" .. tostring(env[k]) end
  end

  -- Everything the child touches is prepared before fork: between fork and
  -- exec the child only makes system calls.
  local c_argv, keep1 = cstrings(args)
  local c_env, keep2 = cstrings(envlist)
  local outflags = bit.bor(O_WRONLY, O_CREAT, opts.append and O_APPEND or O_TRUNC)
  local out_path = opts.stdout or "/dev/null"
  local err_path = opts.stderr or "/dev/null"
  local in_path = opts.stdin or "/dev/null"
  local cwd = opts.cwd
  local empty = ffi.new("rsghost_sigset_t")
  C.sigemptyset(empty)
  local parent = C.getpid()

  local pid = C.fork()
  if pid < 0 then
    error("support.proc: fork failed: " .. ffi.string(C.strerror(ffi.errno())), 2)
  end
  if pid == 0 then
    C.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if C.getppid() ~= parent then C._exit(127) end
    C.sigprocmask(SIG_SETMASK, empty, nil)
    for s = 1, 31 do
      if s ~= 9 and s ~= 19 then C.signal(s, nil) end -- SIG_DFL
    end
    local fin = C.open(in_path, O_RDONLY)
    local fout = C.open(out_path, outflags, ffi.cast("int", 420)) -- 0644
    local ferr = (err_path == out_path) and fout or C.open(err_path, outflags, ffi.cast("int", 420))
    if fin < 0 or fout < 0 or ferr < 0 then C._exit(126) end
    C.dup2(fin, 0)
    C.dup2(fout, 1)
    C.dup2(ferr, 2)
    -- Do not leak our redis connections or log files into the child.
    for fd = 3, 1023 do C.close(fd) end
    if cwd and C.chdir(cwd) ~= 0 then C._exit(126) end
    C.execvpe(c_argv[0], c_argv, c_env)
    C._exit(127)
  end
  keep1, keep2 = nil, nil
  local self = setmetatable({
    _pid = pid,
    argv = args,
    stdout_path = opts.stdout,
    stderr_path = opts.stderr,
  }, Proc)
  live[pid] = self
  return self
end

-- Runs a program to completion; returns code, stdout, stderr (text).
-- opts as spawn, plus timeout (seconds, default 60: then killed, code nil).
function M.run(opts)
  local tmp = os.tmpname()
  local tmp2 = os.tmpname()
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.stdout, o.stderr = tmp, tmp2
  local p = M.spawn(o)
  local code = p:wait(opts.timeout or 60)
  if code == nil then p:kill() end
  local out, err = slurp(tmp), slurp(tmp2)
  os.remove(tmp)
  os.remove(tmp2)
  return code, out, err
end

-- Kills and reaps every child still running.
function M.kill_all()
  for _, p in pairs(live) do
    if p:alive() then C.kill(p._pid, 9) end
  end
  for _, p in pairs(live) do p:wait(10) end
end

-- Runs kill_all when the Lua state closes (busted ends with os.exit(code, true)).
M._sentinel = ffi.gc(ffi.new("int[1]"), function() M.kill_all() end)

return M
