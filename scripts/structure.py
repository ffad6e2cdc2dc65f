"""Print the shape of ``proxy/``: lines, largest classes, widest signatures, the import map.

The import map: arrows between packages, layers, cycles.

    .venv/bin/python scripts/structure.py [--top N]

The figures the maintainers compare before and after a reshaping (docs/architecture.md). Imports
are read from the source (``import``/``from`` anywhere in a module, ``TYPE_CHECKING`` blocks
included), so nothing is imported or run. A layer is one step of the longest chain of imports
between modules, after folding every import cycle into one node.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "proxy"
# The emulator is a tool beside the service (it imports nothing from it): left out.
LEFT_OUT = ("proxy.sandbox",)


@dataclass(frozen=True)
class ClassShape:
    """One class: where it is, its length, its fields and its methods."""

    name: str
    lines: int
    fields: int
    methods: int


def modules() -> dict[str, Path]:
    """Return every module of the package by dotted name."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(LEFT_OUT):
            found[name] = path
    return found


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Return the package's modules that module ``name`` imports."""
    package = name if name in known and _is_package(name) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    resolved = set()
    for target in targets:
        module = target
        while module and module not in known:
            module = module.rpartition(".")[0]
        if module and module != name:
            resolved.add(module)
    return resolved


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def package_of(module: str) -> str:
    """Return the package a module belongs to: ``proxy.cache`` for ``proxy.cache.entry``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Return the graph's strongly connected components, each after every one it reaches."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = set()
            while (member := stack.pop()) != node:
                component.add(member)
            components.append(component | {node})

    for root in sorted(graph):
        if root not in index:
            visit(root)
    return components


def layers(graph: dict[str, set[str]]) -> int:
    """Return the number of modules on the longest import chain, each cycle counted as one."""
    components = strongly_connected(graph)
    owner = {member: number for number, component in enumerate(components) for member in component}
    # Tarjan emits a component after every component it imports: depth in one pass.
    depth: dict[int, int] = {}
    for number, component in enumerate(components):
        below = [
            depth[owner[child]]
            for member in component
            for child in graph[member]
            if owner[child] != number
        ]
        depth[number] = 1 + max(below, default=0)
    return max(depth.values(), default=0)


def class_shapes(tree: ast.Module, module: str) -> list[ClassShape]:
    """Every class in a module with its lines, fields (assigned on self or declared) and methods."""
    shapes = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [
            item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        fields = {
            item.target.id
            for item in node.body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        }
        for method in methods:
            for sub in ast.walk(method):
                targets = (
                    sub.targets
                    if isinstance(sub, ast.Assign)
                    else [sub.target]
                    if isinstance(sub, ast.AnnAssign)
                    else []
                )
                fields |= {
                    target.attr
                    for target in targets
                    if isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                }
        end = node.end_lineno or node.lineno
        shapes.append(
            ClassShape(f"{module}.{node.name}", end - node.lineno + 1, len(fields), len(methods))
        )
    return shapes


def signatures(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """Every function's parameter count (``self`` and ``cls`` left out), with its name."""
    widths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            names = [
                a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
            ]
            count = len([n for n in names if n not in {"self", "cls"}])
            widths.append((count, f"{module}.{node.name}"))
    return widths


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5, help="rows per ranking")
    top = parser.parse_args().top
    found = modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in found.items()}
    known = set(found)
    graph = {name: imports(name, tree, known) for name, tree in trees.items()}

    lines: dict[str, int] = defaultdict(int)
    for name, path in found.items():
        lines[package_of(name)] += len(path.read_text().splitlines())
    print("lines per package")
    for package, count in sorted(lines.items(), key=lambda item: -item[1]):
        print(f"  {package:28} {count:6}")

    shapes = sorted(
        (s for n, t in trees.items() for s in class_shapes(t, n)), key=lambda s: -s.lines
    )
    print("largest classes (lines, fields, methods)")
    for shape in shapes[:top]:
        print(f"  {shape.name:52} {shape.lines:4} {shape.fields:3} {shape.methods:3}")

    widths = sorted((w for n, t in trees.items() for w in signatures(t, n)), reverse=True)
    print("widest signatures (parameters)")
    for count, name in widths[:top]:
        print(f"  {name:60} {count:3}")

    arrows = {
        (package_of(a), package_of(b))
        for a, targets in graph.items()
        for b in targets
        if package_of(a) != package_of(b)
    }
    packages = {package_of(name) for name in found}
    package_graph = {p: {b for a, b in arrows if a == p} for p in packages}
    module_cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    package_cycles = [c for c in strongly_connected(package_graph) if len(c) > 1]
    print("import map")
    print(f"  modules {len(found)}, imports between modules {sum(map(len, graph.values()))}")
    print(f"  packages {len(packages)}, arrows between packages {len(arrows)}")
    chains = f"longest module chain {layers(graph)}, package chain {layers(package_graph)}"
    print(f"  layers: {chains}")
    print(f"  module cycles {len(module_cycles)}: {[sorted(c) for c in module_cycles]}")
    print(f"  package cycles {len(package_cycles)}: {[sorted(c) for c in package_cycles]}")


if __name__ == "__main__":
    main()
