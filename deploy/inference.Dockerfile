# The inference service on a CUDA-enabled PyTorch base. Build from the repository root:
#   docker build -f deploy/inference.Dockerfile .
ARG PYTORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${PYTORCH_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app:/app/proto/gen \
    HF_HOME=/data/huggingface

WORKDIR /app
# torch comes with the base image: install the rest without touching it.
COPY requirements/ requirements/
RUN grep -v '^torch' requirements/inference.txt > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY proto/ proto/
RUN mkdir -p proto/gen && python -m grpc_tools.protoc -I proto \
      --python_out=proto/gen --pyi_out=proto/gen --grpc_python_out=proto/gen \
      proto/diffusion_classroom/v1/*.proto
COPY services/ services/

RUN useradd --create-home --uid 10001 classroom && mkdir -p /data && chown classroom /data
USER classroom
ENV CLASSROOM_TINY_DIR=/data/tiny

EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s CMD python -m services.inference health
CMD ["python", "-m", "services.inference", "serve"]
