"""The one JSON encoding of what kubemonitor sends (API answers, statements, live-view
messages): compact, UTF-8 as is, and no NaN or Infinity, which browsers' JSON.parse and
most clients refuse. A non-finite number is a bug to fail on here, not a page that stops."""
from __future__ import annotations

import json
from typing import Any


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
