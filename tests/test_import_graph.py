"""No import cycle in the packages gnn4itk, module_map and export (issue #18), and every module imports.

The import graph is built with ``ast`` from the source files: an edge A -> B for each import in A of a
module B of these packages (``from P import name`` goes to ``P.name`` if that is a module, else to ``P``).
Imports that run when A is imported (module level, class bodies, ``if``/``try`` blocks; not under
``if TYPE_CHECKING``) must form no cycle. Imports inside functions are allowed (lazy loading keeps the
command line and the light modules fast), but one that closes a cycle -- the usual way to hide one --
needs a comment on its line or the line above saying why (say, a heavy optional dependency).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gnn4itk", "module_map", "export")


def package_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of :data:`PACKAGES`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = package_modules()


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules of :data:`PACKAGES` that one import statement in ``module`` imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            parts = (module if is_package else module.rpartition(".")[0]).split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        else:
            base = node.module
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:  # ``import a.b.c`` of a name inside a module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.append(name)
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    """(module -> modules its import runs, module -> [(module, line)] imported inside its functions)."""
    eager: dict[str, set[str]] = {}
    lazy: dict[str, list[tuple[str, int]]] = {}
    for module, path in MODULES.items():
        eager[module], lazy[module] = set(), []
        is_package = path.name == "__init__.py"

        def visit(node, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(child, True)
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                elif isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in imported_modules(child, module, is_package):
                        if in_function:
                            lazy[module].append((target, child.lineno))
                        else:
                            eager[module].add(target)
                else:
                    visit(child, in_function)

        visit(ast.parse(path.read_text(), str(path)), False)
    return eager, lazy


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def has_comment(path: Path, line: int) -> bool:
    """A ``#`` comment on source line ``line`` (1-based) or on the line above it."""
    lines = path.read_text().splitlines()
    this, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
    return "#" in this.split("import", 1)[-1] or above.startswith("#")


def test_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_among_the_imports_that_run_at_import_time():
    eager, _ = import_graph()
    assert len(eager) >= 90 and "module_map.map" in eager and "gnn4itk.pipeline" in eager
    assert cycles(eager) == []


def test_a_function_local_import_that_closes_a_cycle_says_why():
    eager, lazy = import_graph()
    everything = {module: eager[module] | {target for target, _ in lazy[module]} for module in eager}
    components = [set(component) for component in cycles(everything)]
    unexplained = [
        f"{MODULES[module].relative_to(REPO)}:{line} imports {target}"
        for module, imports in lazy.items()
        for target, line in imports
        if any(module in c and target in c for c in components) and not has_comment(MODULES[module], line)
    ]
    assert unexplained == []


def test_every_module_imports_in_a_fresh_interpreter():
    # ``__main__`` modules are skipped: importing one runs its command. A missing third-party module
    # (an optional extra such as numba, or triton_python_backend_utils, which exists inside Triton only)
    # is reported, not failed.
    names = [name for name in MODULES if not name.endswith(".__main__")]
    code = (
        "import importlib, json, sys\n"
        "failed, optional = {}, {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as error:\n"
        f"        if (error.name or '').split('.')[0] in {PACKAGES!r}:\n"
        "            failed[name] = repr(error)\n"
        "        else:\n"
        "            optional[name] = error.name\n"
        "    except Exception as error:\n"
        "        failed[name] = repr(error)\n"
        "print(json.dumps({'failed': failed, 'optional': optional}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert set(report["optional"].values()) <= {"numba", "triton_python_backend_utils", "acts", "pythia8", "lightning",
                                                "tritonclient", "uproot"}
