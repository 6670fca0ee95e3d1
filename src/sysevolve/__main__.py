"""`python -m sysevolve` is the command line."""

import sys

from sysevolve.cli import main

sys.exit(main())
