"""Deployment configs generated from the platform's settings (``chunkcast deploy``)."""
