# mmarray: every set-up step lives here.  `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WERROR := -Wall -Wextra -Werror
SRC    := $(wildcard src/*.c src/*.h)
SO     := mmarray/_core$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
PYTEST := $(PY) -m pytest
ASAN_RT = $(shell gcc -print-file-name=libasan.so)
UBSAN_RT = $(shell gcc -print-file-name=libubsan.so)

.PHONY: help venv build demo test test-fast bench scaling asan valgrind lint docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=68" wheel "numpy>=2"
	$(PY) -m pip install -q --no-build-isolation -e ".[test,lint]"
	touch $@

venv: $(STAMP)  ## create .venv and install mmarray with its test and lint extras

$(SO): $(STAMP) $(SRC)
	MMARRAY_CFLAGS="$(WERROR)" $(PY) setup.py -q build_ext --inplace --force

build: $(SO)  ## compile mmarray._core in place (-Wall -Wextra -Werror)

demo: build  ## the walk-through: python -m mmarray demo
	$(PY) -m mmarray demo

test: build  ## the whole test suite, docs examples included
	$(PYTEST) -q

test-fast: build  ## the test suite without the tests marked slow
	$(PYTEST) -q -m "not slow"

bench: build  ## benchmarks against numpy and the multiprocessing recipes; prints the ratio table
	mkdir -p .benchmarks && $(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,rounds --benchmark-sort=name --benchmark-json=.benchmarks/last.json
	$(PY) -m benchmarks.report

scaling: build  ## median time and speedup for 1, 2, 4, 8, 16 workers (as many as there are CPUs)
	$(PY) -m benchmarks.scaling

# handle_sigbus=0: ASan's SIGBUS handler would report and abort where tests/test_sigbus.py
# expects the default action (death by SIGBUS) behind mmarray's chained guard handler.
asan: $(STAMP)  ## the test suite under AddressSanitizer + UBSan, then rebuild normally
	MMARRAY_CFLAGS="$(WERROR) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		$(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_sigbus=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(PYTEST) -q -m "not slow" -p no:cacheprovider; \
		rc=$$?; touch src/module.c; $(MAKE) build; exit $$rc

valgrind: build  ## the Region and array tests under valgrind memcheck
	PYTHONMALLOC=malloc valgrind -q --error-exitcode=1 --track-origins=no --leak-check=no \
		--suppressions=tools/valgrind.supp $(PYTEST) -q -p no:cacheprovider -m "not slow" tests/test_region.py tests/test_api.py

lint: $(STAMP)  ## ruff and mypy on the Python code
	$(VENV)/bin/ruff check mmarray tests benchmarks
	$(VENV)/bin/ruff format --check mmarray tests benchmarks
	$(VENV)/bin/mypy mmarray

docs: build  ## run the examples in docs/ and the docstrings
	$(PYTEST) -q docs mmarray --doctest-modules

clean:  ## remove build outputs (keeps .venv)
	rm -rf build *.egg-info mmarray/*.so .pytest_cache .benchmarks
