"""The Datadog-compatible event API (FastAPI)."""
