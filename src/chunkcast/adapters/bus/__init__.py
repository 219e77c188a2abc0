"""Event bus implementations, chosen by URL scheme in :mod:`chunkcast.config`."""
