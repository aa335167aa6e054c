"""The package's layering, checked on the source: every import (function-local ones included)
goes to the same layer or one below it, and `delta_rlvr.core` imports nothing but torch and the
standard library. A layer may use any layer listed before it.

    errors                     the errors a user can cause
    core, stats                DelTA's math (torch only); plain-float statistics
    verifiers, models          rewards; models, sampling, log-probs, token vectors
    data                       records, loaders, tasks' data, templates
    train                      the RL step and the trainer
    evaluation, adapters, rewards   eval; DelTA in TRL and verl; reward functions for both
    analysis                   compare, inspect, audit-proxy, plots
    cli                        the command line
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "delta_rlvr"

LAYERS = {
    "errors": 0,
    "core": 1, "stats": 1,
    "verifiers": 2, "models": 2,
    "data": 3,
    "train": 4,
    "evaluation": 5, "adapters": 5, "rewards": 5,
    "analysis": 6,
    "cli": 7,
}  # fmt: skip
#: the only packages outside the standard library that delta_rlvr.core may import
CORE_MAY_IMPORT = {"torch"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def unit(module: str) -> str:
    """delta_rlvr.train.trainer -> train; delta_rlvr.cli -> cli; delta_rlvr -> package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "package"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, function-local ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = "delta_rlvr." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: -node.level]
                out.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                out.append((node.lineno, node.module))
    return out


def test_every_module_belongs_to_a_layer():
    units = {unit("delta_rlvr." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in modules()}
    assert units - {"package", "__init__"} <= set(LAYERS), f"modules outside every layer: {units - set(LAYERS)}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in modules():
        own = unit("delta_rlvr." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if own not in LAYERS:
            continue
        for line, module in imports(path):
            if module == "delta_rlvr" or not module.startswith("delta_rlvr."):
                continue
            target = unit(module)
            if LAYERS.get(target, -1) > LAYERS[own]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {module} ({target})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_core_imports_only_torch_and_the_standard_library():
    foreign = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            if module.startswith("delta_rlvr.core") or top in sys.stdlib_module_names or top in CORE_MAY_IMPORT:
                continue
            foreign.append(f"core/{path.name}:{line} imports {module}")
    assert not foreign, "\n".join(foreign)


@pytest.mark.parametrize("layer", ["errors", "stats"])
def test_the_bottom_layers_import_only_the_standard_library(layer):
    paths = [PACKAGE / "errors.py"] if layer == "errors" else sorted((PACKAGE / layer).rglob("*.py"))
    foreign = [f"{p.name}:{line} imports {m}" for p in paths for line, m in imports(p)
               if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith(f"delta_rlvr.{layer}")]
    assert not foreign, "\n".join(foreign)


def test_the_sources_pass_the_linter():
    """ruff with the project's settings (pyproject.toml: pyflakes' checks, import order, line length)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the dev extra: make install)")
    root = PACKAGE.parents[1]
    done = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "scripts", "examples"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
