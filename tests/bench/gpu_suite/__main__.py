"""`python -m tests.bench.gpu_suite`: the GPU suite's command line (see the package's docstring)."""

from tests.bench.gpu_suite.run import main

if __name__ == "__main__":
    raise SystemExit(main())
