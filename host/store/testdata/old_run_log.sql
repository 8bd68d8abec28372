-- The run log as it was before it kept memory figures and Delta versions,
-- with one run in it: what the tests open as a store from an older medallion.
CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, error TEXT);
CREATE TABLE run_tables (run_id TEXT NOT NULL, stage TEXT NOT NULL, table_name TEXT NOT NULL, rows BIGINT NOT NULL,
    quarantined BIGINT NOT NULL, reasons TEXT NOT NULL, plugin TEXT, plugin_version TEXT, plugin_sha256 TEXT,
    plugin_config TEXT, PRIMARY KEY (run_id, stage, table_name));
CREATE TABLE run_stages (run_id TEXT NOT NULL, stage TEXT NOT NULL, started_at TEXT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, stage));
INSERT INTO runs VALUES ('old-run', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 'succeeded', NULL);
INSERT INTO run_stages VALUES ('old-run', 'bronze', '2026-01-01T00:00:00Z', 60.0);
