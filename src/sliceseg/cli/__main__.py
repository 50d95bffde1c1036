"""``python -m sliceseg.cli`` runs the command line, like ``python -m sliceseg``."""

import sys

from sliceseg.cli.command import main

sys.exit(main())
