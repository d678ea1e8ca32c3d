"""iii_sync: a synchronous Python SDK for iii workers."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
