"""``python -m oxipp.controller ARGS`` == ``oxipp controller ARGS``."""

import sys

from oxipp.controller import main

if __name__ == "__main__":
    sys.exit(main())
