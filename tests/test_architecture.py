"""The package's shape (issue 17, docs/ARCHITECTURE.md): no import cycle, and no function over the
size limits unless its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: Longest function body (lines after the docstring), and most parameters (self/cls not counted),
#: before a reason is owed. CLI commands are not held to the parameter limit: each of their
#: parameters is an option typer declares, and their docstring is their --help.
MAX_LINES, MAX_PARAMS = 60, 8
#: How a docstring gives that reason: a line starting with it.
REASON = "Size:"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "semzip").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (at module level or inside functions), skipping
    `if TYPE_CHECKING:` blocks, which only type checkers follow."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the semzip modules it imports. `from . import x` names the submodule x, not the
    package; `from .m import name` names m."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = subs if all(s in modules for s in subs) else [base]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones():
    graph = import_graph()
    assert "semzip.codecs.pqvae._train" in graph["semzip.codecs.pqvae._codec"]  # imported inside fit
    assert "semzip.codecs.pqvae._codec" not in graph["semzip.codecs.pqvae._train"]  # TYPE_CHECKING only


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def size(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """(body lines after the docstring, parameters other than self/cls) of a function."""
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    lines = node.end_lineno - body[0].lineno + 1 if body and node.end_lineno else 0
    a = node.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    return lines, len(params) - (bool(params) and params[0].arg in ("self", "cls"))


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(ast.unparse(d).startswith("app.command") for d in node.decorator_list)


def oversized(tree: ast.Module) -> list[str]:
    """Functions over the limits whose docstring has no line starting with REASON."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        lines, params = size(node)
        if lines <= MAX_LINES and (params <= MAX_PARAMS or _is_command(node)):
            continue
        if not any(line.strip().startswith(REASON) for line in (ast.get_docstring(node) or "").splitlines()):
            found.append(f"{node.name} ({lines} lines, {params} parameters)")
    return found


def test_the_size_rule_counts_and_accepts_reasons():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    long = f'def f():\n    """Doc."""\n{body}\n'
    assert oversized(ast.parse(long)) == ["f (61 lines, 0 parameters)"]
    assert oversized(ast.parse(long.replace('"""Doc."""', '"""Doc.\n\n    Size: a table."""'))) == []
    wide = "def g(self, a, b, c, d, e, f, h, i, *, j):\n    pass\n"
    assert oversized(ast.parse(wide)) == ["g (1 lines, 9 parameters)"]
    assert oversized(ast.parse("@app.command()\n" + wide)) == []


def test_size_limits_or_a_stated_reason():
    found = [f"{name}.{f}" for name, path in _modules().items() for f in oversized(ast.parse(path.read_text()))]
    assert found == [], f"over {MAX_LINES} lines or {MAX_PARAMS} parameters with no {REASON!r} docstring line"

