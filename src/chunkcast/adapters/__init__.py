"""Adapters: the only modules that import drivers (SQL, storage, bus)."""
