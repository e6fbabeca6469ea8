"""Versioned local store of dataset revisions (Parquet + JSON manifests), queried with DuckDB."""
from alpaca_data.store.store import CommitResult, Manifest, Store

__all__ = ["CommitResult", "Manifest", "Store"]
