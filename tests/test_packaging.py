"""Packaging tells the truth: the declared minimums, the sdist, the wheel, ``--version``.

The slow tests build an sdist and a wheel with the oldest setuptools that pyproject.toml
declares (in a virtual environment of their own, packages from PyPI or pip's cache),
then install the wheel into a fresh virtual environment and run it there.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import numpy as np
import pytest

import mmarray

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STEP_TIMEOUT = 600  # seconds for any one step (a pip install, the build)
# A file in a subfolder of src/ that the build's copy of the tree gains: the sdist must
# carry src/ recursively (src/select/ and the like), not only src/*.c.
PROBE = "src/packaging_probe/probe.h"


def _minimum(requirements: list[str], name: str) -> str:
    """The version after ``name>=`` in a list of requirements."""
    for requirement in requirements:
        found = re.fullmatch(rf"{name}\s*>=\s*([0-9.]+)", requirement.strip())
        if found:
            return found.group(1)
    raise AssertionError(f"no {name}>= in {requirements}")


def _release(version: str) -> tuple[int, ...]:
    """``'2.0'`` and ``'2.0.0'`` compare equal."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _makefile_variable(name: str) -> str:
    found = re.search(rf"^{name}\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert found is not None, name
    return found.group(1)


def _run(*command: str | pathlib.Path, cwd: pathlib.Path | None = None) -> str:
    """Run a command without the sanitizer's or this venv's environment; return stdout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"LD_PRELOAD", "PYTHONMALLOC", "PYTHONPATH", "MMARRAY_CFLAGS", "VIRTUAL_ENV"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _venv(where: pathlib.Path, *packages: str) -> pathlib.Path:
    """A fresh virtual environment with ``packages``; returns its bin/ folder."""
    _run(sys.executable, "-m", "venv", where)
    if packages:
        _run(where / "bin" / "python", "-m", "pip", "install", "-q", *packages)
    return where / "bin"


def test_makefile_and_pyproject_declare_the_same_minimums():
    build_requires = PYPROJECT["build-system"]["requires"]
    setuptools_min = _minimum(build_requires, "setuptools")
    assert _makefile_variable("SETUPTOOLS_MIN") == setuptools_min
    numpy_min = _minimum(PYPROJECT["project"]["dependencies"], "numpy")
    assert _release(_makefile_variable("NUMPY_MIN")) == _release(numpy_min)
    # The suite passes from numpy 2.4.2 on (the Makefile says why); build and run alike.
    assert _release(_minimum(build_requires, "numpy")) == _release(numpy_min) >= (2, 4, 2)
    assert PYPROJECT["project"]["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_version_flag():
    done = subprocess.run(
        [sys.executable, "-m", "mmarray", "--version"], capture_output=True, text=True, timeout=60
    )  # this environment as it is (a sanitizer's LD_PRELOAD included)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out == f"mmarray {mmarray.__version__}\n"
    assert PYPROJECT["project"]["scripts"]["mmarray"] == "mmarray.__main__:main"


def _copy_tree(dest: pathlib.Path) -> None:
    """The work tree as git sees it (tracked and new files, not the ignored)."""
    listed = _run("git", "-C", ROOT, "ls-files", "-z", "-co", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / PROBE).parent.mkdir(parents=True)
    (dest / PROBE).write_text("/* tests/test_packaging.py: src/ is packaged recursively */\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(copied tree, dist folder) after ``python -m build`` with the oldest setuptools."""
    if os.environ.get("MMARRAY_SANITIZER"):
        pytest.skip("packaging does not change under a sanitizer; make test runs it")
    if shutil.which("git") is None:
        pytest.skip("needs git to list the work tree")
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    _copy_tree(tree)
    setuptools_min = _minimum(PYPROJECT["build-system"]["requires"], "setuptools")
    bin_ = _venv(
        base / "build-venv",
        f"setuptools=={setuptools_min}",
        "wheel",
        "build",
        f"numpy=={np.__version__}",
    )
    out = base / "dist"
    _run(bin_ / "python", "-m", "build", "--no-isolation", "--outdir", out, tree)
    return tree, out


@pytest.mark.slow
def test_sdist_carries_sources_tests_docs_license_changelog(built):
    tree, out = built
    (sdist,) = out.glob("mmarray-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py", "Makefile"}
    for folder in ("src", "tests", "docs", "mmarray"):
        wanted |= {
            path.relative_to(tree).as_posix()
            for path in (tree / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
    assert PROBE in wanted
    assert wanted <= names, sorted(wanted - names)
    assert not [name for name in names if name.endswith((".so", ".o", ".pyc"))]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(built, tmp_path):
    _, out = built
    (wheel,) = out.glob("mmarray-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = f"mmarray-{mmarray.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        assert archive.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert "License-Expression: BSD-3-Clause" in metadata
    numpy_min = _minimum(PYPROJECT["project"]["dependencies"], "numpy")
    assert f"Requires-Dist: numpy>={numpy_min}" in metadata
    bin_ = _venv(tmp_path / "venv", str(wheel))
    run = tmp_path / "elsewhere"  # not the repository: import the installed package
    run.mkdir()
    code = "import mmarray, numpy; print(mmarray.__version__, mmarray.median(numpy.arange(7.0)))"
    assert _run(bin_ / "python", "-c", code, cwd=run).split() == [mmarray.__version__, "3.0"]
    version = f"mmarray {mmarray.__version__}\n"
    assert _run(bin_ / "python", "-m", "mmarray", "--version", cwd=run) == version
    assert _run(bin_ / "mmarray", "--version", cwd=run) == version
