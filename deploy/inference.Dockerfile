# The inference service with CUDA-enabled PyTorch. Build from the repository root:
#   docker build -f deploy/inference.Dockerfile .
# PyPI's torch wheels for Linux x86-64 are CUDA builds that carry their CUDA
# libraries; the host needs only the NVIDIA driver and the container toolkit.
# The same torch release as development and CI (requirements/torch.txt).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app:/app/proto/gen \
    HF_HOME=/data/huggingface

WORKDIR /app
# A C compiler: Triton builds its kernel launchers with it when the UNet is compiled on the GPU
# (CLASSROOM_UNET_COMPILE=auto); without one the service would serve the UNet uncompiled.
# jemalloc: the service starts itself with it, keeping the pages each step's tensors free (services/inference/allocator.py).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libjemalloc2 && rm -rf /var/lib/apt/lists/*
COPY requirements/ requirements/
RUN pip install -r requirements/torch.txt && pip install -r requirements/inference.txt

COPY proto/ proto/
RUN mkdir -p proto/gen && python -m grpc_tools.protoc -I proto \
      --python_out=proto/gen --pyi_out=proto/gen --grpc_python_out=proto/gen \
      proto/diffusion_classroom/v1/*.proto
COPY services/ services/

RUN useradd --create-home --uid 10001 classroom && mkdir -p /data && chown classroom /data
USER classroom
# The compiled UNet, kept beside the weights on the /data volume: later starts load it in seconds.
ENV CLASSROOM_TINY_DIR=/data/tiny \
    CLASSROOM_COMPILE_CACHE_DIR=/data/compile-cache

EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s CMD python -m services.inference health
CMD ["python", "-m", "services.inference", "serve"]
