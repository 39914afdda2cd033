"""README's "Project layout" arrows, checked: each layer imports only the layers below it
(`cli` -> `server`/`demo` -> `app` -> `handlers/` -> `services` -> domain -> `influx`).
An import under `if TYPE_CHECKING:` (an annotation's type) is not an arrow."""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "kubemonitor"
TOP = {"cli", "server", "demo", "__main__"}
WIRING = {"app", "services"}
# the modules that must never reach up (what they may not import)
RULES = {
    "handlers": TOP | {"app"},
    "domain": TOP | WIRING | {"handlers"},
    "influx": TOP | WIRING | {"handlers", "usage", "rollups", "billing", "poller", "metrics", "ratecard"},
}


def layer(module: str) -> str:
    if module.startswith("handlers."):
        return "handlers"
    if module in TOP or module in WIRING:
        return module
    return "influx" if module == "influx" else "domain"


def imports(path: pathlib.Path) -> set[str]:
    """The package modules `path` imports (relative imports, by their first component below the package)."""
    module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    depth = module.count(".")
    tree = ast.parse(path.read_text())
    # `if TYPE_CHECKING:` imports name a type for an annotation; they run nothing
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and id(node) not in typing_only:
            base = module.split(".")[: depth + 1 - node.level]
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target] if node.module else [[*target, a.name] for a in node.names]
            for t in names:
                found.add(t[0] if t[0] != "handlers" or len(t) == 1 else ".".join(t[:2]))
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_arrows_point_one_way(path):
    module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    forbidden = RULES.get(layer(module), set())
    wrong = {t for t in imports(path) if t in forbidden or t.split(".")[0] in forbidden}
    assert not wrong, f"{module} imports {sorted(wrong)}: against the arrows of README's Project layout"


SOURCES = {"heapster", "telegraf"}
# Only the registry names a source (adding one = one module, registered there); everything
# else reads a metric's layout or asks the registry by name (KUBEMONITOR_SOURCE).
NAMES_SOURCES = {"collectors", "heapster", "telegraf"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_registry_names_a_data_source(path):
    module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    if module in NAMES_SOURCES:
        return
    assert not imports(path) & SOURCES, f"{module} imports a data source; take the layout from the metric (its source's catalog)"
