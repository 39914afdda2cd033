"""Where templates/, static/ and conf/ are: package data of an installed kubemonitor
(copied into the package by setup.py's build step), or the folders at the top of
the checkout in an editable install. Found with importlib.resources, so any install
location works (a venv, `--user`, a Docker image)."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> str:
    packaged = files("kubemonitor") / name
    if packaged.is_dir():
        return str(packaged)
    return str(_CHECKOUT / name)
