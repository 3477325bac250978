"""The import graph of the `tunelab` package, read from its source (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spaces", "trainers", "search", "studies")


def modules() -> dict[str, Path]:
    """Every module of tunelab: dotted name -> file."""
    out = {"tunelab": ROOT / "__init__.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("tunelab", *parts))
            out[name.removesuffix(".__init__")] = path
    return out


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The most specific known module `name` names (a package's attribute counts as the package)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, module: str, known: dict[str, Path]) -> dict[str, int]:
    """The tunelab modules `module` imports anywhere in its file (functions, TYPE_CHECKING blocks), with a line."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the submodule; `from pkg import name` imports the package
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            if name.startswith("tunelab"):
                target = _target(name, known)
                if target is not None and target != module:
                    out.setdefault(target, node.lineno)
    return out


def graph() -> dict[str, dict[str, int]]:
    """Module -> {imported module: line}."""
    known = modules()
    return {m: imports(p, m, known) for m, p in known.items()}


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    for c in cycles(graph()):
        print(len(c), c)
