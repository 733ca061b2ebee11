SELECT
  "server", "server_type", "tier", "host", "plaintext_port", "tls_port", "curr_size", "max_size", "is_leader", "start_time",
  (SELECT COUNT(*) FROM sys.server_segments s WHERE s."server" = sys.servers."server") AS "segments"
FROM sys.servers
ORDER BY
  (
    CASE "server_type"
    WHEN 'coordinator' THEN 8
    WHEN 'overlord' THEN 7
    WHEN 'router' THEN 6
    WHEN 'broker' THEN 5
    WHEN 'historical' THEN 4
    ELSE -1
    END
  ) DESC,
  "server" DESC
