"""chunkcast: a self-hostable live and on-demand video platform."""

__version__ = "0.1.0"
