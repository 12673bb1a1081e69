"""Zero-shot NSynth accuracy on the demo world's own test notes, per timbre source (issue 19):

    .venv/bin/python benchmarks/zeroshot_by_source.py WORLD SCORES [SCORES ...]
    .venv/bin/python benchmarks/zeroshot_by_source.py demo_new/world demo_out/save/models/ID/zeroshot/nsynth_clf/scores.npz

SCORES is the scores.npz that `mulap zeroshot MODEL nsynth_clf downstream.dataset_dir=<the world's prepared nsynth>`
writes (test-note ids, labels, calibrated scores). Each note's source comes from WORLD/world.json, as the demo
report's generalisation paragraph reads it (mulap.demo.language.note_sources). Prints one line per SCORES:
the accuracy over all notes, then per source (with its number of notes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mulap.demo.language import note_sources


def main(world: str, score_files: list[str]) -> None:
    meta = json.loads((Path(world) / "world.json").read_text())
    for path in score_files:
        s = np.load(path)
        hit = np.asarray(s["scores"]).argmax(1) == np.asarray(s["y_true"])
        source = note_sources(meta, s["ids"])
        parts = ", ".join(f"{name} {hit[source == name].mean():.3f} ({(source == name).sum()})" for name in sorted(set(source)))
        print(f"{path}: {hit.mean():.3f} over {len(hit)} notes; {parts}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
