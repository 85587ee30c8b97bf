-- A throwaway PKI for the TLS specs, made by the openssl command:
--
--   local pki = require("support.pki").make(dir)
--   pki.ca_crt, pki.server_crt, pki.server_key     -- the server's, for 127.0.0.1 and localhost
--   pki.client_crt, pki.client_key                 -- a client certificate of the same CA
--   pki.other_ca_crt                               -- a CA that signed neither
local H = require "support.host"
local proc = require "support.proc"

local M = {}

-- A throwaway PKI in dir: a CA, a server certificate for 127.0.0.1 and
-- localhost, a client certificate, and a second CA that signed neither.
function M.make(dir)
  local function openssl(args)
    local argv = { "openssl" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, out, err = proc.run { argv = argv, cwd = dir, timeout = 60 }
    assert(code == 0, "openssl " .. table.concat(args, " ") .. " failed: " .. out .. err)
  end
  local key = { "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes" }
  local function req(extra)
    local a = { "req" }
    for _, x in ipairs(key) do a[#a + 1] = x end
    for _, x in ipairs(extra) do a[#a + 1] = x end
    openssl(a)
  end
  H.write(dir .. "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
  H.write(dir .. "/client.ext", "extendedKeyUsage=clientAuth\n")
  req { "-x509", "-days", "2", "-subj", "/CN=rsghost test CA", "-keyout", "ca.key", "-out", "ca.crt" }
  req { "-x509", "-days", "2", "-subj", "/CN=another CA", "-keyout", "other-ca.key", "-out", "other-ca.crt" }
  for _, who in ipairs { "server", "client" } do
    req { "-subj", who == "server" and "/CN=127.0.0.1" or "/CN=rsghost-client",
      "-keyout", who .. ".key", "-out", who .. ".csr" }
    openssl { "x509", "-req", "-in", who .. ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
      "-CAcreateserial", "-days", "2", "-extfile", who .. ".ext", "-out", who .. ".crt" }
  end
  local p = {}
  for _, f in ipairs { "ca.crt", "other-ca.crt", "server.crt", "server.key", "client.crt", "client.key" } do
    p[f:gsub("%.(%a+)$", "_%1"):gsub("%-", "_")] = dir .. "/" .. f
  end
  return p -- p.ca_crt, p.other_ca_crt, p.server_crt, p.server_key, p.client_crt, p.client_key
end

return M
