"""Interfaces (typing.Protocol) that services depend on and adapters implement."""
