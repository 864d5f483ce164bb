#!/usr/bin/env bash
# `make up`: the whole stack on this machine, without Docker: Redis, the
# inference service and the Streamlit front end. Ctrl-C stops it all.
#
# The model is `auto` unless CLASSROOM_MODEL says otherwise: Stable Diffusion
# 1.5 on a CUDA GPU (downloaded once), else the shipped Shapes model (offline,
# under two seconds a picture on a CPU). Ports: CLASSROOM_GRPC_PORT (50051),
# CLASSROOM_FRONTEND_PORT (8501), CLASSROOM_REDIS_PORT (6379, for the Redis
# started here). An external Redis is used when CLASSROOM_REDIS_URL is set. The Redis data and the
# secrets live in CLASSROOM_RUN_DIR (.run), kept across starts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=${CLASSROOM_RUN_DIR:-$PWD/.run}
GRPC_PORT=${CLASSROOM_GRPC_PORT:-50051}
FRONTEND_PORT=${CLASSROOM_FRONTEND_PORT:-8501}
REDIS_PORT=${CLASSROOM_REDIS_PORT:-6379}
mkdir -p "$RUN/redis"
pids=()
# Stop in reverse order: the front end first, then the service drains its streams while Redis is still up.
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

if [ -z "${CLASSROOM_REDIS_URL:-}" ]; then
  redis-server deploy/redis/redis.conf --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" \
    --maxmemory 1gb &
  pids+=($!)
  export CLASSROOM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi

# The cache secret, made once and kept, so cached lessons outlive a restart. Everything here
# listens on this machine only, except the front end.
"$PY" -m services.inference make-secrets "$RUN/secrets" >/dev/null
export CLASSROOM_CACHE_SECRET_FILE=${CLASSROOM_CACHE_SECRET_FILE:-$RUN/secrets/cache_secret}
CLASSROOM_GRPC_PORT=$GRPC_PORT "$PY" -m services.inference serve &
pids+=($!)

CLASSROOM_INFERENCE_ADDR=${CLASSROOM_INFERENCE_ADDR:-localhost:$GRPC_PORT} "$PY" -m streamlit run frontend/app.py \
  --server.port "$FRONTEND_PORT" &
pids+=($!)

echo "Diffusion Classroom: http://localhost:$FRONTEND_PORT (model ${CLASSROOM_MODEL:-auto})"
wait -n
