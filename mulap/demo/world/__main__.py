"""python -m mulap.demo.world --out DIR [--size small|default] [--seed N]"""

from __future__ import annotations

import argparse

from . import SIZES, build_demo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mulap.demo.world", description="Build the offline demo world.")
    ap.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    ap.add_argument("--size", default="default", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    build_demo(args.out, args.size, args.seed, progress=True, workers=args.workers)


if __name__ == "__main__":
    main()
