"""Expressions: jmespath plus the engine's registered functions, compiled once at load time."""
