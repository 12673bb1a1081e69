"""The original's entry point, kept for users of its README: `cd mulap/scripts && python pretrain.py ...`.

Same arguments as `mulap pretrain`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from mulap/scripts without installing

from mulap.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
