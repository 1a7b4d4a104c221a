"""The package's version.

In a module of its own: nothing that needs it imports the package's ``__init__`` (which imports
the whole public API) to get it."""
__version__ = "0.1.0"
