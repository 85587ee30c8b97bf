# scripts/lib/redis.sh - sourced by scripts/demo, scripts/bench and .ci/run.
#
# start_throwaway_redis DIR: starts a redis-server with no persistence on a
# free loopback port, files in DIR; sets REDIS_PORT and REDIS_URL and stops
# the server when the calling shell exits.

free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    # Nothing answers a connect on a free port.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free loopback port found" >&2
  return 1
}

stop_throwaway_redis() {
  if [ -n "${REDIS_PORT:-}" ]; then
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
}

start_throwaway_redis() {
  local dir=$1
  for _ in 1 2 3 4 5; do
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --dir "$dir" --logfile "$dir/redis.log" \
      --pidfile "$dir/redis.pid" >/dev/null
    for _ in $(seq 1 50); do
      if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
        export REDIS_PORT REDIS_URL
        trap stop_throwaway_redis EXIT
        return 0
      fi
      sleep 0.1
    done
  done
  echo "redis-server did not start (see $dir/redis.log)" >&2
  return 1
}
