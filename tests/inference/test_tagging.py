"""`mulap tag`: musicnn's tags per file on rendered instrument phrases (soundfont: TimGM6mb via tinysoundfont),
the CSV's rows and order, the taggram PNGs, and the numbers against the tagger run by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from matplotlib.image import imread

from mulap.audio.chunks import cut_chunks
from mulap.audio.io import load_audio
from mulap.cli import main
from mulap.demo.world.render import normalize, render_notes
from mulap.inference.tagging import load_tagger, tag_audio, tag_file
from mulap.models.musicnn_tf import load_musicnn_pretrained

# GM programs and a comfortable starting pitch per instrument (gm.PROGRAM_NAMES: 0 piano, 40 violin, 73 flute, 24 guitar)
INSTRUMENTS = {"piano": (0, 60), "violin": (40, 67), "flute": (73, 72), "guitar": (24, 52)}
SCALE = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0, 4]  # up and down a major scale, 0.5 s a note


def phrase(program: int, base: int) -> np.ndarray:
    notes = np.array([[i * 0.5, i * 0.5 + 0.45, 0, base + s, 90] for i, s in enumerate(SCALE)], dtype=np.float64)
    return normalize(render_notes(notes, {0: program}, 8.0).mean(axis=1), -20.0)  # 8 s, 16 kHz mono


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """piano.wav (44.1 kHz stereo), violin.flac, flute.wav, guitar.ogg, and a notes.txt that is not audio."""
    folder = tmp_path_factory.mktemp("instruments")
    for name, (program, base) in INSTRUMENTS.items():
        wave = phrase(program, base)
        if name == "piano":
            wave44 = soxr.resample(wave, 16000, 44100)
            sf.write(folder / "piano.wav", np.stack([wave44, 0.8 * wave44], axis=1), 44100)
        else:
            sf.write(folder / f"{name}.{ {'violin': 'flac', 'flute': 'wav', 'guitar': 'ogg'}[name] }", wave, 16000)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_tag_command_finds_each_instrument_and_writes_csv_and_taggrams(rendered, tmp_path, capsys):
    out, grams = tmp_path / "tags.csv", tmp_path / "taggrams"
    assert main(["tag", str(rendered), "--top", "3", "-o", str(out), "--taggram", str(grams)]) == 0
    printed = capsys.readouterr().out
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "tag", "probability"]
    rows = rows[1:]
    assert len(rows) == 4 * 3  # top 3 rows per file, notes.txt skipped
    by_file: dict[str, list[tuple[str, float]]] = {}
    for file, tag, p in rows:
        by_file.setdefault(file, []).append((tag, float(p)))
    assert sorted(by_file) == sorted(str(p) for p in rendered.iterdir() if p.suffix != ".txt")
    for file, tags in by_file.items():
        probs = [p for _, p in tags]
        assert probs == sorted(probs, reverse=True) and all(0.0 <= p <= 1.0 for p in probs)
        instrument = next(name for name in INSTRUMENTS if f"/{name}." in file)
        assert instrument in [t for t, _ in tags], (file, tags)  # the instrument is in its file's top 3
        assert file in printed and tags[0][0] in printed
    pngs = sorted(p.name for p in grams.iterdir())
    assert pngs == ["flute.png", "guitar.png", "piano.png", "violin.png"]
    img = imread(grams / "piano.png")
    assert img.ndim == 3 and img.shape[0] > 300 and img[..., :3].std() > 0  # 50 tag rows drawn


def test_tags_are_the_mean_of_the_chunk_probabilities(rendered):
    model = load_tagger("supervised_mtt", device="cpu")
    reference, _, tags = load_musicnn_pretrained("MTT_musicnn")  # the tagger built by hand
    wave = load_audio(rendered / "violin.flac")
    with torch.no_grad():
        want = reference(torch.from_numpy(cut_chunks(wave, 48000, pad_last=False))).numpy()
    got = tag_file(model, rendered / "violin.flac")
    assert got.taggram.shape == (2, 50) and np.array_equal(got.starts, [0.0, 3.0])  # 8 s: two whole chunks
    np.testing.assert_allclose(got.taggram, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.probabilities, want.mean(0), rtol=1e-5, atol=1e-6)
    assert model.tag_names == tags
    # in-memory audio gives the same tags as the file (44.1 kHz stereo [channels, samples])
    stereo, rate = sf.read(rendered / "piano.wav", dtype="float32")
    np.testing.assert_allclose(
        tag_audio(model, stereo.T, rate)[0], tag_file(model, rendered / "piano.wav").probabilities, rtol=1e-5, atol=1e-6
    )


def test_tag_errors(rendered, tmp_path, capsys):
    assert main(["tag", str(rendered), "-o", str(tmp_path / "tags.txt")]) == 2
    assert "use a .csv file name" in capsys.readouterr().err
    assert main(["tag", str(rendered), "--model", "random"]) == 2
    assert "has no tagging head" in capsys.readouterr().err
    assert main(["tag", str(rendered), "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err
    assert main(["tag", str(tmp_path / "missing.wav")]) == 2
    assert "no such audio file or folder" in capsys.readouterr().err
