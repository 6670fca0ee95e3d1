"""sysevolve: AI-driven research on systems problems."""

__version__ = "0.1.0"
