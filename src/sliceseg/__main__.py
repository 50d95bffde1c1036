"""``python -m sliceseg`` (and ``torchrun -m sliceseg train ...``) runs the command line."""

import sys

from sliceseg.cli import main

sys.exit(main())
