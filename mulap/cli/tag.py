"""`mulap tag`: the musicnn taggers' tags of every audio file, as a table, a CSV and taggram PNGs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mulap.inference.tagging import FileTags, format_table, load_tagger, tag_file, tags_csv
from mulap.infra.files import atomic_write_text

log = logging.getLogger(__name__)


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


def run_tag(
    inputs: Sequence[str],
    model_name: str = "supervised_mtt",
    top: int = 5,
    out: str | Path | None = None,
    taggram_dir: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> list[FileTags]:
    """`mulap tag`: tag every audio file under `inputs`; print a table, optionally write a CSV and taggram PNGs."""
    from tqdm.auto import tqdm

    from mulap.audio.io import AudioError
    from mulap.audio.scan import list_audio
    from mulap.evaluation.plots import plot_taggram

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
