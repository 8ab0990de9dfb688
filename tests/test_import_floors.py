"""The package's import floors: the ground imports only the ground, the middle never the top, no cycles.

Ground: config, registry, structures, layers, utils. Middle: modeling, data, solver, checkpoint,
evaluation (modeling and data never import each other). Top: engine, export, benchmark, browser.
Nothing in the package imports tools/.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "detkit"
FLOORS = {**dict.fromkeys(["config", "registry", "structures", "layers", "utils"], 0),
          **dict.fromkeys(["modeling", "data", "solver", "checkpoint", "evaluation"], 1),
          **dict.fromkeys(["engine", "export", "benchmark", "browser"], 2)}


def _imports(path: pathlib.Path):
    """The detkit subpackages (first component) and raw module names ``path`` imports."""
    parts = list(path.relative_to(PACKAGE).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - (node.level - 1)]
            names = [".".join(base + ([node.module] if node.module else []))]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module[len("detkit."):]] if node.module.startswith("detkit.") else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name[len("detkit."):] if a.name.startswith("detkit.") else a.name for a in node.names]
        yield from names


def _edges():
    edges = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if len(rel) == 1 and rel[0] == "__init__.py":
            continue
        pkg = rel[0][:-3] if rel[0].endswith(".py") else rel[0]
        for name in _imports(path):
            assert not name.startswith("tools"), f"{path} imports {name}: the library never imports tools/"
            target = name.split(".")[0]
            if target in FLOORS and target != pkg:
                edges.setdefault((pkg, target), []).append(str(path.relative_to(PACKAGE)))
    return edges


def test_every_subpackage_has_a_floor():
    found = {p.name[:-3] if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert found <= set(FLOORS), f"give {sorted(found - set(FLOORS))} a floor in this test and in the README"


@pytest.mark.parametrize("edge", sorted(_edges()))
def test_imports_go_down_or_sideways_within_a_floor(edge):
    src, dst = edge
    assert FLOORS[dst] <= FLOORS[src], f"{src} (floor {FLOORS[src]}) imports {dst} (floor {FLOORS[dst]}): {_edges()[edge]}"
    assert {src, dst} != {"modeling", "data"}, f"modeling and data never import each other: {_edges()[edge]}"


def test_no_cycle_between_subpackages():
    edges = set(_edges())
    cycles = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not cycles, f"import cycles between subpackages: {cycles}"
