"""Versioned local store of dataset revisions (Parquet + JSON manifests), queried with DuckDB."""
from alpaca_data.store.manifest import DamagedRevision, Manifest
from alpaca_data.store.store import Store
from alpaca_data.store.writer import CHECK_MAIN, CommitResult

__all__ = ["CHECK_MAIN", "CommitResult", "DamagedRevision", "Manifest", "Store"]
