# The two commands of README.md. Each creates .venv and installs what it needs when missing:
# `make demo` only the package (the main job needs no dev tools, torch or official SDK),
# `make test` the package with its dev, compat and ray extras. One stamp file per install, so demo then
# test adds the extras once, and test then demo installs nothing more.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# The official tinker==0.38.0 SDK, the witness of the 0.38 wire tests (tests/wire). It cannot share a
# virtualenv with the compat extra's 0.6.3 SDK (same package name), so it gets its own; no torch.
OFFICIAL_038_VENV := .venv-tinker038
OFFICIAL_038_STAMP := $(OFFICIAL_038_VENV)/.installed

.PHONY: demo test lint bench clean proto

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# The test install is a superset of the demo's: it satisfies the demo stamp too. The ray extra is here so
# that the Ray tests (tests/fanout/test_ray.py) run in CI; `make demo` stays without it.
$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,compat,ray]'
	touch $@ $(DEMO_STAMP)

# Depends on the Makefile, where the version is pinned: changing the pin reinstalls.
$(OFFICIAL_038_STAMP): Makefile
	test -x $(OFFICIAL_038_VENV)/bin/python || python3 -m venv $(OFFICIAL_038_VENV)
	$(OFFICIAL_038_VENV)/bin/python -m pip install --quiet 'tinker==0.38.0'
	touch $@

demo: $(DEMO_STAMP)
	$(PY) examples/quickstart.py

test: $(TEST_STAMP) $(OFFICIAL_038_STAMP)
	$(PY) -m ruff check supervisors tinker_actors tests bench examples
	$(PY) -m mypy
	# Two workers, whole files each (module fixtures stay in one process): most of the suite waits on
	# sockets, subprocesses and timeouts, not on a core, so this halves the wall time on 2 cores.
	$(PY) -m pytest -n 2 --dist loadfile

bench: $(TEST_STAMP) $(OFFICIAL_038_STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

# Regenerate the 0.38 protobuf module after editing its schema; tests/wire/test_schema.py fails
# while the committed module is stale. Uses the dev extra's pinned grpcio-tools.
proto: $(TEST_STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. tinker_actors/wire/v0_38/tinker.proto

clean:
	rm -rf $(VENV) $(OFFICIAL_038_VENV) .pytest_cache .mypy_cache .ruff_cache
