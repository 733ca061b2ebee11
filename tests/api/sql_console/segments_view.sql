SELECT "segment_id", "datasource", "start", "end", "size", "version", "partition_num", "num_replicas",
  "num_rows", "is_published", "is_available", "is_realtime", "is_overshadowed", "shard_spec",
  "dimensions", "metrics", "last_compaction_state"
FROM sys.segments
WHERE "datasource" = 'wiki'
ORDER BY "start" DESC, "version" DESC
LIMIT 50
