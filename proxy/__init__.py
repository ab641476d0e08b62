"""hostfit: an index proxy that serves each host only the wheels that will load there."""

__version__ = "0.1.0"
