"""Every import points down the layers (README, "How the pieces fit"):

    4 entry points      memq.cli, memq.api
    3 client operations memq.client and its helpers, memq.quick, memq.health, ...
    2 workers/scheduler workers, scheduler
    1 storage           storage
    0 foundations       memq.settings, memq.constants and other leaf modules

A module may import its own layer or any layer below, never one above; function-level
(lazy) imports count too. The walk is over the source's AST, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("memq", "storage", "workers", "scheduler")

# Longest prefix wins; every module must fall under one (the test says which does not).
LAYERS: dict[str, int] = {
    "memq.cli": 4,
    "memq.api": 4,
    "memq.client": 3,
    "memq.batches": 3,
    "memq.provider_batch_client": 3,
    "memq.memory_client": 3,
    "memq.schedules_client": 3,
    "memq.ingest_client": 3,
    "memq.waiting": 3,
    "memq.quick": 3,
    "memq.health": 3,
    "memq.limits": 3,
    "memq.views": 3,
    "memq.detect": 3,
    "workers": 2,
    "scheduler": 2,
    "storage": 1,
    "memq": 0,  # memq/__init__, settings, constants, defaults, text, isotime, logging_setup, errors, provider
}
NAMES = {4: "entry points", 3: "client operations", 2: "workers/scheduler", 1: "storage", 0: "foundations"}


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best):
                best = prefix
    return None if best is None else LAYERS[best]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # Alembic scripts: run by storage.db, never imported by memq's code
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, lazy ones included."""
    out = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((target, node.lineno))
            out += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in out if name.split(".")[0] in PACKAGES]


def upward_imports() -> list[str]:
    known = modules()
    problems = []
    for module, path in sorted(known.items()):
        here = layer_of(module)
        if here is None:
            problems.append(f"{module}: in no layer (add it to LAYERS)")
            continue
        for target, line in imports_of(module, path):
            if target not in known and target.rsplit(".", 1)[0] in known:
                continue  # `from pkg.mod import name`: the module entry carries the check
            there = layer_of(target)
            if there is not None and there > here:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} ({NAMES[here]}) imports "
                                f"{target} ({NAMES[there]})")
    return problems


def test_every_import_points_down_the_layers():
    # given every module of memq's packages, when their imports are read, then none points up
    problems = upward_imports()
    assert not problems, "imports that point up a layer:\n" + "\n".join(problems)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    # given a module with a function-level import of an entry point, and a relative import
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from memq.cli import main\n\nfrom . import step\n")
    # then both are found (so a lazy upward import cannot hide from the test)
    found = dict(imports_of("workers.mod", source))
    assert "memq.cli" in found and "workers.step" in found
    assert layer_of("workers.mod") == 2 and layer_of("memq.cli.main") == 4 and layer_of("memq.settings") == 0


if __name__ == "__main__":
    print("\n".join(upward_imports()) or "every import points down")
