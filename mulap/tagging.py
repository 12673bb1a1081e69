"""Music tagging with the musicnn taggers (`mulap tag`), as `python -m musicnn.tagger` users know it.

A tagger is a loaded model with a tagging head (`mulap.load("supervised_mtt" | "supervised_msd")`:
`model.tagger`, `model.tag_names`, 50 tags each). A file's taggram is the tag probabilities of each
of its 3 s chunks [T, 50] (the chunks `mulap embed` uses); its tags are the mean over chunks
(musicnn's `tags_likelihood_mean`).

    model = mulap.load("supervised_mtt")
    result = tag_file(model, "song.mp3")            # FileTags: .probabilities [50], .taggram [T, 50], .starts [T]
    top_tags(result.probabilities, model.tag_names, 3)
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mulap.files import atomic_write_text

log = logging.getLogger(__name__)
TAG_MODELS = ("supervised_mtt", "supervised_msd")


@dataclass
class FileTags:
    """Tags of one file: probabilities [K] (mean over chunks), taggram [T, K], chunk starts in seconds [T]."""

    file: str
    probabilities: np.ndarray
    taggram: np.ndarray
    starts: np.ndarray


def load_tagger(name: str = "supervised_mtt", device=None):
    """A model that can tag (`model.tagger` is set); a ValueError naming the model otherwise."""
    import mulap

    model = mulap.load(name, device=device)
    if getattr(model, "tagger", None) is None:
        raise ValueError(f"{model.name} has no tagging head: `mulap tag` needs one of {', '.join(TAG_MODELS)}")
    return model


def taggram(model, wave, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities of each 3 s chunk of a 16 kHz mono waveform [S]: ([T, K] float32, starts [T] seconds)."""
    import torch

    chunks, starts = model.chunks_of(np.asarray(wave, dtype=np.float32))
    out = []
    with torch.inference_mode():
        for i in range(0, len(chunks), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(chunks[i:i + batch_size])).to(model.device)
            out.append(model.tagger(batch).float().cpu().numpy())
    return np.concatenate(out), np.asarray(starts, dtype=np.float64)


def tag_audio(model, audio, sample_rate, batch_size: int = 32) -> np.ndarray:
    """Track tag probabilities [N, K] of in-memory audio (what `model.embed` takes: a 1-D or [channels, samples]
    array, or a list of them, at `sample_rate`)."""
    waves = model.prepare_audio(audio, sample_rate)
    return np.stack([taggram(model, w, batch_size)[0].mean(0) for w in waves])


def tag_file(model, path: str | Path, batch_size: int = 32) -> FileTags:
    """Tags of one audio file (any format `mulap embed` reads); AudioError names a file that cannot be read."""
    from mulap.audio.io import load_audio

    probs, starts = taggram(model, load_audio(path, model.sample_rate), batch_size)
    return FileTags(str(path), probs.mean(0), probs, starts)


def top_tags(probabilities: np.ndarray, tag_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable tags, highest first (ties keep the tag order)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(tag_names[i], float(probabilities[i])) for i in order]


def tags_csv(results: Sequence[FileTags], tag_names: Sequence[str], k: int) -> str:
    """CSV text with the columns file,tag,probability: the top k rows per file, highest first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "tag", "probability"])
    for r in results:
        for tag, p in top_tags(r.probabilities, tag_names, k):
            writer.writerow([r.file, tag, f"{p:.6f}"])
    return buf.getvalue()


def format_table(results: Sequence[FileTags], tag_names: Sequence[str], k: int) -> str:
    """The printed table: one block per file, its top k tags with their probabilities."""
    lines = []
    for r in results:
        lines.append(f"{r.file}  ({len(r.starts)} chunk(s) of 3 s)")
        for tag, p in top_tags(r.probabilities, tag_names, k):
            lines.append(f"    {tag:<20} {p:.3f}")
    return "\n".join(lines)


def plot_taggram(result: FileTags, tag_names: Sequence[str], path: str | Path, model_name: str = "") -> Path:
    """Tags x time image of one file (probabilities 0..1 per 3 s chunk), as musicnn's taggram."""
    from mulap.evaluation.plots import _save, plt

    k, t = len(tag_names), len(result.starts)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * t + 3.5), 0.16 * k + 1.6))
    im = ax.imshow(result.taggram.T, aspect="auto", origin="upper", cmap="Blues", vmin=0.0, vmax=1.0,
                   interpolation="nearest")
    ax.set_yticks(range(k))
    ax.set_yticklabels(tag_names, fontsize=6)
    step = max(1, t // 12)
    ax.set_xticks(range(0, t, step))
    ax.set_xticklabels([f"{s:.0f}" for s in result.starts[::step]], fontsize=7)
    ax.set_xlabel("chunk start (s)")
    fig.colorbar(im, ax=ax, fraction=0.04, label="tag probability")
    ax.set_title(f"{Path(result.file).name}" + (f" ({model_name})" if model_name else ""), fontsize=9)
    return _save(fig, path)


def _png_names(files: Sequence[str]) -> list[str]:
    """One PNG name per file: its stem, made unique with -2, -3 ... when two files share it."""
    used: set[str] = set()
    names = []
    for f in files:
        base = name = Path(f).stem or "audio"
        n = 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names.append(f"{name}.png")
    return names


def run_tag(inputs: Sequence[str], model_name: str = "supervised_mtt", top: int = 5, out: str | Path | None = None,
            taggram_dir: str | Path | None = None, batch_size: int = 32, progress: bool = True) -> list[FileTags]:
    """`mulap tag`: tag every audio file under `inputs`; print a table, optionally write a CSV and taggram PNGs."""
    from tqdm.auto import tqdm

    from mulap.audio.io import AudioError
    from mulap.audio.scan import list_audio

    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    if out is not None and Path(out).suffix.lower() != ".csv":
        raise ValueError(f"output {out}: use a .csv file name")
    files = list_audio(list(inputs))
    model = load_tagger(model_name)
    results, failed = [], []
    for path in tqdm(files, desc=f"tag ({model.name})", unit="file", disable=not progress):
        try:
            results.append(tag_file(model, path, batch_size))
        except AudioError as exc:
            failed.append(exc)
            log.error("skipped %s", exc)
    names = model.tag_names
    print(format_table(results, names, top))
    if out is not None:
        atomic_write_text(out, tags_csv(results, names, top))
        print(f"tags: {out} ({len(results)} file(s) x top {min(top, len(names))})")
    if taggram_dir is not None:
        folder = Path(taggram_dir)
        for r, png in zip(results, _png_names([r.file for r in results])):
            plot_taggram(r, names, folder / png, model.name)
        print(f"taggrams: {folder} ({len(results)} PNG file(s))")
    if failed:
        print(f"{len(failed)} of {len(files)} file(s) could not be read (see above)")
    if not results:
        raise ValueError(f"none of the {len(files)} file(s) could be tagged")
    return results
