"""``python -m sparselm.cli``: the ``sparselm`` command line."""
import sys

from sparselm.cli.main import main

sys.exit(main())
