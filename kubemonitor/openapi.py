"""The OpenAPI 3 description of the API (README "The API"), served at /openapi.json.

The request body's schema comes from kubemonitor/request.py, the rules the handler
applies, so the two cannot drift apart (a schemathesis run in the tests checks it)."""
from __future__ import annotations

from . import __version__, statement
from .config import Config
from .influxql import TAG_KEYS
from .metrics import CATALOG, METRIC_NAME
from .request import FIELDS, body_schema

UNAUTHORIZED = "Credentials missing or wrong, the client revoked, or no client configured on the server"


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(config: Config, metrics: list[str] | None = None) -> dict:
    """The document; `metrics`: the catalog metrics the configured data source collects."""
    metrics = sorted(CATALOG) if metrics is None else sorted(metrics)
    usage_props = {
        "namespace_name": {"type": "string"},
        "count": {"type": "integer", "description": "samples counted"},
        "sum": {"type": "number"},
        "mean": {"type": "number", "nullable": True, "description": "sum / count"},
        "max": {"type": "number", "nullable": True, "description": "largest sample"},
        "integral": {"type": "number", "description": "time-integral of the counted samples, unit x hours: the quantity to bill"},
        "unit": {"type": "string", "nullable": True},
        "integral_unit": {"type": "string", "nullable": True},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kubemonitor API",
            "version": __version__,
            "description": (
                "Usage of Kubernetes pods from Heapster metrics in InfluxDB 1.x. Each pod is counted once: its "
                "pod-level series, else the sum of its container-level series; ns/node/cluster series never count."),
        },
        # the paths below are relative to it: KUBEMONITOR_URL_PREFIX, or the root
        "servers": [{"url": config.url_prefix or "/"}],
        "paths": {
            "/api/{metric}": {
                "post": {
                    "summary": "Points or aggregated usage of one metric",
                    "operationId": "queryMetric",
                    "parameters": [{
                        "name": "metric", "in": "path", "required": True,
                        "description": "A catalog metric the data source collects (may contain '/', e.g. "
                                       "cpu/usage_rate; x-kubemonitor.metrics lists them) or, with Heapster's schema, "
                                       "a measurement present in InfluxDB.",
                        "schema": {"type": "string", "pattern": METRIC_NAME.pattern, "example": "cpu/usage_rate"},
                    }],
                    "security": [{"username": [], "password": []}],
                    "requestBody": {
                        "required": False,
                        "description": "A JSON object (any Content-Type); an empty body means all defaults.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Query"}}},
                    },
                    "responses": {
                        "200": {"description": "Points (no aggregation) or rows sorted by namespace_name, pod_name",
                                "content": {"application/json": {"schema": {"anyOf": [
                                    {"type": "array", "items": {"$ref": "#/components/schemas/Point"}},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/PodUsage"}},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/NamespaceUsage"}},
                                ]}}}},
                        "400": _error("Body not a JSON object, unknown field, or a bad value (the message names it)"),
                        "401": _error(UNAUTHORIZED),
                        "403": _error("The namespace asked for is outside the client's scope (the message names it)"),
                        "404": _error("Unknown metric"),
                        "405": _error("Any method but POST"),
                        "413": _error("Body over 64 KiB"),
                        "429": _error("This client already has KUBEMONITOR_CLIENT_CONCURRENCY queries running, or "
                                      "too many wrong credentials came from this address; retry after "
                                      "Retry-After seconds"),
                        "502": _error("InfluxDB answered with an error"),
                        "503": _error("InfluxDB unreachable"),
                        "504": _error("InfluxDB did not answer within INFLUXDB_TIMEOUT"),
                    },
                },
            },
            "/api/billing/statement": {
                "post": {
                    "summary": "A billing statement: usage, prices and costs per group, namespace or pod for a period",
                    "operationId": "billingStatement",
                    "security": [{"username": [], "password": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": statement.request_schema()}}},
                    "responses": {
                        "200": {"description": "The statement (JSON), or its CSV with format csv",
                                "content": {"application/json": {"schema": statement.response_schema()},
                                            "text/csv": {"schema": {"type": "string"}}}},
                        "400": _error("Body not a JSON object, unknown field, a bad or future period, bad by/format"),
                        "401": _error(UNAUTHORIZED),
                        "403": _error("The client may not fetch statements (no `billing` in its scope)"),
                        "405": _error("Any method but POST"),
                        "413": _error("Body over 64 KiB"),
                        "429": _error("This client already has KUBEMONITOR_CLIENT_CONCURRENCY queries running, or "
                                      "too many wrong credentials came from this address; retry after "
                                      "Retry-After seconds"),
                        "502": _error("InfluxDB answered with an error"),
                        "503": _error("InfluxDB unreachable"),
                        "504": _error("InfluxDB did not answer within INFLUXDB_TIMEOUT"),
                    },
                },
            },
            "/healthz": {"get": {"summary": "The process is alive", "operationId": "healthz",
                                 "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "InfluxDB is reachable", "operationId": "readyz",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "InfluxDB unreachable"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {
            "securitySchemes": {
                "username": {"type": "apiKey", "in": "header", "name": "X-USERNAME",
                             "description": "API_USERNAME (the full-access client) or a named client's name"},
                "password": {"type": "apiKey", "in": "header", "name": "X-PASSWORD",
                             "description": "API_PASSWORD, or the secret `kubemonitor apiclient add` printed for the "
                                            "client (compared in constant time; only its SHA-256 is stored). A scoped "
                                            "client's cluster-wide aggregations and statements cover its namespaces "
                                            "only; another namespace is a 403."},
            },
            "schemas": {
                "Query": body_schema(config.max_limit),
                "Point": {
                    "type": "object", "required": ["time", "value", *TAG_KEYS],
                    "properties": {"time": {"type": "string", "format": "date-time"}, "value": {"type": "number"},
                                   **{k: {"type": "string", "nullable": True} for k in TAG_KEYS}},
                    "additionalProperties": {"type": "string"},
                },
                "PodUsage": {
                    "type": "object",
                    "required": ["namespace_name", "pod_name", "count", "sum", "mean", "max", "integral", "unit", "integral_unit"],
                    "properties": {**usage_props, "pod_name": {"type": "string"},
                                   "series_type": {"type": "string", "enum": ["pod", "pod_container"],
                                                   "description": "which series were counted"}},
                },
                "NamespaceUsage": {
                    "type": "object",
                    "required": ["namespace_name", "pods", "count", "sum", "mean", "max", "integral", "unit", "integral_unit"],
                    "properties": {**usage_props, "pods": {"type": "integer"}},
                },
                "Error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
                },
            },
        },
        "x-kubemonitor": {"fields": list(FIELDS), "metrics": metrics, "source": config.source,
                          "excluded_namespaces": list(config.excluded_namespaces)},
    }
