"""Where templates/, static/ and conf/ live: beside the package in a checkout or an
editable install, under <prefix>/share/kubemonitor after `pip install .` (Docker)."""
from __future__ import annotations

import os
import sys

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resource_dir(name: str) -> str:
    for base in (_CHECKOUT, os.path.join(sys.prefix, "share", "kubemonitor")):
        path = os.path.join(base, name)
        if os.path.isdir(path):
            return path
    return os.path.join(_CHECKOUT, name)
