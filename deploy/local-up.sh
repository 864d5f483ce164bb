#!/usr/bin/env bash
# `make up`: the whole stack on this machine, without Docker. Ctrl-C stops it all.
# CLASSROOM_MODEL=tiny runs it offline. An external Redis is used when
# CLASSROOM_REDIS_URL is set; otherwise one is started here on port 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=.run
mkdir -p "$RUN/redis"
pids=()
# Stop in reverse order: the service drains its streams while Redis is still up.
cleanup() { for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if [ -z "${CLASSROOM_REDIS_URL:-}" ]; then
  redis-server deploy/redis/redis.conf --port 6379 --bind 127.0.0.1 --dir "$PWD/$RUN/redis" --maxmemory 1gb &
  pids+=($!)
  export CLASSROOM_REDIS_URL=redis://127.0.0.1:6379/0
fi

"$PY" -m services.inference serve &
pids+=($!)
echo "inference: localhost:${CLASSROOM_GRPC_PORT:-50051} (model ${CLASSROOM_MODEL:-stable-diffusion-v1-5/stable-diffusion-v1-5})"
wait -n
