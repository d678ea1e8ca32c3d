"""``python -m iii_sync.engine``: the same as ``iii-sync engine``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["engine"] + sys.argv[1:]))
