"""kubemonitor: Kubernetes usage monitor and billing interface (Heapster metrics in InfluxDB 1.x)."""
import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def tree(top):
    """data_files entries so a non-editable install (Docker) carries templates/, static/ and conf/."""
    out = []
    for folder, _dirs, files in os.walk(os.path.join(HERE, top)):
        rel = os.path.relpath(folder, HERE)
        # of the npm packages, only the built browser assets the pages load
        if "node_modules" in rel.split(os.sep) and not rel.startswith(os.path.join("static", "node_modules", "uplot", "dist")):
            continue
        wanted = [os.path.join(rel, f) for f in files if not f.endswith((".pyc", ".lock"))]
        if wanted:
            out.append((os.path.join("share", "kubemonitor", rel), wanted))
    return out


setup(
    name="kubemonitor",
    version="0.1.0",
    description=__doc__,
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["kubemonitor", "kubemonitor.*"]),
    data_files=tree("templates") + tree("static") + tree("conf"),
    install_requires=[
        "tornado>=6.3",
        "influxdb>=5.3,<6",      # the 1.x client; 5.3 is its last line
        "bcrypt>=4.0",
        "pyyaml>=6.0",
        "prometheus_client>=0.17",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-tornado>=0.8",
            "playwright>=1.40",
            "openapi-spec-validator>=0.7",
            "kubernetes-validate>=1.28",
            "ruff",
        ],
    },
    entry_points={"console_scripts": ["kubemonitor = kubemonitor.cli:main"]},
)
