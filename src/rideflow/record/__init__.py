"""The system of record: SQL (SQLite by default, PostgreSQL + PostGIS in production), written off
the hot path by the recorder and read when Redis no longer has what is asked."""
