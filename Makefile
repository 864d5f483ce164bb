# Diffusion Classroom: the developer's commands. `make help` lists them.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
GEN := proto/gen
PROTO_FILES := $(wildcard proto/diffusion_classroom/v1/*.proto)
APT_PACKAGES := redis-server chromium docker-compose openssl caddy libjemalloc2

export PYTHONUNBUFFERED := 1
# Tests and benchmarks never reach a model hub (`make up` may: it downloads real weights).
OFFLINE := HF_HUB_OFFLINE=1

.PHONY: help install apt proto test test-unit lint format bench serve frontend build-tiny up precompute clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s '	'

install: $(STAMP) apt proto  ## Create .venv and install everything (pip, apt when root).

$(STAMP): requirements/*.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements/torch.txt
	$(PIP) install -q -r requirements/dev.txt
	# Make the repository and the generated stubs importable from the venv.
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/$(GEN)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/diffusion_classroom.pth"
	touch $@

apt:  ## Install the system packages the tests need (when missing and running as root).
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "Please install:$$missing (apt-get install$$missing)"; exit 1; fi; \
	fi

proto: $(GEN)/.stamp  ## Generate the Python gRPC stubs from proto/.

$(GEN)/.stamp: $(PROTO_FILES) $(STAMP)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I proto --python_out=$(GEN) --pyi_out=$(GEN) --grpc_python_out=$(GEN) $(PROTO_FILES)
	touch $@

# Two workers, each taking whole files (their servers and browsers stay per file): much of a
# browser or server test waits, so two share the CPU well. On a 2-core machine the suite takes
# 18.5 to 19.5 minutes; three workers were no faster there (the CPU was busy all the run).
TEST_WORKERS ?= 2

test: install  ## Install everything, check the architecture rules, then run the whole test suite.
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(OFFLINE) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: install  ## Only the fast unit tests.
	$(OFFLINE) $(PY) -m pytest tests/unit

lint: install  ## ruff check and format check, and the architecture rules (import-linter).
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --no-cache

format: install  ## Apply ruff's fixes and formatting.
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: install  ## Run the benchmarks in tests/bench (not part of `make test`).
	$(OFFLINE) $(PY) -m pytest tests/bench -s -p no:cacheprovider

serve: install  ## Run the inference service (CLASSROOM_MODEL=tiny for the offline model).
	$(PY) -m services.inference serve

frontend: install  ## Run the Streamlit front end on :8501 (CLASSROOM_INFERENCE_ADDR, default localhost:50051).
	$(PY) -m streamlit run frontend/app.py --server.port 8501

build-tiny: install  ## Write the tiny offline model to models/tiny.
	$(PY) -m services.inference build-tiny models/tiny

up: install  ## Run the whole stack locally without Docker (Redis, inference, front end on :8501).
	deploy/local-up.sh

precompute: install  ## Render the lesson catalog into the cache (needs a running service).
	$(PY) -m services.precompute render

clean:  ## Remove the venv and generated code.
	rm -rf $(VENV) $(GEN) .pytest_cache .ruff_cache
