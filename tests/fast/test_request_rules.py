"""An API request's body, field by field: each mistake a message naming the field and the
fix (`parse_body`, `validate`). tests/test_api_errors.py checks that these reach the client
as a JSON 400, end to end, for one case of each kind."""
from __future__ import annotations

import time

import pytest

from kubemonitor.request import BadRequest, parse_body, validate

MAX_LIMIT = 10000  # KUBEMONITOR_MAX_LIMIT's default


def refused(body: bytes | dict, *words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        data = parse_body(body) if isinstance(body, bytes) else body
        validate(data, now_ns=time.time_ns(), max_limit=MAX_LIMIT)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_malformed_json_says_where():
    refused(b'{"limit": 5,', "not valid JSON", "line 1")
    refused(b"\xff\xfe", "UTF-8")
    refused(b'{"limit": NaN}', "NaN")


@pytest.mark.parametrize("raw", [b"[]", b'"team-a"', b"5", b"null", b"true"])
def test_body_must_be_an_object(raw):
    refused(raw, "must be a JSON object")


def test_unknown_fields_are_named():
    refused({"limt": 5, "namespace": "team-a"}, "'limt'", "allowed fields")
    refused({"Namespace": "x", "zzz": 1}, "'Namespace'", "'zzz'")


@pytest.mark.parametrize("field,value,words", [
    ("namespace", 5, ["'namespace'", "string"]),
    ("namespace", ["team-a"], ["'namespace'"]),
    ("namespace", "", ["'namespace'"]),
    ("namespace", "Team_A", ["'namespace'", "Kubernetes namespace"]),
    ("pod", 7, ["'pod'"]),
    ("pod", "Web 1", ["'pod'"]),
    ("type", "container", ["'type'", "pod_container"]),
    ("type", ["pod"], ["'type'"]),
    ("timeBeginInterval", True, ["'timeBeginInterval'"]),
    ("timeBeginInterval", {"a": 1}, ["'timeBeginInterval'"]),
    ("timeEndInterval", "yesterday", ["'timeEndInterval'", "YYYY-MM-DD"]),
])
def test_wrong_types_and_values_name_the_field(field, value, words):
    refused({field: value}, *words)


@pytest.mark.parametrize("limit", [0, -1, 1.5, 5.0, 10**12, 10001, True, False, "abc", "", "1e3", " 5", None, [5]])
def test_bad_limits(limit):
    refused({"limit": limit}, "'limit'")


@pytest.mark.parametrize("limit,expected", [(1, 1), ("3", 3), (10000, 10000)])
def test_limit_bounds_and_digit_strings(limit, expected):
    assert validate({"limit": limit}, now_ns=time.time_ns(), max_limit=MAX_LIMIT).limit == expected


@pytest.mark.parametrize("value", ["2017-02-30", "2017-13-01", "2017-12-01T25:00", "2017-12-01T10:61",
                                   "2017-12-01T10:00:00+25:00", "2017-12-01Z", "0000-00-00", "2017-12-01T10:00:00.1234567890",
                                   "3000-01-01", 10**12, float("1e300")])
def test_impossible_times(value):
    refused({"timeBeginInterval": value, "timeEndInterval": "2017-12-31"}, "'timeBeginInterval'")


def test_begin_after_end():
    refused({"timeBeginInterval": "2017-12-31", "timeEndInterval": "2017-12-01"}, "timeBeginInterval", "after",
            "timeEndInterval")


def test_pod_and_type_only_without_aggregation():
    refused({"agg": "all-pod", "pod": "web-1"}, "'pod'", "without aggregation")
