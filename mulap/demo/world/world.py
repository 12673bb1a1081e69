"""The demo world's shared state: parsed pieces, their split, and renditions of them.

Splits are by piece (movements of one work count as one piece) and global: a piece is
in the same split in the pre-training corpus and in every downstream dataset, so no
piece (and no excerpt of it) is ever in two splits of one dataset.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .arrange import Arrangement, Performance, choose_style, plan_performance, realize
from .scores import Piece

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# 7 : 1 : 2, interleaved so that small worlds still get every split
_SPLIT_PATTERN = ("train", "test", "train", "valid", "train", "train", "test", "train", "train", "train")


def rng_for(seed: int, *names: str | int) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, purpose)."""
    keys = [seed] + [zlib.crc32(str(n).encode()) for n in names]
    return np.random.default_rng(keys)


def assign_splits(pieces: list[Piece], seed: int) -> dict[str, str]:
    """piece group -> split, stratified by collection (round-robin over collections, 7:1:2)."""
    by_coll: dict[str, list[str]] = {}
    for p in pieces:
        groups = by_coll.setdefault(p.ref.collection, [])
        if p.ref.group not in groups:
            groups.append(p.ref.group)
    queues = []
    for coll in sorted(by_coll):
        groups = sorted(by_coll[coll])
        order = rng_for(seed, "split", coll).permutation(len(groups))
        queues.append([groups[i] for i in order])
    seq: list[str] = []
    while any(queues):
        for q in queues:
            if q:
                seq.append(q.pop(0))
    return {g: _SPLIT_PATTERN[i % len(_SPLIT_PATTERN)] for i, g in enumerate(seq)}


@dataclass
class Rendition:
    """One performance of a piece and what it sounds like."""

    piece: Piece
    perf: Performance
    arr: Arrangement


class World:
    """Pieces by split, and deterministic drawing of pieces and renditions."""

    def __init__(self, pieces: list[Piece], seed: int):
        self.seed = seed
        self.pieces = {p.ref.piece_id: p for p in pieces}
        group_split = assign_splits(pieces, seed)
        self.split_of = {pid: group_split[p.ref.group] for pid, p in self.pieces.items()}

    def pool(self, split: str) -> list[Piece]:
        return [self.pieces[pid] for pid in sorted(self.pieces) if self.split_of[pid] == split]

    def split_counts(self) -> dict[str, int]:
        return {s: len(self.pool(s)) for s in SPLITS}


def split_sizes(world: World, total: int) -> dict[str, int]:
    """Clips per split, proportional to the split's piece count (at least 1 where pieces exist)."""
    counts = world.split_counts()
    n_pieces = sum(counts.values())
    sizes = {s: (max(1, int(round(total * counts[s] / n_pieces))) if counts[s] else 0) for s in SPLITS}
    sizes["train"] += total - sum(sizes.values())
    return sizes


class PieceDrawer:
    """Draws pieces of one split evenly (a shuffled cycle), optionally preferring some collections."""

    def __init__(self, pieces: list[Piece], rng: np.random.Generator):
        if not pieces:
            raise ValueError("no piece in this split: the demo world is too small for its split ratios")
        self.pieces = pieces
        self.rng = rng
        self.order: list[int] = []
        self.uses = np.zeros(len(pieces))

    def next(self) -> Piece:
        if not self.order:
            self.order = [int(i) for i in self.rng.permutation(len(self.pieces))]
        i = self.order.pop(0)
        self.uses[i] += 1
        return self.pieces[i]

    def preferring(self, collections: tuple[str, ...]) -> Piece:
        """A piece from the preferred collections (least used first) when there is one, else the next piece."""
        cands = [i for i, p in enumerate(self.pieces) if p.ref.collection in collections]
        if not cands or self.rng.random() < 0.25:
            return self.next()
        least = min(self.uses[i] for i in cands)
        cands = [i for i in cands if self.uses[i] == least]
        i = int(cands[int(self.rng.integers(len(cands)))])
        self.uses[i] += 1
        return self.pieces[i]


def perform(rng: np.random.Generator, piece: Piece, style: str, duration_s: float) -> Rendition:
    """Plan and realize one rendition."""
    perf = plan_performance(rng, piece, style, duration_s)
    return Rendition(piece, perf, realize(piece, perf))


def perform_any(rng: np.random.Generator, piece: Piece, weights: dict[str, float], duration_s: float) -> Rendition:
    """A rendition in a style drawn from dataset weights (favouring styles that suit the piece)."""
    return perform(rng, piece, choose_style(rng, piece, weights), duration_s)
