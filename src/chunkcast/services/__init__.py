"""Use cases. Each takes its ports as constructor arguments."""
