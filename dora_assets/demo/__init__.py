"""`dora demo`: a synthetic history landed through the real interfaces, the whole graph
materialized, and the metric summary printed."""

from dora_assets.demo.run import run_demo

__all__ = ["run_demo"]
