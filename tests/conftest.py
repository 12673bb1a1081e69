"""Session fixtures shared by the test suite."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """The demo world at --size small, seed 0, built once per test session; returns its folder.

    <world>/audiocaption (the seed's format) and <world>/raw/{nsynth,mtt,jamendo,fma,emomusic}
    in their publishers' layouts (see mulap.data.demo).
    """
    from mulap.data.demo import build_demo

    out = tmp_path_factory.mktemp("demo_world")
    build_demo(out, size="small", seed=0, progress=False)
    return out
