"""`python -m ckptscan ...`: the CLI, whatever PATH holds."""

import sys

from .cli import main

sys.exit(main())
