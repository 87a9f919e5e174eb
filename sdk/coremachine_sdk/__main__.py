"""`python -m coremachine_sdk`: the `coremachine` command line."""

import sys

from coremachine_sdk.cli import main

if __name__ == "__main__":
    sys.exit(main())
