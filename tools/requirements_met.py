"""Exit 0 when this checkout's kubemonitor and every requirement of the named extras
are installed at versions pyproject.toml accepts; else say what is missing and exit 1.

`make test` and `make demo` call it to install only when something is missing, so
they are fast when all is there and right on a fresh machine. pyproject.toml is
read (not the installed metadata), so a requirement added since the last install
counts as missing.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh machine: nothing of the project is installed yet
    print("installing, because of: packaging (not installed)", file=sys.stderr)
    sys.exit(1)

ROOT = Path(__file__).resolve().parent.parent


def missing(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    todo = list(extras)
    while todo:  # an extra may name others of this project's ("kubemonitor[lint]")
        for text in project["optional-dependencies"][todo.pop()]:
            req = Requirement(text)
            if req.name == project["name"]:
                todo.extend(req.extras)
            else:
                wanted.append(text)
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "kubemonitor" / "__init__.py").read_text()).group(1)
    out = []
    # An editable install made from another checkout (a copied or moved tree) has the
    # right version but imports that other tree's code, or nothing at all.
    spec = importlib.util.find_spec("kubemonitor")
    here = ROOT / "kubemonitor" / "__init__.py"
    if spec is not None and spec.origin is not None and Path(spec.origin).resolve() != here:
        out.append(f"kubemonitor (imports {spec.origin}, not {here})")
    elif spec is None:
        out.append("kubemonitor (installed but not importable)")
    for text in [f"kubemonitor=={version}", *wanted]:
        req = Requirement(text)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(f"{req.name} (not installed)")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            out.append(f"{req.name} {installed} (wants {req.specifier})")
    return out


if __name__ == "__main__":
    lacking = missing(sys.argv[1:])
    if lacking:
        print("installing, because of: " + ", ".join(lacking), file=sys.stderr)
    sys.exit(1 if lacking else 0)
