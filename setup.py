# The declared top level of the build; metadata and package data live in pyproject.toml.
__import__("setuptools").setup()
