"""`mulap.tagging`: the documented name of the tagging API; the same module as mulap.inference.tagging."""

import sys

from mulap.inference import tagging as _tagging

sys.modules[__name__] = _tagging
