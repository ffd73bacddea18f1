"""``python -m grubench``: see grubench.cli."""
import sys

from grubench.cli import main

sys.exit(main())
