"""``python -m finetune.data validate FILE...``: the data validator's older name, kept for existing scripts.

The validator and the record I/O live in ``core.data`` (``python -m core.data validate FILE...``).
"""

import sys

from core.data import main

if __name__ == "__main__":
    sys.exit(main())
