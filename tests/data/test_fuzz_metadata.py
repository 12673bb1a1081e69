"""Property-based fuzzing of every metadata parser (issue 11, item 7).

Each parser reads a file in its publisher's exact layout (tests/data/publisher_layouts.py) that
hypothesis has damaged: bytes flipped, inserted or deleted (bytes that are not UTF-8, NULs,
quotes, tabs, newlines, a byte-order mark), the file cut short, lines duplicated or swapped (so
ids repeat), a 140,000-character field, or garbage / nothing instead of the file. Whatever the
damage, the parser either reads the file or raises the project's own DatasetError naming the
damaged file; any other exception fails the test.

The default run is small (MULAP_FUZZ_EXAMPLES examples per parser, 25 by default, derandomised
so CI is repeatable). A long run:

    MULAP_FUZZ_EXAMPLES=2000 MULAP_FUZZ_STATS=/tmp/fuzz.json pytest -q -s tests/data/test_fuzz_metadata.py

(random seeds; with MULAP_FUZZ_STATS the outcome counts per parser are written there as JSON).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mulap.data.audiocaption import read_split
from mulap.data.tasks import load_emomusic, load_fma, load_jamendo, load_mtt, load_nsynth
from mulap.infra.text_files import DatasetError
from tests.data import publisher_layouts as pl
from tests.helpers import make_audiocaption

EXAMPLES = int(os.environ.get("MULAP_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize="MULAP_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

SPECIAL = [
    b"\xff",
    b"\xfe\xff",
    b"\x00",
    b"\xc3",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
    b'"',
    b"'",
    b"\t",
    b",",
    b";",
    b"\n",
    b"\r\n",
    b"\r",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"---",
    b"-1",
    b"1e999",
    b"NaN",
    b"9" * 40,
    b"\\",
    b"\\u00",
    b" ",
    b"\x93NUMPY",
]
OPS = (
    ["flip"] * 3
    + ["insert"] * 4
    + ["delete"] * 2
    + ["truncate", "dup_line", "dup_line", "swap_lines", "long_field", "garbage", "empty"]
)


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """`original` with 1-4 kinds of damage, at places spread evenly over the file (a seeded
    random.Random drawn by hypothesis: its own integers would favour the file's first bytes)."""
    rng = draw(st.randoms(use_true_random=False))
    data = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(OPS)
        pos = rng.randint(0, len(data))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == "insert":
            data[pos:pos] = rng.choice(SPECIAL) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del data[pos : pos + rng.randint(1, 40)]
        elif op == "truncate":
            del data[pos:]
        elif op in ("dup_line", "swap_lines"):
            lines = bytes(data).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif op == "long_field":
            data[pos:pos] = rng.choice([b"", b'"']) + b"x" * 140_000
        elif op == "garbage":
            data = bytearray(rng.randbytes(rng.randint(0, 300)))
        elif op == "empty":
            data = bytearray()
    return bytes(data)


# ------------------------------------------------------------------ the parsers, each on its fixture


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return {
        "audiocaption": make_audiocaption(root / "ac", n_train=4, n_val=2),
        "mtt": pl.build_mtt(root / "mtt"),
        "mtt_derived": pl.build_mtt(root / "mtt_derived", with_split=False),
        "jamendo": pl.build_jamendo(root / "jamendo"),
        "emomusic": pl.build_emomusic(root / "emomusic"),
        "fma": pl.build_fma(root / "fma"),
        "nsynth": pl.build_nsynth(root / "nsynth"),
    }


# name -> (world, damaged file relative to it, parse)
PARSERS = {
    "pretrain_json": ("audiocaption", "dataset_train.json", lambda d: read_split(d, "train")),
    "pretrain_json_skip": ("audiocaption", "dataset_train.json", lambda d: read_split(d, "train", on_bad="skip")),
    "mtt_csv": ("mtt", "annotations_final.csv", load_mtt),
    "mtt_csv_derived_split": ("mtt_derived", "annotations_final.csv", load_mtt),
    "mtt_split_npy": ("mtt", "split/mtat/train.npy", load_mtt),
    "jamendo_tsv": ("jamendo", "data/splits/split-0/autotagging_top50tags-train.tsv", load_jamendo),
    "fma_tracks_csv": ("fma", "fma_metadata/tracks.csv", load_fma),
    "emomusic_static_csv": ("emomusic", "annotations/static_annotations.csv", load_emomusic),
    "emomusic_info_csv": ("emomusic", "annotations/songs_info.csv", load_emomusic),
    "nsynth_json": ("nsynth", "nsynth-train/examples.json", load_nsynth),
}

STATS: dict[str, Counter] = defaultdict(Counter)
SAMPLES: dict[str, dict[str, str]] = defaultdict(dict)  # parser -> kind -> first message seen
KINDS = [  # (kind, pattern of the message), first match wins
    ("encoding", r"not UTF-8"),
    ("field too long", r"longer than [\d,]+ characters"),
    ("duplicate id", r"duplicate|appears twice"),
    ("invalid JSON", r"invalid JSON|not jukemir"),
    ("malformed CSV", r"malformed CSV|cannot be parsed"),
    ("header", r"header|missing column|header rows"),
    ("field count", r"\d+ fields"),
    ("empty", r"empty file|no usable|no track"),
    ("npy", r"\.npy|string array|not UTF-8"),
    ("value", r"."),
]


def _kind(message: str) -> str:
    return next(kind for kind, pattern in KINDS if re.search(pattern, message))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_damaged_metadata_gives_only_our_errors_naming_the_file(worlds, name):
    world, rel, parse = PARSERS[name]
    root = worlds[world]
    target = root / rel
    original = target.read_bytes()

    @FUZZ
    @given(data=damaged(original))
    def run(data):
        target.write_bytes(data)
        try:
            parse(root)
            STATS[name]["parsed"] += 1
        except DatasetError as exc:  # anything else fails the test
            assert str(target) in str(exc), f"the error does not name {target}: {exc}"
            assert "\n" not in str(exc)  # one line for the CLI
            STATS[name][_kind(str(exc))] += 1
            SAMPLES[name].setdefault(_kind(str(exc)), str(exc)[:300])

    try:
        run()
    finally:
        target.write_bytes(original)
    print(f"fuzz {name}: {sum(STATS[name].values())} examples, {dict(STATS[name])}, 0 uncaught")
    if os.environ.get("MULAP_FUZZ_STATS"):
        Path(os.environ["MULAP_FUZZ_STATS"]).write_text(
            json.dumps({"counts": {k: dict(v) for k, v in STATS.items()}, "samples": SAMPLES}, indent=1)
        )
