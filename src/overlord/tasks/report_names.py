"""Names in index_parallel's live report that the Overlord's chat endpoints read too (kept free of the
ingestion code's imports, so the service imports them without pyarrow)."""

PARALLEL_SUBTASKS_REPORT = "parallelIndexSubtasks"
PARALLEL_PHASE = "segment generation"  # Druid's single-phase runner's name, answered by the /phase chat endpoint
