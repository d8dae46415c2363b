# mmarray: every set-up step lives here.  `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WERROR := -Wall -Wextra -Werror
SRC    := $(wildcard src/*.c src/*.h src/select/*.c src/select/*.h)
CSRC   := $(wildcard src/*.c src/select/*.c)
SO     := mmarray/_core$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
PYTEST := $(PY) -m pytest
ASAN_RT = $(shell gcc -print-file-name=libasan.so)
UBSAN_RT = $(shell gcc -print-file-name=libubsan.so)

# The declared minimums (pyproject.toml says the same; tests/test_packaging.py checks):
# setuptools 77.0.1 is the first to build the PEP 639 `license = "BSD-3-Clause"` field
# (76.1.0 refuses it; there is no 77.0.0 on PyPI).  numpy 2.4.2 is the first on which the
# test suite passes: the tests compare mmarray's quantiles with numpy's, result dtypes
# included, and numpy's rules changed up to 2.4.2 (closest_observation rounding in 2.1;
# the dtype of a quantile of integers in 2.4.0, of float32 input with a float64 q in
# 2.4.1, of a float32 q in 2.4.2), and tests/test_badinput.py expects np.load to refuse
# a negative dimension (numpy 2.3 and newer).
SETUPTOOLS_MIN := 77.0.1
NUMPY_MIN      := 2.4.2

# `make build CC=clang` compiles with clang (default: the compiler Python was built with).
# The stamp names the compiler, so switching compilers rebuilds.
CCNAME  := $(if $(filter default,$(origin CC)),default,$(notdir $(firstword $(CC))))
CCSTAMP := build/.cc-$(CCNAME)

# The C files' compile flags for the analysers: setup.py's define_macros and include dirs
# (keep the two in step).  Expanded when a recipe runs, once .venv exists.
C_ANALYSE = -std=c11 -D_GNU_SOURCE=1 -DNPY_TARGET_VERSION=NPY_1_25_API_VERSION \
	-DNPY_NO_DEPRECATED_API=NPY_1_25_API_VERSION -Isrc \
	-I$(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
	-I$(shell $(PY) -c 'import numpy; print(numpy.get_include())')
# cppcheck reads the sources without the Python and numpy headers; its python library
# knows the C-API macros (Py_RETURN_NONE, Py_BEGIN_ALLOW_THREADS, ...).
CPPCHECK_FLAGS = --std=c11 --library=posix --library=python --quiet --error-exitcode=1 \
	--enable=warning,style,performance,portability,unusedFunction --inline-suppr \
	--suppressions-list=tools/cppcheck.supp -D_GNU_SOURCE=1 -D__GNUC__ -D__linux__ -Isrc

# System tools come from Debian packages, installed on first use (CI starts clean).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# $(call need,COMMANDS,PACKAGES): apt-get install PACKAGES unless every COMMAND exists.
define need
	@missing=""; for t in $(1); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(2)"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2); \
	fi
endef

.PHONY: help venv build demo test test-fast bench scaling fuzz asan valgrind lint c-tools docs \
	dist matrix clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=$(SETUPTOOLS_MIN)" wheel "numpy>=$(NUMPY_MIN)"
	$(PY) -m pip install -q --no-build-isolation -e ".[test,lint,dist]"
	touch $@

venv: $(STAMP)  ## create .venv and install mmarray with its test, lint and dist extras

$(CCSTAMP):
	mkdir -p build && rm -f build/.cc-* && touch $@

$(SO): $(STAMP) $(SRC) $(CCSTAMP)
	MMARRAY_CFLAGS="$(WERROR)" $(PY) setup.py -q build_ext --inplace --force

build: $(SO)  ## compile mmarray._core in place (-Wall -Wextra -Werror); CC=clang for clang

c-tools:  ## install clang, clang-tidy and cppcheck (Debian packages) if missing
	$(call need,clang clang-tidy cppcheck,clang clang-tidy cppcheck)

demo: build  ## the walk-through: python -m mmarray demo
	$(PY) -m mmarray demo

test: build  ## the whole test suite, docs examples included
	$(PYTEST) -q

test-fast: build  ## the test suite without the tests marked slow
	$(PYTEST) -q -m "not slow"

# The bench extra (polars, pyarrow, duckdb: the peers of the median benchmarks), read
# from pyproject.toml and installed into .venv on first use; make test does not need it.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))" > $(VENV)/bench-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/bench-requirements.txt
	touch $@

bench: build $(BENCH_STAMP)  ## benchmarks against numpy, the peers and the floors; prints the ratio table
	mkdir -p .benchmarks && $(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,rounds,iterations --benchmark-sort=name --benchmark-json=.benchmarks/last.json
	$(PY) -m benchmarks.report

scaling: build  ## median time and speedup for 1, 2, 4, 8, 16 workers (as many as there are CPUs)
	$(PY) -m benchmarks.scaling

# CI runs the fuzz with a fixed seed (.ci/run), so that a red build is reproducible;
# this target draws a new seed each time and prints it with any failure.
fuzz: build  ## the API fuzz (tests/fuzz/): 40,000 cases from a new random seed
	env -u MMARRAY_FUZZ_SEED MMARRAY_FUZZ_CASES=40000 $(PYTEST) -q -p no:cacheprovider tests/test_fuzz.py -k every

# The whole suite, the tests marked slow included (about 4 min on 2 cores); the leak
# tests read MMARRAY_SANITIZER and skip the RSS bound (ASan keeps freed memory).
# handle_sigbus=0: ASan's SIGBUS handler would report and abort where tests/test_sigbus.py
# expects the default action (death by SIGBUS) behind mmarray's chained guard handler.
asan: $(STAMP)  ## the whole test suite under AddressSanitizer + UBSan (gcc), then rebuild normally
	CC=gcc MMARRAY_CFLAGS="$(WERROR) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		$(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" PYTHONMALLOC=malloc MMARRAY_SANITIZER=asan \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_sigbus=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(PYTEST) -q -p no:cacheprovider; \
		rc=$$?; touch src/module.c; $(MAKE) build; exit $$rc

# The whole suite (about 15 min on 2 cores: memcheck runs Python some 30x slower); the
# leak tests run a five-hundredth of their cycles there, and tests/conftest.py skips the
# few tests that cannot pass under valgrind, each with its reason (VALGRIND_SKIPS).
valgrind: build  ## the whole test suite under valgrind memcheck
	$(call need,valgrind,valgrind)
	PYTHONMALLOC=malloc MMARRAY_SANITIZER=valgrind valgrind -q --error-exitcode=1 --track-origins=no \
		--leak-check=no --suppressions=tools/valgrind.supp $(PYTEST) -q -p no:cacheprovider -rs

lint: $(STAMP) c-tools  ## ruff and mypy; clang -Werror, clang-tidy and cppcheck on src/*.c and src/select/*.c
	$(VENV)/bin/ruff check mmarray tests benchmarks tools
	$(VENV)/bin/ruff format --check mmarray tests benchmarks tools
	$(VENV)/bin/mypy mmarray
	clang -fsyntax-only $(WERROR) $(C_ANALYSE) $(CSRC)
	@mkdir -p build  # stderr is clang's count of the warnings it hid in system headers
	clang-tidy --quiet $(CSRC) -- $(C_ANALYSE) 2>build/clang-tidy.stderr \
		|| { cat build/clang-tidy.stderr; exit 1; }
	cppcheck $(CPPCHECK_FLAGS) $(CSRC)

docs: build  ## run the examples in docs/ and the docstrings
	$(PYTEST) -q docs mmarray --doctest-modules

# The sdist and the wheel, built with .venv's setuptools and numpy (no download); the
# wheel is built from the sdist, so a C source missing from the sdist fails the build.
dist: $(STAMP)  ## an sdist and a wheel in dist/ (python -m build)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .

# One virtual environment per Python under build/matrix/pyX.Y, with the oldest setuptools
# and numpy declared above (NUMPY_OLDEST_X.Y=... for a Python that the declared numpy has
# no wheels for), a copy of the work tree built with -Werror, and the test suite without
# the tests marked slow (MATRIX_PYTEST="" runs it all).  A Python this machine lacks is
# skipped with a message; pyenv's versions count even when not on PATH.
MATRIX_PYTHONS ?= 3.11 3.12 3.13
MATRIX_PYTEST  ?= -m "not slow"
PYENV_ROOT ?= $(HOME)/.pyenv

matrix:  ## build and test on Python 3.11-3.13, oldest numpy each (build/matrix/)
	@failed=""; for v in $(MATRIX_PYTHONS); do \
		$(MAKE) --no-print-directory matrix-$$v || failed="$$failed $$v"; done; \
	if [ -n "$$failed" ]; then echo "matrix: failed on python$$failed"; exit 1; fi

matrix-%:
	@py=""; for c in python$* $$(ls -d $(PYENV_ROOT)/versions/$*.*/bin/python$* 2>/dev/null | sort -rV); do \
		if "$$c" -c "" 2>/dev/null; then py=$$c; break; fi; done; \
	if [ -z "$$py" ]; then echo "matrix: no python$* on this machine, skipped"; exit 0; fi; \
	set -ex; start=$$(date +%s); d=build/matrix/py$*; np=$(or $(NUMPY_OLDEST_$*),$(NUMPY_MIN)); \
	rm -rf $$d/tree && mkdir -p $$d/tree; \
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $$d/tree; \
	test -x $$d/venv/bin/python || "$$py" -m venv $$d/venv; \
	$$d/venv/bin/python -m pip install -q "setuptools==$(SETUPTOOLS_MIN)" wheel "numpy==$$np"; \
	$$d/venv/bin/python -m pip install -q --no-build-isolation -e "$$d/tree[test]"; \
	cd $$d/tree; \
	../venv/bin/python -c "import numpy, setuptools; assert (numpy.__version__, setuptools.__version__) == ('$$np', '$(SETUPTOOLS_MIN)')"; \
	MMARRAY_CFLAGS="$(WERROR)" ../venv/bin/python setup.py -q build_ext --inplace --force; \
	../venv/bin/python -m pytest -q -p no:cacheprovider $(MATRIX_PYTEST); \
	echo "matrix: python$* numpy $$np setuptools $(SETUPTOOLS_MIN): passed in $$(( $$(date +%s) - start )) s"

clean:  ## remove build outputs (keeps .venv)
	rm -rf build dist *.egg-info mmarray/*.so .pytest_cache .benchmarks
