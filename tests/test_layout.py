"""The tree keeps the layout rules of docs/architecture.md (checked by tools/layout.py)."""

from __future__ import annotations

import importlib.util
import pathlib
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mmarray_layout", ROOT / "tools" / "layout.py")
assert _spec is not None and _spec.loader is not None
layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layout)


def test_the_repository_keeps_the_layout_rules():
    assert layout.check(ROOT) == []


def _tree(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "mmarray").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir(exist_ok=True)
    return tmp_path


def test_the_checker_finds_two_returns_a_long_function_and_an_ifdef(tmp_path):
    body = "\n".join(f"    x += {i};" for i in range(120))
    root = _tree(
        tmp_path,
        {
            "src/a.c": f"""
            static int
            two_exits(int x)
            {{
                if (x)
                    return 1;
                return 0;
            }}

            static const int table[] = {{1, 2, 3}};

            static void
            long_one(int x)
            {{
            #ifdef __SSE2__
                x = 0;
            #endif
            {body}
            }}

            static int
            platform(void)
            {{
            #ifdef X
                return 1;
            #else
                return 0;
            #endif
            }}
            """,
        },
    )
    found = layout.check(root)
    assert any("two_exits() has 2 returns" in f for f in found), found
    assert any("long_one() has" in f and "at most 100" in f for f in found), found
    assert any("#if inside long_one()" in f for f in found), found
    assert not any("platform()" in f for f in found), found  # one return per configuration
    assert not any("table" in f for f in found), found


def test_the_checker_finds_a_long_c_file_and_a_pyimport(tmp_path):
    lines = "\n".join(f"int v{i};" for i in range(701))
    imports = 'x = PyImport_ImportModule("mmarray._x");'
    root = _tree(tmp_path, {"src/big.c": lines, "src/imp.c": imports})
    found = layout.check(root)
    assert any(f.startswith("src/big.c:1: 701 lines") for f in found), found
    assert any("imp.c:1: the C core imports the mmarray package" in f for f in found), found


def test_the_checker_finds_import_cycles_lazy_ones_included(tmp_path):
    root = _tree(
        tmp_path,
        {
            "mmarray/__init__.py": "from . import _a\n",
            "mmarray/_a.py": "from ._b import f\n",
            "mmarray/_b.py": "def f():\n    from . import _a\n",
            "mmarray/_c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from . import _d\n",
            "mmarray/_d.py": "from . import _c, _core\n",
            "mmarray/_core.pyi": "",
        },
    )
    found = layout.check(root)
    assert found == ["mmarray/: import cycle among mmarray._a, mmarray._b"], found


def test_the_checker_finds_a_long_python_function(tmp_path):
    body = "\n".join(f"    x = {i}" for i in range(100))
    root = _tree(tmp_path, {"mmarray/_long.py": f"def long_one():\n{body}\n"})
    assert layout.check(root) == ["mmarray/_long.py:1: long_one() has 101 lines (at most 100)"]
