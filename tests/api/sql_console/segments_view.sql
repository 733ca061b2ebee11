WITH s AS (SELECT
"segment_id",
"datasource",
"start",
"end",
"version",
CASE
  WHEN "start" = '-146136543-09-08T08:23:32.096Z' AND "end" = '146140482-04-24T15:36:27.903Z' THEN 'All'
  WHEN "start" LIKE '%-01-01T00:00:00.000Z' AND "end" LIKE '%-01-01T00:00:00.000Z' THEN 'Year'
  WHEN "start" LIKE '%-01T00:00:00.000Z' AND "end" LIKE '%-01T00:00:00.000Z' THEN 'Month'
  WHEN "start" LIKE '%T00:00:00.000Z' AND "end" LIKE '%T00:00:00.000Z' THEN 'Day'
  WHEN "start" LIKE '%:00:00.000Z' AND "end" LIKE '%:00:00.000Z' THEN 'Hour'
  WHEN "start" LIKE '%:00.000Z' AND "end" LIKE '%:00.000Z' THEN 'Minute'
  ELSE 'Sub minute'
END AS "time_span",
"shard_spec",
"partition_num",
"size",
"num_rows",
CASE WHEN "num_rows" <> 0 THEN ("size" / "num_rows") ELSE 0 END AS "avg_row_size",
"num_replicas",
"replication_factor",
"is_available",
"is_active",
"is_realtime",
"is_published",
"is_overshadowed"
FROM sys.segments)
SELECT *
FROM s
WHERE "datasource" = 'wiki' AND "is_overshadowed" = 0 AND "shard_spec" LIKE '%"type":"numbered"%'
ORDER BY "start" DESC, "version" DESC
LIMIT 50
