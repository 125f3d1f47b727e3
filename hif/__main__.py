"""Entry point for `python -m hif`."""

import sys

from .cli import main

sys.exit(main())
