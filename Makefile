# The two commands of README.md. Each creates .venv and installs what it needs when missing:
# `make demo` only the package (the main job needs no dev tools, torch or official SDK),
# `make test` the package with its dev and compat extras. One stamp file per install, so demo then
# test adds the extras once, and test then demo installs nothing more.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# The test install is a superset of the demo's: it satisfies the demo stamp too.
$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,compat]'
	touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/quickstart.py

test: $(TEST_STAMP)
	$(PY) -m ruff check supervisors tinker_actors tests bench examples
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(TEST_STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
