"""`mulap prepare csv`: your own labelled audio as a task (csv:NAME) that downstream/eval take like the built-in ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mulap.audio.io import write_audio
from mulap.cli import main
from mulap.data.downstream.csv import file_id, load_csv_labels, random_split
from mulap.data.prepare import load_prepared, targets
from mulap.data.tasks import DatasetFormatError, get_task
from tests.helpers import tone


def _audio(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        f0 = 110.0 if "low" in name else 880.0
        write_audio(root / name, tone(2.0 + (i % 3), f0, bright="low" not in name), 16000)
    return root


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def pitched(tmp_path) -> tuple[Path, Path]:
    """20 clips, half low and dull, half high and bright, in two sub-folders; labels.csv without a split column."""
    names = [f"{'low' if i % 2 else 'high'}/clip {i:02d}.wav" for i in range(20)]
    audio = _audio(tmp_path / "audio", names)
    rows = ["file,label"] + [f"{n},{'low' if 'low' in n else 'high'}" for n in names]
    return _csv(tmp_path / "labels.csv", "\n".join(rows) + "\n"), audio


def test_single_label_with_seeded_80_10_10_split(pitched, tmp_path):
    labels, audio = pitched
    ds = load_csv_labels(labels, audio, seed=3)
    assert ds.task_type == "multiclass" and ds.label_names == ["high", "low"]
    assert ds.counts() == {"train": 16, "valid": 2, "test": 2}
    by_id = {r.id: r for r in ds.records}
    rec = by_id[file_id("low/clip 01.wav")]
    assert rec.id == "low__clip_01.wav" and rec.audio == audio / "low" / "clip 01.wav" and rec.target == 1
    # the split is by file and seeded: the same seed gives the same split, another seed another one
    again = load_csv_labels(labels, audio, seed=3)
    assert [r.split for r in again.records] == [r.split for r in ds.records]
    assert [r.split for r in load_csv_labels(labels, audio, seed=4).records] != [r.split for r in ds.records]

    report = main(
        [
            "prepare",
            "csv",
            str(labels),
            str(audio),
            "--name",
            "pitch",
            f"env.data_root={tmp_path / 'data'}",
            "env.seed=3",
            "training.num_workers=0",
        ]
    )
    assert report == 0
    prepared = load_prepared(tmp_path / "data" / "datasets" / "csv_pitch", check_files=True)
    assert prepared.task == "csv:pitch" and prepared.task_type == "multiclass"
    assert {it.id: it.split for it in prepared.items} == {r.id: r.split for r in ds.records}
    assert targets(prepared, "train").tolist() == [r.target for r in ds.records if r.split == "train"]
    meta = json.loads((prepared.root / "dataset.json").read_text())
    assert meta["primary_metric"] == "accuracy" and meta["source"]["split"].startswith("seeded 80/10/10")


def test_random_split_sizes():
    for n, want in ((3, (1, 1, 1)), (10, (8, 1, 1)), (20, (16, 2, 2)), (101, (81, 10, 10))):
        s = random_split(n, 0)
        assert (s.count("train"), s.count("valid"), s.count("test")) == want


def test_multilabel_tags_and_split_column(tmp_path):
    names = [f"c{i}.flac" for i in range(6)]
    audio = _audio(tmp_path / "a", names)
    labels = _csv(
        tmp_path / "l.csv",
        "file,tags,split,comment\n"
        "c0.flac,piano; calm,train,x\nc1.flac,guitar,train,\nc2.flac,,val,\n"
        "c3.flac,piano;guitar,validation,\nc4.flac,calm,test,\nc5.flac,guitar,TEST,\n",
    )
    ds = load_csv_labels(labels, audio)
    assert ds.task_type == "multilabel" and ds.label_names == ["calm", "guitar", "piano"]
    assert [r.split for r in ds.records] == ["train", "train", "valid", "valid", "test", "test"]
    assert np.array_equal(ds.records[0].target, [1, 0, 1]) and np.array_equal(ds.records[2].target, [0, 0, 0])
    spec = get_task("csv:mine").resolved(ds.task_type)
    assert spec.primary_metric == "roc_auc_macro" and spec.dataset == "csv_mine"


@pytest.mark.parametrize(
    "text, match",
    [
        ("name,label\na.wav,x\n", "no 'file' column"),
        ("file,label,tags\na.wav,x,y\n", "exactly one of the columns"),
        ("file,class\na.wav,x\n", "exactly one of the columns"),
        ("file,label\n", "no rows"),
        ("file,label\na.wav,x\nb.wav,\n", r"line 3: empty label for 'b.wav'"),
        ("file,label,split\na.wav,x,train\nb.wav,y,dev\n", r"line 3: split 'dev'"),
        ("file,label\na.wav,x\nb.wav,y\na.wav,y\n", r"line 4: file 'a.wav' listed twice \(first on line 2\)"),
        ("file,label,split\na.wav,x,train\nb.wav,y,test\n", "no valid files"),
        ("file,tags\na.wav,\nb.wav,\nc.wav,\n", "every 'tags' cell is empty"),
    ],
)
def test_bad_csv_is_a_clear_error_with_its_line(tmp_path, text, match):
    audio = _audio(tmp_path / "a", ["a.wav", "b.wav", "c.wav"])
    labels = _csv(tmp_path / "labels.csv", text)
    with pytest.raises(DatasetFormatError, match=match) as err:
        load_csv_labels(labels, audio)
    assert str(labels) in str(err.value)


def test_a_file_name_the_os_refuses_is_listed_as_missing(tmp_path):
    audio = _audio(tmp_path / "a", ["here.wav"])
    long = "x" * 300 + ".wav"  # longer than the file system allows a name to be: stat raises, not False
    labels = _csv(tmp_path / "labels.csv", f"file,label\nhere.wav,x\n{long},y\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 listed audio file\(s\) not found: line 3: .*xxx\.wav"):
        load_csv_labels(labels, audio)


def test_missing_audio_files_are_all_named(tmp_path, capsys):
    audio = _audio(tmp_path / "a", ["here.wav"])
    labels = _csv(tmp_path / "labels.csv", "file,label\nhere.wav,x\ngone.wav,y\nsub/also gone.mp3,x\n")
    with pytest.raises(
        FileNotFoundError, match=r"2 of 3 listed audio file\(s\) not found: line 3: .*gone.wav; line 4: .*also gone.mp3"
    ):
        load_csv_labels(labels, audio)
    # the CLI prints it as one line, and nothing is written
    assert main(["prepare", "csv", str(labels), str(audio), "--name", "x", f"env.data_root={tmp_path / 'data'}"]) == 2
    err = capsys.readouterr().err
    assert "gone.wav" in err and "Traceback" not in err and not (tmp_path / "data").exists()
    assert main(["prepare", "csv", str(tmp_path / "nope.csv"), str(audio), "--name", "x"]) == 2
    assert "nope.csv: labels CSV not found" in capsys.readouterr().err
    assert main(["prepare", "csv", str(labels), str(audio)]) == 2  # --name missing
    assert "--name NAME" in capsys.readouterr().err
    assert main(["prepare", "csv", str(labels), str(audio), "--name", "bad name"]) == 2
    assert "dataset name 'bad name'" in capsys.readouterr().err
    assert main(["prepare", "csv:x", str(audio)]) == 2  # the task name instead of `prepare csv`
    assert "csv:x is prepared with `mulap prepare csv <labels.csv> <audio_dir> --name x`" in capsys.readouterr().err


def test_downstream_and_eval_take_a_csv_task(pitched, tmp_path, capsys):
    labels, audio = pitched
    env = [f"env.data_root={tmp_path / 'data'}", f"env.save_dir={tmp_path / 'save'}", "training.num_workers=0"]
    assert main(["prepare", "csv", str(labels), str(audio), "--name", "pitch", *env]) == 0
    assert (
        main(
            [
                "downstream",
                "random",
                "csv:pitch",
                "--downstream_id",
                "p1",
                "downstream.epochs=15",
                "downstream.probe=linear",
                *env,
            ]
        )
        == 0
    )
    run = tmp_path / "save" / "experiments" / "random" / "downstream" / "p1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "csv:pitch" and summary["metric"] == "accuracy"
    assert main(["eval", "random", "p1", *env]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test_tracks"] == 2 and metrics["accuracy"] is not None
    assert (run / "plots" / "confusion_matrix.png").is_file()
    # a csv task that was never prepared says how to prepare it
    assert main(["downstream", "random", "csv:other", *env]) == 2
    assert "mulap prepare csv <labels.csv> <audio_dir> --name other" in capsys.readouterr().err


@pytest.mark.parametrize(
    "data, match",
    [
        (b"file,label\na.wav,x\nb.wav,caf\xe9\n", r"line 3: not UTF-8 text: byte 0xe9"),
        (b'file,label\na.wav,x\nb.wav,"unclosed\n' + b"y" * (131_073) + b"\n", r"line 3: a field longer than"),
    ],
)
def test_undecodable_or_malformed_csv_names_its_line(tmp_path, data, match):
    audio = _audio(tmp_path / "a", ["a.wav", "b.wav"])
    labels = tmp_path / "labels.csv"
    labels.write_bytes(data)
    with pytest.raises(DatasetFormatError, match=match) as err:
        load_csv_labels(labels, audio)
    assert str(labels) in str(err.value)


def test_byte_order_mark_and_crlf_are_read(tmp_path):
    audio = _audio(tmp_path / "a", ["a.wav", "b.wav", "c.wav"])
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbffile,label\r\na.wav,x\r\nb.wav,y\r\nc.wav,x\r\n")
    raw = load_csv_labels(labels, audio)
    assert raw.label_names == ["x", "y"] and len(raw.records) == 3
