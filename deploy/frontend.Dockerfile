# The Streamlit front end: a thin gRPC client, no torch. Build from the repository root:
#   docker build -f deploy/frontend.Dockerfile .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app:/app/proto/gen

WORKDIR /app
COPY requirements/client.txt requirements/frontend.txt requirements/
RUN pip install -r requirements/frontend.txt

COPY proto/ proto/
RUN mkdir -p proto/gen && python -m grpc_tools.protoc -I proto \
      --python_out=proto/gen --pyi_out=proto/gen --grpc_python_out=proto/gen \
      proto/diffusion_classroom/v1/*.proto
COPY services/__init__.py services/
COPY services/common/ services/common/
COPY frontend/ frontend/
COPY .streamlit/ .streamlit/

RUN useradd --create-home --uid 10001 classroom
USER classroom

EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
# frontend.start says the class code in the log, then runs Streamlit.
CMD ["python", "-m", "frontend.start", "--server.port", "8501"]
