#!/bin/sh
# On the GPU machine, in the repository root, with `.gpu` and `proto/gen` carried
# (see tests/bench/gpu_bundle.sh): install the wheels beside the image's PyTorch,
# then run the GPU suite (at most 9 minutes on one H100 or H200), its figures
# into $OUT (or ./gpu-suite-out).
# Extra arguments go to the suite (e.g. --parts speed --budget-s 300).
# On a CPU, for a check of the script itself: PY=.venv/bin/python sh tests/bench/gpu_run.sh --smoke
# (without `.gpu` the packages are PY's own; without --smoke the suite stops at once: no CUDA).
set -u
PY=${PY:-python3}
out=${OUT:-gpu-suite-out}
mkdir -p "$out"
# GPU_BUNDLE: the bundle's folder (the tests name none, so a bundle made here for a GPU run leaves them alone).
bundle=${GPU_BUNDLE-.gpu}
if [ -n "$bundle" ] && [ -d "$bundle/wheels" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$bundle"/wheels/*.whl || exit 1
  cp -r "$bundle/site/clip" /tmp/site/
  export PYTHONPATH="/tmp/site:$PWD:$PWD/proto/gen" PATH="$PWD/$bundle/redis/bin:$PATH"
  # The service preloads jemalloc as the image does (services/inference/allocator.py): the bundle's, beside Redis.
  export CLASSROOM_JEMALLOC_LIBRARY="$PWD/$bundle/redis/lib/libjemalloc.so.2"
else
  echo "gpu_run.sh: no bundle here (tests/bench/gpu_bundle.sh makes .gpu/): $PY's own packages"
  export PYTHONPATH="$PWD:$PWD/proto/gen"
fi
# The suite forks a child per part: checking for CUDA through NVML keeps the parent from initialising it.
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTORCH_NVML_BASED_CUDA_CHECK=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "gpu_run.sh: no nvidia-smi here"
"$PY" -c 'import torch, diffusers, transformers, grpc; print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__, "grpc", grpc.__version__, "cuda", torch.cuda.is_available())' || exit 1
exec "$PY" -m tests.bench.gpu_suite --out "$out" "$@"
