"""Overlord: Druid's task service rebuilt small, with an Elasticsearch-compatible _tasks API."""

__version__ = "0.1.0"
