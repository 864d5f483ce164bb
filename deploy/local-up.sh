#!/usr/bin/env bash
# `make up`: the whole stack on this machine, without Docker: Redis, the
# inference service and the Streamlit front end. Ctrl-C stops it all.
#
# The model is `auto` unless CLASSROOM_MODEL says otherwise: Stable Diffusion
# 1.5 on a CUDA GPU (downloaded once), else the shipped Shapes model (offline,
# under two seconds a picture on a CPU); beside any model but Shapes, a Shapes service
# runs for lessons 9 and 10 (CLASSROOM_SHAPES_PORT, 50052). Ports: CLASSROOM_GRPC_PORT (50051),
# CLASSROOM_FRONTEND_PORT (8501), CLASSROOM_REDIS_PORT (6379, for the Redis
# started here). An external Redis is used when CLASSROOM_REDIS_URL is set. The Redis data and the
# secrets live in CLASSROOM_RUN_DIR (.run), kept across starts, each secret in a 0700 folder.
#
# As with docker compose, the class code is made at the first start (the front end says it at
# start; the teacher's page shows it) unless CLASSROOM_CLASS_CODE is set. Set but empty
# (`CLASSROOM_CLASS_CODE= make up`): no sign-in, for development. The teacher code is made the
# same way (four words and four digits) unless CLASSROOM_TEACHER_CODE is set (set but empty: no
# teacher's page); it is said only here, in the start message, never on a page. The Redis started
# here asks for a password, read from a file it includes, never from its command line.
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

# The secrets, made once and kept: the cache secret, so cached lessons outlive a restart; the
# class code, so students keep the one they were given. Everything here listens on this machine
# only, except the front end.
"$PY" -m services.inference make-secrets "$RUN/secrets" >/dev/null
SECRETS=$RUN/secrets
export CLASSROOM_CACHE_SECRET_FILE=${CLASSROOM_CACHE_SECRET_FILE:-$SECRETS/service/cache_secret}
# The shipped prompt blocklist, as compose and Kubernetes use it (CLASSROOM_BLOCKLIST= to turn it off).
export CLASSROOM_BLOCKLIST=${CLASSROOM_BLOCKLIST-services/inference/blocklist.txt}
if [ -z "${CLASSROOM_CLASS_CODE+set}" ]; then
  export CLASSROOM_CLASS_CODE_FILE=${CLASSROOM_CLASS_CODE_FILE:-$SECRETS/frontend/class_code}
fi
# The service and the front end each read the teacher code from their own folder.
service_teacher=() frontend_teacher=()
if [ -z "${CLASSROOM_TEACHER_CODE+set}" ]; then
  service_teacher=("CLASSROOM_TEACHER_CODE_FILE=${CLASSROOM_TEACHER_CODE_FILE:-$SECRETS/service/teacher_code}")
  frontend_teacher=("CLASSROOM_TEACHER_CODE_FILE=${CLASSROOM_TEACHER_CODE_FILE:-$SECRETS/frontend/teacher_code}")
fi

if [ -z "${CLASSROOM_REDIS_URL:-}" ]; then
  redis-server deploy/redis/redis.conf --include "$SECRETS/redis/redis-auth.conf" --port "$REDIS_PORT" \
    --bind 127.0.0.1 --dir "$RUN/redis" --maxmemory 1gb &
  pids+=($!)
  export CLASSROOM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export CLASSROOM_REDIS_PASSWORD_FILE="$SECRETS/service/redis_password"
fi
env "${service_teacher[@]}" CLASSROOM_GRPC_PORT="$GRPC_PORT" "$PY" -m services.inference serve &
pids+=($!)

# Lessons 9 and 10 are about Shapes: beside another model (Stable Diffusion on a GPU) a Shapes
# service runs on the CPU, on CLASSROOM_SHAPES_PORT (the gRPC port + 1), in the same class (the same
# Redis and secrets). Not for the test models, nor when CLASSROOM_SHAPES_ADDR names one already.
MODEL=${CLASSROOM_MODEL:-auto}
frontend_shapes=()
if [ -z "${CLASSROOM_SHAPES_ADDR+set}" ] && [[ ! "$MODEL" =~ ^(shapes|tiny|simulated-h100)$ ]] &&
  { [ "$MODEL" != auto ] || "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; }; then
  SHAPES_PORT=${CLASSROOM_SHAPES_PORT:-$((GRPC_PORT + 1))}
  env "${service_teacher[@]}" CLASSROOM_MODEL=shapes CLASSROOM_DEVICE=cpu CLASSROOM_GRPC_PORT="$SHAPES_PORT" \
    CLASSROOM_METRICS_PORT=0 "$PY" -m services.inference serve &
  pids+=($!)
  frontend_shapes=("CLASSROOM_SHAPES_ADDR=localhost:$SHAPES_PORT")
  echo "Lessons 9 and 10: Shapes, on localhost:$SHAPES_PORT beside $MODEL"
fi

# frontend.start says the class code (and a teacher code it was not given), then runs Streamlit. The
# teacher's page opens only here, on this machine (http://localhost), since nothing here serves HTTPS.
env "${frontend_teacher[@]}" "${frontend_shapes[@]}" CLASSROOM_INFERENCE_ADDR="${CLASSROOM_INFERENCE_ADDR:-localhost:$GRPC_PORT}" \
  "$PY" -m frontend.start \
  --server.port "$FRONTEND_PORT" &
pids+=($!)

echo "Diffusion Classroom: http://localhost:$FRONTEND_PORT (model ${CLASSROOM_MODEL:-auto})"
if [ ${#frontend_teacher[@]} -gt 0 ]; then  # made here: said here, and in the front end's first lines
  echo "Teacher's page: http://localhost:$FRONTEND_PORT, teacher code $(cat "${frontend_teacher[0]#*=}") (keep it from students)"
fi
wait -n
