"""``python -m fastxent {demo,bench,info}``: see :mod:`fastxent.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
