"""Logging set-up from conf/logging.yaml (README "Operations")."""
from __future__ import annotations

import logging
import logging.config
import os

import yaml

from .resources import resource_dir


def _fill(node, log_dir: str):
    if isinstance(node, dict):
        return {k: _fill(v, log_dir) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, log_dir) for v in node]
    if isinstance(node, str):
        return node.replace("{log_dir}", log_dir)
    return node


def setup_logging(log_dir: str, config_path: str | None = None, console: bool = True) -> None:
    path = config_path or os.path.join(resource_dir("conf"), "logging.yaml")
    with open(path, encoding="utf-8") as fh:
        spec = _fill(yaml.safe_load(fh), log_dir)
    if not console:
        spec["handlers"].pop("console", None)
        spec["root"]["handlers"] = [h for h in spec["root"]["handlers"] if h != "console"]
    logging.config.dictConfig(spec)
