"""Which files under a folder are music: the one folder scan `embed`, `tag` and `search` share.

A file is audio by its suffix: `.npy` (the seed's 16 kHz arrays), every format the installed
libsndfile reads, and, with PyAV installed (the `m4a` extra), `.m4a` / `.m4b` / `.aac`. The scan
never reads what mulap (or anyone) keeps out of sight, nor what mulap itself wrote:

- hidden files and folders (a name starting with "."): this covers mulap's own temporary and
  set-aside folders (`.mulap-index`, `.<name>.tmp-*`, `.<name>.old-*`, `.<out>.parts`);
- a search index under any name (`--index` can put one inside the music folder): a folder holding
  mulap's `index.json`, or index.json with tracks.npy and chunks.npy;
- an embedding cache entry (meta.json with features.npy and track.npy).

Files skipped by their suffix are counted (INFO); m4a/AAC files that cannot be read because PyAV
is missing are counted and the first few named, with the reason, at WARNING, as are sub-folders that
cannot be listed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mulap.audio.io import PYAV_MISSING, PYAV_SUFFIXES, AudioError, pyav_installed

log = logging.getLogger(__name__)

# libsndfile's formats (soundfile.available_formats()) -> the file suffixes they use. Header-less RAW and
# the MATLAB containers (.mat, mostly not audio) are left out: a folder scan should not pick them up.
_FORMAT_SUFFIXES = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "RF64": (".rf64",),
    "W64": (".w64",),
    "AIFF": (".aiff", ".aif", ".aifc"),
    "AU": (".au", ".snd"),
    "CAF": (".caf",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "SVX": (".8svx", ".iff"),
    "PAF": (".paf",),
    "PVF": (".pvf",),
    "SD2": (".sd2",),
    "SDS": (".sds",),
    "IRCAM": (".sf", ".ircam"),
    "VOC": (".voc",),
    "NIST": (".nist", ".sph"),
    "AVR": (".avr",),
    "HTK": (".htk",),
    "MPC2K": (".mpc2k",),
    "WVE": (".wve",),
    "XI": (".xi",),
}
_INDEX_FORMAT = re.compile(rb'"format"\s*:\s*"mulap-index-')


def audio_suffixes(pyav: bool | None = None) -> tuple[str, ...]:
    """Suffixes a folder scan picks up: .npy, every format the installed libsndfile reads, and PyAV's
    (.m4a, .m4b, .aac) when PyAV is installed (`pyav`: None = look)."""
    import soundfile as sf

    formats = sf.available_formats()
    if pyav is None:
        pyav = pyav_installed()
    found = {suffix for name, sfx in _FORMAT_SUFFIXES.items() if name in formats for suffix in sfx}
    return (".npy", *sorted(found | (set(PYAV_SUFFIXES) if pyav else set())))


AUDIO_SUFFIXES = audio_suffixes()


def mulap_folder(folder: Path, names: set[str]) -> str | None:
    """What mulap wrote `folder` as ("a search index", ...), from the names of the files it holds; None if
    it is not one of mulap's folders."""
    if "index.json" in names:
        if {"tracks.npy", "chunks.npy"} <= names:
            return "a search index"
        try:
            with open(folder / "index.json", "rb") as fh:
                if _INDEX_FORMAT.search(fh.read(4096)):
                    return "a search index"
        except OSError:
            pass
    if {"meta.json", "features.npy", "track.npy"} <= names:
        return "an embedding cache entry"
    return None


