"""`alpaca-data view`: a local, read-only page to browse, search, compare and explain the store's revisions.

`index` makes one revision ready (records memory-mapped, a DuckDB search index), `service` answers the API,
`app` serves it and the static page (`static/`), `server` binds, prepares and runs it.
"""
