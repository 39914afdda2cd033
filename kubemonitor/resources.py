"""Where the package's templates/, static/ and conf/ are: package data inside
kubemonitor/ (pyproject's [tool.setuptools.package-data]), found with
importlib.resources, so any install works (editable, a venv, `--user`, a Docker image)."""
from __future__ import annotations

from importlib.resources import files


def resource_dir(name: str) -> str:
    return str(files("kubemonitor") / name)
