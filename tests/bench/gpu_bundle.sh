#!/bin/sh
# Prepare .gpu/ (ignored by git) for a GPU machine that has PyTorch but no network:
# wheels of what the service needs beyond the machine's image (Python 3.12, x86-64),
# CLIP's vocabulary (for the tiny model), and Redis with its libraries (for the class
# load test). Run here, in the repository root, where pip reaches PyPI; then carry
# `.gpu` and `proto/gen` to the GPU machine and run tests/bench/gpu_run.sh there.
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/site .gpu/redis/bin .gpu/redis/lib
# Versions as requirements/ pins them; what the image has already (torch, numpy, accelerate,
# safetensors, huggingface-hub, tokenizers, scipy, pillow, psutil, PyYAML) is not brought.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels \
  diffusers==0.42.1 transformers==5.24.0 regex==2026.11.19 \
  grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 grpcio-status==1.85.3 \
  protobuf==7.36.2 googleapis-common-protos==1.76.0 prometheus_client==0.26.0 redis==8.1.0 \
  pydantic-settings==2.16.3 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 typing_extensions==4.16.0 python-dotenv==1.2.4 \
  pytest==9.2.0 pytest-asyncio==1.5.0 pluggy==1.7.0 iniconfig==2.3.1
# openai-clip has no wheel: its package (pure Python, with the vocabulary) is copied as installed here.
cp -r "$("$PY" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("clip").origin))')" .gpu/site/
# redis-server, with the libraries it links that a plain Ubuntu image lacks, run through a wrapper
# (the others, OpenSSL and systemd's among them, are the machine's own: the whole tree must stay under 64 MiB).
server=$(command -v redis-server)
cp "$server" .gpu/redis/bin/redis-server.real
ldd "$server" | awk '/=> \// {print $3}' | grep -E '/(liblzf|libjemalloc|libatomic)\.so' | xargs -I{} cp -L {} .gpu/redis/lib/
cat > .gpu/redis/bin/redis-server <<'WRAP'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib" exec "$here/redis-server.real" "$@"
WRAP
chmod +x .gpu/redis/bin/redis-server
du -sh .gpu
