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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulap.infra.config_schema import SUPERVISED_NAMES

log = logging.getLogger(__name__)
TAG_MODELS = SUPERVISED_NAMES  # the models with a tagging head


@dataclass
class FileTags:
    """Tags of one file: probabilities [K] (mean over chunks), taggram [T, K], chunk starts in seconds [T]."""

    file: str
    probabilities: np.ndarray
    taggram: np.ndarray
    starts: np.ndarray


def load_tagger(name: str = "supervised_mtt", device=None):
    """A model that can tag (`model.tagger` is set); a ValueError naming the model otherwise."""
    from mulap.inference.api import load

    model = load(name, device=device)
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
            batch = torch.from_numpy(np.ascontiguousarray(chunks[i : i + batch_size])).to(model.device)
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
