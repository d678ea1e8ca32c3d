"""The package version, read from the VERSION file beside this module.

setup.cfg reads the same file, so the version is written in one place and
can be read without importing the package (old setuptools would import it,
and with it every dependency, just to learn the version).
"""

import os

with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="utf-8") as _f:
    __version__ = _f.read().strip()
