"""`mulap.hear`: the HEAR 2021 module name that hear-eval-kit is given; the same module as mulap.inference.hear."""

import sys

from mulap.inference import hear as _hear

sys.modules[__name__] = _hear
