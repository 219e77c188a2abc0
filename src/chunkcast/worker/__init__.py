"""Consumer loops: bus topic -> handler."""
