"""The package version (a leaf module: anything may import it without importing the rest of dff)."""

__version__ = "0.1.0"
