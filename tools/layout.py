"""The layout rules of mmarray's tree, checked: ``python tools/layout.py [ROOT]``.

Prints one line per violation (``path:line: what``) and exits 1 if there is any:

* a C file (``src/``, headers included) over ``MAX_C_FILE`` lines;
* a function over ``MAX_FUNCTION`` lines, in ``src/`` (C) or ``mmarray/`` (Python),
  counted from its name to its last line, docstring included;
* a C function with more than one ``return`` (one exit path);
* a preprocessor conditional inside a C function over ``MAX_IFDEF_FUNCTION`` lines
  (platform and SIMD differences live in small helpers);
* a ``PyImport_*`` call in C that names the ``mmarray`` package (data flows one way);
* an import cycle among the modules of ``mmarray/``, lazy imports inside functions
  included (imports under ``if TYPE_CHECKING:`` do not run and are left out).

``tests/test_layout.py`` runs it over the repository.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_C_FILE = 700
MAX_FUNCTION = 100
MAX_IFDEF_FUNCTION = 40

_C_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_C_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')
_C_NAME = re.compile(r"([A-Za-z_]\w*)\s*\($")
_PYIMPORT = re.compile(r'PyImport_\w+\s*\(\s*"mmarray')


def _blank(match: re.Match[str]) -> str:
    """Replace a comment or string by spaces, keeping its newlines (line numbers)."""
    text = match.group(0)
    keep = '""' if text.startswith('"') else ""
    return keep + re.sub(r"[^\n]", " ", text[len(keep) :])


def _c_code(text: str, first_branch: bool = False) -> tuple[str, set[int]]:
    """Return the code with comments, strings and preprocessor lines blanked, and the
    numbers (1-based) of the lines that hold a preprocessor conditional.

    With ``first_branch``, the lines under an ``#else`` or ``#elif`` are blanked too,
    so that each function reads as one configuration compiles it."""
    text = _C_COMMENT.sub(_blank, text)
    text = _C_STRING.sub(_blank, text)
    lines = text.split("\n")
    conditionals: set[int] = set()
    directive = False
    later_branch: list[bool] = []  # per open conditional: inside an #else/#elif branch
    for i, line in enumerate(lines):
        if directive or line.lstrip().startswith("#"):
            word = re.match(r"\s*#\s*(\w+)", line)
            kind = word.group(1) if word and not directive else ""
            if kind in ("if", "ifdef", "ifndef", "elif", "else"):
                conditionals.add(i + 1)
            if kind in ("if", "ifdef", "ifndef"):
                later_branch.append(False)
            elif kind in ("elif", "else") and later_branch:
                later_branch[-1] = True
            elif kind == "endif" and later_branch:
                later_branch.pop()
            directive = line.rstrip().endswith("\\")
            lines[i] = ""
        elif first_branch and any(later_branch):
            lines[i] = ""
    return "\n".join(lines), conditionals


def c_functions(text: str, first_branch: bool = False) -> Iterator[tuple[str, int, int, str]]:
    """Yield (name, first line, last line, body) of each function defined in C text."""
    code, _ = _c_code(text, first_branch)
    depth = 0
    head_start = 0  # where the current top-level declaration began
    i = 0
    while i < len(code):
        ch = code[i]
        if ch in ";}" and depth == 0:
            head_start = i + 1
        elif ch == "{":
            if depth == 0:
                head = code[head_start:i]
                paren = head.find("(")
                is_function = head.rstrip().endswith(")") and "=" not in head and paren > 0
                if is_function:
                    m = _C_NAME.search(head[: paren + 1])
                    end = _matching_brace(code, i)
                    if m is not None:
                        first = code.count("\n", 0, head_start + m.start()) + 1
                        last = code.count("\n", 0, end) + 1
                        yield m.group(1), first, last, code[i : end + 1]
                    i = end
                    head_start = end + 1
                    i += 1
                    continue
            depth += 1
        elif ch == "}":
            depth -= 1
        i += 1


def _matching_brace(code: str, start: int) -> int:
    """Index of the brace that closes the one at ``start``."""
    depth = 0
    for j in range(start, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def check_c(path: Path, rel: str) -> list[str]:
    """The violations of one C source or header."""
    text = path.read_text()
    out = []
    nlines = text.count("\n") + (not text.endswith("\n"))
    if nlines > MAX_C_FILE:
        out.append(f"{rel}:1: {nlines} lines (at most {MAX_C_FILE})")
    for m in _PYIMPORT.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append(f"{rel}:{line}: the C core imports the mmarray package")
    _, conditionals = _c_code(text)
    for name, first, _last, body in c_functions(text, first_branch=True):
        returns = len(re.findall(r"\breturn\b", body))
        if returns > 1:
            out.append(f"{rel}:{first}: {name}() has {returns} returns (one exit path)")
    for name, first, last, _body in c_functions(text):
        length = last - first + 1
        if length > MAX_FUNCTION:
            out.append(f"{rel}:{first}: {name}() has {length} lines (at most {MAX_FUNCTION})")
        inside = sorted(n for n in conditionals if first <= n <= last)
        if inside and length > MAX_IFDEF_FUNCTION:
            out.append(
                f"{rel}:{inside[0]}: #if inside {name}() ({length} lines; platform and SIMD "
                f"differences belong in helpers of at most {MAX_IFDEF_FUNCTION})"
            )
    return out


def check_python(path: Path, rel: str) -> list[str]:
    """The functions of one Python module that are too long."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION:
                out.append(
                    f"{rel}:{node.lineno}: {node.name}() has {length} lines "
                    f"(at most {MAX_FUNCTION})"
                )
    return out


def _module_name(package: Path, path: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (those under ``if TYPE_CHECKING:`` left out)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (at top level or lazily)."""
    files = {_module_name(package, p): p for p in package.rglob("*.py")}
    stubs = {_module_name(package, p) for p in package.rglob("*.pyi")}  # C modules
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{mod}.{a.name}" for a in node.names]
                if node.module is None:  # "from . import x": the modules x, not the package
                    targets = [t for t in subs if t in files or t in stubs] or [mod]
                else:
                    targets = [mod, *subs]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check(root: Path) -> list[str]:
    """Every violation under ``root`` (a checkout of mmarray)."""
    out: list[str] = []
    for path in sorted((root / "src").rglob("*")):
        if path.suffix in (".c", ".h", ".inc"):
            out += check_c(path, str(path.relative_to(root)))
    package = root / "mmarray"
    for path in sorted(package.rglob("*.py")):
        out += check_python(path, str(path.relative_to(root)))
    for comp in cycles(import_graph(package)):
        out.append(f"mmarray/: import cycle among {', '.join(comp)}")
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent)
    problems = check(root)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
