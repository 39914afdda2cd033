"""A whole package: the vendored chart asset is the one the npm lock pins, and a wheel
built from a clean checkout, installed where npm never ran, serves pages and charts."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from kubemonitor import __version__
from kubemonitor.influxd import free_port, wait_for_http
from kubemonitor.resources import resource_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDOR = os.path.join(ROOT, "vendor")
SERVED = {"uplot": ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE")}


def locked():
    lock = json.load(open(os.path.join(VENDOR, "package-lock.json")))
    return {path.removeprefix("node_modules/"): meta for path, meta in lock["packages"].items() if path}


def test_vendored_assets_are_the_locked_versions_byte_for_byte():
    package = json.load(open(os.path.join(VENDOR, "package.json")))
    pins = locked()
    assert set(pins) == set(SERVED) == set(package["dependencies"])
    for name, meta in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"][name])  # an exact version
        assert meta["version"] == package["dependencies"][name]
        tarball = os.path.join(VENDOR, f"{name}-{meta['version']}.tgz")
        digest = hashlib.sha512(open(tarball, "rb").read()).digest()
        assert "sha512-" + base64.b64encode(digest).decode() == meta["integrity"]  # the published tarball
        with tarfile.open(tarball) as tar:
            for member in SERVED[name]:
                shipped = os.path.join(resource_dir("static"), "vendor", name, os.path.basename(member))
                assert open(shipped, "rb").read() == tar.extractfile("package/" + member).read(), shipped


def test_templates_load_nothing_from_elsewhere():
    for template in os.listdir(resource_dir("templates")):
        text = open(os.path.join(resource_dir("templates"), template)).read()
        assert "https://" not in text and "http://" not in text, template  # no CDN


def test_the_version_is_defined_once():
    hits = subprocess.run(["git", "grep", "-n", "-E", r"^\s*(__version__|version)\s*=\s*['\"][0-9]", "--", "*.py", "*.toml", "*.cfg"],
                          cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    assert [h.split(":")[0] for h in hits] == ["kubemonitor/__init__.py"], hits


@pytest.mark.slow
def test_a_wheel_from_a_clean_checkout_serves_charts_without_npm(tmp_path):
    # A clean checkout: only the files git tracks (no venv, no node_modules, no build leftovers).
    listed = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    src = tmp_path / "src"
    for rel in filter(None, listed):
        if os.path.isfile(os.path.join(ROOT, rel)):
            os.makedirs(src / os.path.dirname(rel), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), src / rel)
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], check=True, capture_output=True,
                           text=True)
    # the license is an SPDX string: the TOML-table form warned at every build (deprecated, deadline 2027-02-18)
    assert "TOML table is deprecated" not in built.stdout + built.stderr
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"kubemonitor-{__version__}-")
    import zipfile
    metadata = zipfile.ZipFile(wheel).read(f"kubemonitor-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    # the package data is exactly what the package's folders hold (pyproject's package-data), nothing else
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("kubemonitor/") and not n.endswith(".py")}
    tracked = {rel for rel in filter(None, listed) if rel.startswith("kubemonitor/") and not rel.endswith(".py")}
    assert shipped == tracked and "kubemonitor/conf/logging.yaml" in shipped, shipped ^ tracked
    venv = tmp_path / "venv"
    # The venv reuses this interpreter's libraries (tornado, influxdb, ...) but gets
    # kubemonitor only from the wheel; PATH has no npm.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    # the installed wheel alone: a PYTHONPATH (a checkout run from another directory) must not shadow it
    alone = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import kubemonitor.resources as r; print(r.resource_dir('static'))"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, env=alone).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith(os.path.join("kubemonitor", "static"))

    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "KUBEMONITOR_LOG_DIR": str(tmp_path), "KUBEMONITOR_ADDRESS": "127.0.0.1",
           "KUBEMONITOR_USERS_FILE": str(tmp_path / "users.yaml"), "INFLUXDB_PORT": "1"}
    proc = subprocess.Popen([str(venv / "bin" / "kubemonitor"), "serve", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.err", "w"))
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url + "/healthz", proc)
        except Exception:
            raise AssertionError((tmp_path / "serve.err").read_text()[-2000:]) from None
        import urllib.request
        asset = urllib.request.urlopen(url + "/static/vendor/uplot/uPlot.iife.min.js", timeout=5).read()
        assert asset == open(os.path.join(ROOT, "kubemonitor", "static", "vendor", "uplot", "uPlot.iife.min.js"), "rb").read()
        login = urllib.request.urlopen(url + "/web/login", timeout=5).read().decode()
        assert "kubemonitor" in login and "/static/css/app.css" in login
    finally:
        proc.terminate()
        proc.wait(timeout=10)
