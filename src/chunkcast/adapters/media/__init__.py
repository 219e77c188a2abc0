"""Media tools behind :mod:`chunkcast.ports.media`: ffmpeg encodes, PyAV probes."""
