"""python -m tests.system.harness: see run.py (scripts/system-test.sh is the front door)."""

import sys

from tests.system.harness.run import main

sys.exit(main())
