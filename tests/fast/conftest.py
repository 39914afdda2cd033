"""The fast tier (`make test-fast`): pure functions and in-process objects, no server. A
test here that asks for InfluxDB fails at once instead of quietly starting influxd."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def influxd():
    pytest.fail("tests/fast starts no server: move a test that needs InfluxDB to tests/")
