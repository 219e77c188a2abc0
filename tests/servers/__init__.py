"""Throwaway real servers (Redis, PostgreSQL, SeaweedFS) for tests: each starts in a temp
dir on a free port on 127.0.0.1 and is stopped by PID."""