@dataclass
class Scan:
    """What a folder scan found: the audio files, and what it left out (counted by reason)."""

    files: list[Path] = field(default_factory=list)
    by_suffix: dict[str, int] = field(default_factory=dict)  # not audio by suffix: suffix -> count
    need_pyav: list[Path] = field(default_factory=list)  # m4a/aac files while PyAV is missing
    mulap_folders: list[tuple[Path, str]] = field(default_factory=list)
    unlistable: list[tuple[Path, str]] = field(default_factory=list)

    def report(self) -> None:
        if self.by_suffix:
            log.info(
                "skipped %d file(s) that are not audio by their suffix (%s)",
                sum(self.by_suffix.values()),
                ", ".join(f"{n} {sfx}" for sfx, n in sorted(self.by_suffix.items())),
            )
        if self.need_pyav:
            log.warning("%s", self.unreadable())
        for folder, why in self.unlistable:
            log.warning("skipped folder %s: cannot be listed (%s)", folder, why)
        for folder, what in self.mulap_folders:
            log.debug("skipped %s: %s written by mulap", folder, what)

    def nothing_found(self, inputs: Sequence[str | Path]) -> str:
        """The message when no audio file was found, with what was left out."""
        why = [f"suffixes read: {', '.join(audio_suffixes())}"]
        if self.need_pyav:
            why.append(self.unreadable())
        why += [f"{folder} is {what}, not music" for folder, what in self.mulap_folders[:3]]
        return f"no audio files under {', '.join(str(i) for i in inputs)} ({'; '.join(why)})"

    def unreadable(self, show: int = 3) -> str:
        """The m4a/AAC files not read, counted by suffix, the first `show` named, and why."""
        by_suffix: dict[str, int] = {}
        for p in self.need_pyav:
            by_suffix[p.suffix.lower()] = by_suffix.get(p.suffix.lower(), 0) + 1
        files = sorted(self.need_pyav)
        named = ", ".join(str(p) for p in files[:show]) + (f", ... (+{len(files) - show} more)" if len(files) > show else "")
        counts = ", ".join(f"{n} {sfx} file(s)" for sfx, n in sorted(by_suffix.items()))
        return f"{counts} not read ({named}): {PYAV_MISSING}"


def scan_folder(root: str | Path, skip: Sequence[str | Path] = (), into: Scan | None = None) -> Scan:
    """The audio files under `root`, recursively, sorted (see the module docstring for what is left out).
    `skip`: folders never to enter (e.g. the index being written). Symbolic links to folders are not followed."""
    scan = into if into is not None else Scan()
    skip_set = {os.path.abspath(s) for s in skip}
    pyav: bool | None = None  # looked up at the first m4a/aac file
    found: list[Path] = []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        if os.path.abspath(folder) in skip_set:
            continue
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if not e.name.startswith(".")]
        except OSError as exc:
            if folder == Path(root):
                raise AudioError(folder, f"cannot be listed ({exc.strerror or exc})") from None
            scan.unlistable.append((folder, exc.strerror or str(exc)))
            continue
        what = mulap_folder(folder, {e.name for e in entries})
        if what is not None:
            scan.mulap_folders.append((folder, what))
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                pending.append(Path(e.path))
                continue
            if not e.is_file():  # a broken link, a socket, a link to a folder
                continue
            suffix = Path(e.name).suffix.lower()
            if suffix in PYAV_SUFFIXES:
                if pyav is None:
                    pyav = pyav_installed()
                if not pyav:
                    scan.need_pyav.append(Path(e.path))
                    continue
            elif suffix not in AUDIO_SUFFIXES:
                kind = suffix or "no suffix"
                scan.by_suffix[kind] = scan.by_suffix.get(kind, 0) + 1
                continue
            found.append(Path(e.path))
    scan.files.extend(sorted(found))
    return scan


def list_audio(inputs: Sequence[str | Path], skip: Sequence[str | Path] = ()) -> list[Path]:
    """Files named, plus the audio files under folders (`scan_folder`), in order: each folder's sorted.
    What was left out is logged (counted); FileNotFoundError for a missing input or when nothing is audio."""
    scan = Scan()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            scan_folder(p, skip, into=scan)
        elif p.is_file():
            scan.files.append(p)
        else:
            raise FileNotFoundError(f"no such audio file or folder: {p}")
    scan.report()
    if not scan.files:
        raise FileNotFoundError(scan.nothing_found(inputs))
    return scan.files
