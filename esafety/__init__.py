"""esafety: the command line and the wiring of one deployment (config, data directory, store)."""

__version__ = "0.1.0"
