"""The package version, in a leaf module (no imports), so that `dff --version` and the build read it without
importing anything else; pyproject.toml takes it from here (`[tool.setuptools.dynamic]`)."""

__version__ = "0.1.0"
