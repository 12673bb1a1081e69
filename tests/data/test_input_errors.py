"""Issue 11, item 7: each text-input failure of the audit, now named precisely.

Non-UTF-8 bytes name the file, line and byte offset; a CSV field over the csv module's limit
names the line where its row starts; a duplicate id names both places; unreadable audio in a
publisher's dataset is skipped with what is really wrong (empty, not audio, truncated).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mulap.cli import main
from mulap.data.audiocaption import read_split
from mulap.data.prepare import prepare
from mulap.data.tasks import load_emomusic, load_fma, load_jamendo, load_mtt, load_nsynth
from mulap.infra.text_files import DatasetError, DatasetFormatError
from tests.data import publisher_layouts as pl
from tests.helpers import make_audiocaption

JAMENDO_SPLITS = "data/splits/split-0/autotagging_top50tags-{}.tsv"

# name -> (build the world, the file to damage, read it)
READERS = {
    "pretrain_json": (lambda p: make_audiocaption(p, n_train=4, n_val=2), "dataset_train.json", lambda r: read_split(r, "train")),
    "mtt_csv": (pl.build_mtt, "annotations_final.csv", load_mtt),
    "mtt_split_txt": (None, "split/mtat/train.txt", load_mtt),  # built below: plain-text split lists
    "jamendo_tsv": (pl.build_jamendo, JAMENDO_SPLITS.format("validation"), load_jamendo),
    "fma_tracks_csv": (pl.build_fma, "fma_metadata/tracks.csv", load_fma),
    "emomusic_static_csv": (pl.build_emomusic, "annotations/static_annotations.csv", load_emomusic),
    "emomusic_info_csv": (pl.build_emomusic, "annotations/songs_info.csv", load_emomusic),
    "emomusic_jukemir_json": (None, "emomusic.json", load_emomusic),  # built below
    "nsynth_json": (pl.build_nsynth, "nsynth-valid/examples.json", load_nsynth),
}


def _build(name, root):
    build, rel, read = READERS[name]
    if name == "mtt_split_txt":
        root = pl.build_mtt(root)
        d = root / "split/mtat"
        for split in ("train", "valid", "test"):
            (d / f"{split}.txt").write_text("\n".join(np.load(d / f"{split}.npy").tolist()) + "\n")
            (d / f"{split}.npy").unlink()
        (d / "top50_tags.txt").write_text("\n".join(np.load(d / "tags.npy").tolist()) + "\n")
        (d / "tags.npy").unlink()
        return root, root / rel, read
    if name == "emomusic_jukemir_json":
        root = pl.build_emomusic(root)
        splits = {f"{sid:04d}": {"split": "test" if mset == "evaluation" else "train"} for sid, _, mset, _, _ in pl.EMO_SONGS}
        (root / rel).write_text(json.dumps(splits, indent=1))
        return root, root / rel, read
    root = build(root)
    return root, root / rel, read


def _line_start(data: bytes, line: int) -> int:
    """Byte offset of the first byte of 1-based `line`."""
    return 0 if line == 1 else [m.end() for m in re.finditer(b"\n", data)][line - 2]


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_byte_that_is_not_utf8_names_file_line_and_offset(tmp_path, name):
    root, path, read = _build(name, tmp_path / name)
    data = path.read_bytes()
    at = _line_start(data, 3) + 1  # the second byte of line 3
    path.write_bytes(data[:at] + b"\xff" + data[at:])  # e.g. a Latin-1 export
    with pytest.raises(DatasetFormatError) as err:
        read(root)
    assert str(err.value) == (f"{path}, line 3: not UTF-8 text: byte 0xff at byte offset {at} (column 2); save the file as UTF-8")


@pytest.mark.parametrize("name,line", [("mtt_csv", 4), ("emomusic_static_csv", 3), ("emomusic_info_csv", 5)])
def test_a_csv_field_over_the_csv_limit_names_the_line(tmp_path, name, line):
    root, path, read = _build(name, tmp_path / name)
    lines = path.read_text().split("\n")
    sep = "\t" if name == "mtt_csv" else ","
    fields = lines[line - 1].split(sep)
    fields[-1] = '"' + "x" * 140_000 + '"'
    lines[line - 1] = sep.join(fields)
    path.write_text("\n".join(lines))
    with pytest.raises(
        DatasetFormatError, match=rf"^{re.escape(str(path))}, line {line}: a field longer than 131,072 characters"
    ):
        read(root)


def test_an_unclosed_quote_names_the_line_where_the_runaway_field_starts(tmp_path):
    root, path, read = _build("emomusic_info_csv", tmp_path / "emo")
    lines = path.read_text().split("\n")
    lines[2] = lines[2].replace("Song 3", '"Song 3')  # the quote swallows every following line
    path.write_text("\n".join(lines[:3] + lines[3:] * 3000))  # enough lines to pass the limit
    with pytest.raises(DatasetFormatError, match=r"songs_info\.csv, line 3: a field longer than .* closing one"):
        read(root)


def test_long_fields_outside_the_csv_module_are_read(tmp_path):
    root = pl.build_fma(tmp_path / "fma")  # pandas has no field limit: a long title is fine
    path = root / "fma_metadata/tracks.csv"
    path.write_text(path.read_text().replace("Track 10", "T" * 140_000))
    assert len(load_fma(root).records) == 7  # the 8 fma_small tracks less the known-broken one


# ------------------------------------------------------------------ duplicate ids: both places


def _dup_case(name, tmp_path):
    """(root, reader, the error message expected) for one duplicated id per reader."""
    if name == "pretrain_json":
        root = make_audiocaption(tmp_path / "ac", n_train=4, n_val=2)
        recs = json.loads((root / "dataset_train.json").read_text())
        recs[3]["audio_id"] = recs[1]["audio_id"]
        (root / "dataset_train.json").write_text(json.dumps(recs))
        return (
            root,
            lambda r: read_split(r, "train"),
            (rf"dataset_train\.json, record 3 .*duplicate audio_id '{recs[1]['audio_id']}': first at record 1"),
        )
    if name == "mtt_csv":
        root = pl.build_mtt(tmp_path / "mtt")
        path = root / "annotations_final.csv"
        lines = path.read_text().split("\n")
        path.write_text("\n".join(lines[:6] + [lines[2]] + lines[6:]))
        return root, load_mtt, rf"{re.escape(str(path))}, line 7: duplicate clip_id '6': first at {re.escape(str(path))}, line 3$"
    if name == "mtt_split":
        root = pl.build_mtt(tmp_path / "mtt")
        d = root / "split/mtat"
        first = str(np.load(d / "train.npy")[0])
        np.save(d / "test.npy", np.asarray([*np.load(d / "test.npy").tolist(), first]))
        return (
            root,
            load_mtt,
            (
                rf"test\.npy, record '4': duplicate annotation row '{first.split()[0]}': "
                rf"first at {re.escape(str(d / 'train.npy'))}, record '0'$"
            ),
        )
    if name == "jamendo_tsv":
        root = pl.build_jamendo(tmp_path / "jamendo")
        train, test = root / JAMENDO_SPLITS.format("train"), root / JAMENDO_SPLITS.format("test")
        test.write_text(test.read_text() + train.read_text().split("\n")[2] + "\n")
        return (
            root,
            load_jamendo,
            (
                rf"{re.escape(str(test))}, line 4: duplicate TRACK_ID 'track_1048592': "
                rf"first at {re.escape(str(train))}, line 3$"
            ),
        )
    if name.startswith("emomusic"):
        root = pl.build_emomusic(tmp_path / "emo")
        path = root / ("annotations/static_annotations.csv" if name == "emomusic_static_csv" else "annotations/songs_info.csv")
        lines = path.read_text().split("\n")
        path.write_text("\n".join(lines[:5] + [lines[3]] + lines[5:]))
        return (
            root,
            load_emomusic,
            rf"{re.escape(str(path))}, line 6: duplicate song_id '4': first at {re.escape(str(path))}, line 4$",
        )
    if name == "fma_tracks_csv":
        root = pl.build_fma(tmp_path / "fma")
        path = root / "fma_metadata/tracks.csv"
        lines = path.read_text().split("\n")
        path.write_text("\n".join(lines[:8] + [lines[4]] + lines[8:]))
        return root, load_fma, rf"{re.escape(str(path))}, line 9: duplicate track_id 5: first at line 5$"
    if name == "nsynth_json_one_file":
        root = pl.build_nsynth(tmp_path / "nsynth")
        path = root / "nsynth-valid/examples.json"
        text = path.read_text()
        key = "bass_synthetic_034-030-100"
        rec = json.dumps({key: json.loads(text)[key]})[1:-1]
        new = text.rstrip().rstrip("}") + ",\n" + rec + "\n}\n"
        path.write_text(new)
        a, b = [n for n, line in enumerate(new.split("\n"), start=1) if line.strip().startswith(f'"{key}"')]
        return root, load_nsynth, rf"{re.escape(str(path))}: key '{key}' appears twice in one object \(lines {a} and {b}\)$"
    if name == "nsynth_json_two_splits":
        root = pl.build_nsynth(tmp_path / "nsynth")
        train, test = root / "nsynth-train/examples.json", root / "nsynth-test/examples.json"
        data = json.loads(test.read_text())
        key = "keyboard_acoustic_004-060-025"
        data[key] = json.loads(train.read_text())[key]
        test.write_text(json.dumps(data))
        return (
            root,
            load_nsynth,
            (
                rf"{re.escape(str(test))}, record '{key}': duplicate note_str '{key}': "
                rf"first at {re.escape(str(train))}, record '{key}'$"
            ),
        )
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "pretrain_json",
        "mtt_csv",
        "mtt_split",
        "jamendo_tsv",
        "emomusic_static_csv",
        "emomusic_info_csv",
        "fma_tracks_csv",
        "nsynth_json_one_file",
        "nsynth_json_two_splits",
    ],
)
def test_a_duplicate_id_names_both_places(tmp_path, name):
    root, read, expected = _dup_case(name, tmp_path)
    with pytest.raises(DatasetError, match=expected):
        read(root)


# ------------------------------------------------------------------ through the CLI and prepare


def test_cli_prints_one_line_naming_file_and_line(tmp_path, capsys):
    root = pl.build_mtt(tmp_path / "mtt")
    path = root / "annotations_final.csv"
    path.write_bytes(path.read_bytes().replace(b"classical", "clássical".encode("latin-1"), 1))
    assert main(["prepare", "mtt_tagging", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"mulap prepare: error: {path}, line 1: not UTF-8 text: byte 0xe1")


def test_prepare_skips_unusable_audio_saying_what_is_wrong(tmp_path):
    raw = pl.build_emomusic(tmp_path / "emo")
    clips = raw / "clips_45seconds"
    (clips / "2.mp3").write_bytes(b"")
    (clips / "3.mp3").write_text("<html><body>Rate limit exceeded</body></html>")
    pl._clip(clips / "5.mp3", seconds=8.0, sr=44100)
    long = (clips / "5.mp3").read_bytes()
    (clips / "5.mp3").write_bytes(long[: len(long) // 4])  # an interrupted download
    report = prepare("emomusic_reg", raw, tmp_path / "out", num_workers=1, progress=False)
    reasons = {s["file"].rsplit("/", 1)[-1]: s["reason"] for s in report.skipped}
    assert reasons["2.mp3"] == "empty file (0 bytes)"
    assert reasons["3.mp3"] == "not audio: a text file (starts with '<html><body>Rate limit exceeded</body></')"
    assert re.fullmatch(
        r"truncated: 1\.\d\d s decoded of the 8\.00 s its MP3 header declares \(an incomplete download or copy\?\)",
        reasons["5.mp3"],
    )
    assert "4.mp3" not in reasons
    assert sum(report.counts.values()) == len(pl.EMO_SONGS) - 3


# ------------------------------------------------------------------ what the long fuzz runs found


def test_a_file_name_too_long_for_the_file_system_is_not_found_not_an_oserror(tmp_path):
    root = make_audiocaption(tmp_path / "ac", n_train=4, n_val=2)
    recs = json.loads((root / "dataset_train.json").read_text())
    recs[1]["audio_path"] = "x" * 300 + ".wav"  # longer than NAME_MAX (255)
    (root / "dataset_train.json").write_text(json.dumps(recs))
    with pytest.raises(DatasetError, match=r"dataset_train\.json, record 1 .*audio file not found"):
        read_split(root, "train")
    raw = pl.build_mtt(tmp_path / "mtt", with_split=False)
    path = raw / "annotations_final.csv"
    path.write_text(path.read_text().replace("f/american_bach", "f/" + "x" * 300, 1))
    assert len(load_mtt(raw).records) == 9  # audio is not opened by the loader; prepare reports it unreadable


def test_a_split_list_holding_code_points_that_are_not_characters(tmp_path):
    raw = pl.build_mtt(tmp_path / "mtt")
    path = raw / "split/mtat/valid.npy"
    arr = np.load(path)
    data = bytearray(np.ascontiguousarray(arr).tobytes())
    data[arr.dtype.itemsize + 4 : arr.dtype.itemsize + 8] = (0x110000).to_bytes(4, "little")  # entry 1, second character
    np.save(path, np.frombuffer(bytes(data), dtype=arr.dtype))
    with pytest.raises(DatasetFormatError, match=rf"{re.escape(str(path))}, record '1': entry holds code point 0x110000"):
        load_mtt(raw)
