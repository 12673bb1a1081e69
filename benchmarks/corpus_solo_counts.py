"""How often the demo world's captioned corpus lets an instrument be heard alone (issue 19):

    .venv/bin/python benchmarks/corpus_solo_counts.py WORLD [WORLD ...]
    .venv/bin/python benchmarks/corpus_solo_counts.py demo_out/world demo_new/world

Reads WORLD/world.json (each corpus clip's style, texture and programs) and WORLD/audiocaption. Prints per
WORLD: training clips with one instrument alone (texture `solo`, any style) per NSynth family and in the `solo` style, and of the test split the
solo clips and how many of their retrieval captions (`caption`) name the instrument.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mulap.demo.world.arrange import family_of
from mulap.demo.world.corpus import CORPUS_SPLIT_FILES
from mulap.demo.world.gm import PROGRAM_FAMILY, program_name


def alone(clip: dict) -> bool:
    """One instrument heard alone (texture `solo`, in any style)."""
    return clip["texture"] == "solo" and len(clip["programs"]) == 1


def main(worlds: list[str]) -> None:
    families = sorted(set(PROGRAM_FAMILY.values()))
    for world in map(Path, worlds):
        clips = json.loads((world / "world.json").read_text())["corpus"]
        train = [v for v in clips.values() if v["split"] == "train"]
        per_family = Counter(family_of(v["programs"][0]) for v in train if alone(v))
        test = json.loads((world / "audiocaption" / CORPUS_SPLIT_FILES["test"]).read_text())
        solo = [r for r in test if alone(clips[r["audio_id"]])]
        named = sum(program_name(clips[r["audio_id"]]["programs"][0]) in r["caption"].lower() for r in solo)
        rendition = sum(v["style"] == "solo" for v in train)
        print(
            f"{world}: {len(train)} training clips, {sum(per_family.values())} with one instrument alone ({rendition} in the solo style)"
        )
        print("  alone per family: " + ", ".join(f"{f} {per_family.get(f, 0)}" for f in families))
        print(f"  test split: {len(test)} clips, {len(solo)} solo, {named} of whose captions name the instrument")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
