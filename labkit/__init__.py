"""labkit: build a container out of Linux primitives, one stage at a time.

This package is imported on the container start path, so it stays empty:
every module imports only what it needs.
"""

__version__ = "0.1.0"
