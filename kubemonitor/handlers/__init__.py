"""Request handlers: base.py (shared helpers), api.py (/api), ops.py (health, metrics, OpenAPI),
pages.py, auth.py and live.py (the /web dashboard)."""
