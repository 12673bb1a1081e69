"""One of two processes racing to write the same embedding-cache entries (run by test_embed_input).

    python -m tests.inference.cache_race_child <work dir> <rounds> <clip dir>

Round r uses the cache root <work dir>/r. Both processes meet at a file barrier right before
they publish (even rounds, "publish": each has a complete temporary entry, then both rename at
once) or before they start (odd rounds, "start": both extract at once, whoever finishes first
publishes). Prints
one line of JSON: {"outcomes": per round "placed" (this process's entry was renamed into place),
"theirs" (it found the other's complete entry at publishing and used it) or "hit" (the entry was
already there when it looked), "sums": [feature sum per round]}.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

import mulap.inference.cache as embed
from mulap.models.musicnn import Musicnn, MusicnnConfig


def barrier(folder: Path, parties: int = 2, timeout: float = 60.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            sys.exit(f"barrier {folder}: the other process never came")
        time.sleep(0.001)


def main() -> None:
    work, rounds, clips = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    paths = sorted(clips.glob("*.npy"))
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig(timbral_channels=4, temporal_channels=2, backend_channels=4)).eval()
    used_theirs = []
    logging.getLogger("mulap.inference.cache").setLevel(logging.INFO)
    logging.getLogger("mulap.inference.cache").addHandler(
        type(
            "H",
            (logging.Handler,),
            {"emit": lambda self, rec: used_theirs.append(rec.getMessage()) if "another process" in rec.getMessage() else None},
        )()
    )
    current = {"round": 0}

    def mode(r: int) -> str:
        return "publish" if r % 2 == 0 else "start"

    def gated(real):
        def move(src, dst):  # the temporary entry's move into place waits for the other process
            if mode(current["round"]) == "publish" and ".tmp" in Path(src).name:
                barrier(work / "gates" / str(current["round"]))
            return real(src, dst)

        return move

    os.rename, os.replace = gated(os.rename), gated(os.replace)
    outcomes, sums = [], []
    for r in range(rounds):
        current["round"] = r
        if mode(r) == "start":
            barrier(work / "gates" / str(r))
        before = len(used_theirs)
        got = embed.cached_embeddings(
            model, [p.stem for p in paths], paths, clips / "manifest.jsonl", work / str(r), num_workers=0, progress=False
        )
        outcomes.append("hit" if not got.computed else "theirs" if len(used_theirs) > before else "placed")
        sums.append(float(got.features.astype("float64").sum()))
    print(json.dumps({"outcomes": outcomes, "sums": sums}))


if __name__ == "__main__":
    main()
