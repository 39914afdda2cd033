"""One JSON encoding for everything sent: the poller's once allowed NaN (which a browser's
JSON.parse refuses: the live view would stop), the API's refused it."""
from __future__ import annotations

import json
import pathlib

import pytest

from kubemonitor.wire import encode

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "kubemonitor"


def test_compact_utf8_and_no_nan():
    assert encode({"namespace": "équipe", "v": [1.5, None]}) == '{"namespace":"équipe","v":[1.5,null]}'
    with pytest.raises(ValueError):
        encode({"value": float("nan")})
    assert json.loads(encode({"value": 1e308})) == {"value": 1e308}


@pytest.mark.parametrize("module", ["poller.py", "billing.py", "handlers/live.py", "handlers/api.py", "handlers/billing.py"])
def test_what_is_sent_is_encoded_in_one_place(module):
    assert "json.dumps(" not in (PACKAGE / module).read_text(), f"{module} encodes JSON itself; use kubemonitor.wire.encode"
