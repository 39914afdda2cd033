"""kubemonitor's build: metadata lives in pyproject.toml; this adds one step.

templates/, static/ and conf/ stay at the top of the repository (where a
maintainer looks for them) and are copied into the package when it is built,
so a wheel or `pip install .` carries them as package data that
kubemonitor/resources.py finds with importlib.resources, wherever pip put it.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIRS = ("templates", "static", "conf")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", "users.yaml*", "api-clients.yaml*")


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the folders in the checkout
            return
        for name in DATA_DIRS:
            target = os.path.join(self.build_lib, "kubemonitor", name)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(HERE, name), target, ignore=SKIP)


setup(cmdclass={"build_py": build_py_with_data})
