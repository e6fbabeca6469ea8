"""Analyses of stored revisions: SQL through DuckDB, diversity, plots."""
