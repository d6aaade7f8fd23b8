"""The package version, in a module of its own so that modules of the package can import it while
the package initialises (no cycle through `semzip/__init__.py`)."""

__version__ = "0.1.0"
#: What writers record as the `writer` of an archive header or a collection manifest.
WRITER = f"semzip {__version__}"
