"""One deployment's settings: the typed config, the data directory and its files, and logging.

Every layer above ``categories`` may import this package; it imports only ``categories``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("esafety")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0+source"
