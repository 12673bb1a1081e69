"""What each of the demo world's soundfonts costs to render, and what the per-clip variation adds.

    .venv/bin/python benchmarks/render_sources.py [--clips 12] [--seconds 20] [--notes 40]

The same arrangements (`--clips` renditions of `--seconds` each, from the small world's scores) and the same
NSynth-style notes (`--notes`, 4 s) are rendered in this one process through every world source installed
(mulap.demo.world.timbre.WORLD_SOURCES), dry; then once more through the timbre variation alone (EQ, filters,
room: `--clips` draws). Prints the soundfont's first load (parse) time and the milliseconds per second of
audio of each, and the load average before and after (the figures depend on what else runs).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--notes", type=int, default=40)
    args = ap.parse_args()
    import numpy as np

    from mulap.demo.world import render
    from mulap.demo.world.build import SIZES, _load_pieces
    from mulap.demo.world.corpus import CORPUS_STYLE_WEIGHTS
    from mulap.demo.world.scores import default_cache_dir
    from mulap.demo.world.timbre import Timbre, apply_effects, available_sources, draw_timbre
    from mulap.demo.world.world import PieceDrawer, World, perform_any, rng_for

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    pieces, _ = _load_pieces(SIZES["small"].pieces, 0, None, default_cache_dir(), False)
    world = World(pieces, 0)
    rng = rng_for(0, "benchmark")
    drawer = PieceDrawer(world.pool("train"), rng)
    arrs = [perform_any(rng, drawer.next(), CORPUS_STYLE_WEIGHTS, args.seconds).arr for _ in range(args.clips)]
    notes = [
        (int(p), int(k))
        for p, k in zip(rng.choice([0, 24, 40, 56, 65, 73, 80, 11], args.notes), rng.integers(52, 76, args.notes))
    ]
    sources = available_sources()
    for name, path in sources.items():
        render._loaded.cache_clear()
        t = time.perf_counter()
        render._loaded(render.SAMPLE_RATE, path)
        load = time.perf_counter() - t
        t = time.perf_counter()
        for a in arrs:
            render.render_notes(a.notes, a.programs, a.duration_s, a.volumes, a.pans, soundfont=path)
        per_clip = (time.perf_counter() - t) / (args.clips * args.seconds)
        t = time.perf_counter()
        for prog, key in notes:
            render.render_note(prog, key, 100, soundfont=path)
        per_note = (time.perf_counter() - t) / (args.notes * 4.0)
        print(
            f"{name}: parse {load:.2f} s; arrangements {1000 * per_clip:.1f} ms per second of audio; "
            f"notes {1000 * per_note:.1f} ms per second of audio",
            flush=True,
        )
    wave = np.random.default_rng(0).standard_normal((int(args.seconds * render.SAMPLE_RATE), 2)).astype(np.float32) * 0.1
    draws: list[Timbre] = [draw_timbre(rng_for(0, "benchmark-timbre", i), sources) for i in range(args.clips)]
    t = time.perf_counter()
    for tb in draws:
        apply_effects(wave, render.SAMPLE_RATE, tb)
    print(
        f"variation (EQ, filters, room; {sum(not d.plain for d in draws)} of {len(draws)} draws not plain): "
        f"{1000 * (time.perf_counter() - t) / (args.clips * args.seconds):.1f} ms per second of stereo audio"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
