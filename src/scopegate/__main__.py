"""``python -m scopegate`` runs the command line."""

import sys

from scopegate.cli import main

sys.exit(main())
