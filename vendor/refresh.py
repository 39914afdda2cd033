"""Refresh the vendored browser assets from the npm lock (`make vendor`; needs npm).

The app serves its chart library itself (no CDN: air-gapped clusters are common),
and a `pip install .` must carry it without npm. So the published tarball of each
locked package is kept here, checked against the lock's integrity hash, and the
files the pages load are copied into kubemonitor/static/vendor/<package>/. The test suite
checks the same two facts offline (tests/test_package.py).

To move to another version: change it in package.json, `npm install
--package-lock-only` in this folder, then `make vendor`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(os.path.dirname(HERE), "kubemonitor", "static", "vendor")
# package -> the files of its tarball the pages load (plus its licence)
WANTED = {"uplot": ("package/dist/uPlot.iife.min.js", "package/dist/uPlot.min.css", "package/LICENSE")}


def locked() -> dict[str, dict]:
    with open(os.path.join(HERE, "package-lock.json"), encoding="utf-8") as fh:
        packages = json.load(fh)["packages"]
    return {path.removeprefix("node_modules/"): meta for path, meta in packages.items() if path}


def integrity(path: str) -> str:
    with open(path, "rb") as fh:
        return "sha512-" + base64.b64encode(hashlib.sha512(fh.read()).digest()).decode()


def main() -> int:
    for name, meta in locked().items():
        tarball = os.path.join(HERE, f"{name}-{meta['version']}.tgz")
        if not os.path.exists(tarball):
            subprocess.run(["npm", "pack", f"{name}@{meta['version']}", "--silent"], cwd=HERE, check=True)
        if integrity(tarball) != meta["integrity"]:
            print(f"{tarball}: its sha512 differs from package-lock.json; delete it and run again", file=sys.stderr)
            return 1
        target = os.path.join(STATIC, name)
        os.makedirs(target, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for member in WANTED[name]:
                with tar.extractfile(member) as src, open(os.path.join(target, os.path.basename(member)), "wb") as dst:
                    dst.write(src.read())
        print(f"{name} {meta['version']}: {', '.join(os.path.basename(m) for m in WANTED[name])} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
