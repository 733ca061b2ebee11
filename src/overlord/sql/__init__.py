"""Druid SQL on DuckDB: the dialect layer, Druid's functions, system tables and the query engine."""
