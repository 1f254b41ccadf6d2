"""``python -m oxipp.engine ARGS`` (the ipengine command line)."""

import sys

from oxipp.engine import main

if __name__ == "__main__":
    sys.exit(main())
