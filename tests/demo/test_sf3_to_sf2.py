"""tools/sf3_to_sf2.py, which turns MuseScore General (SF3, reserved for the independent zero-shot check) into an
SF2 the demo's synthesizer plays: an SF3 written here from two sine samples comes back as the same samples."""

from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

TOOL = Path(__file__).resolve().parents[2] / "tools" / "sf3_to_sf2.py"
spec = importlib.util.spec_from_file_location("sf3_to_sf2", TOOL)
assert spec and spec.loader
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

RATE = 22050


def _chunk(cid: bytes, body: bytes, pad: bool = True) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if pad and len(body) & 1 else b"")


def _sf3(waves: list[np.ndarray], loops: list[tuple[int, int]], pad: bool) -> bytes:
    """A soundfont in MuseScore's SF3 layout: Ogg streams in smpl, byte offsets, loops relative to the sample."""
    smpl, headers = b"", []
    for i, (w, (ls, le)) in enumerate(zip(waves, loops)):
        buf = io.BytesIO()
        sf.write(buf, w, RATE, format="OGG", subtype="VORBIS")
        ogg = buf.getvalue()
        headers.append(tool.SHDR.pack(f"s{i}".encode(), len(smpl), len(smpl) + len(ogg), ls, le, RATE, 60, 0, 0, 1 | tool.VORBIS))
        smpl += ogg
    headers.append(tool.SHDR.pack(b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0))
    info = _chunk(b"LIST", b"INFO" + _chunk(b"ifil", struct.pack("<HH", 3, 1)) + _chunk(b"INAM", b"test\0\0"))
    sdta = _chunk(b"LIST", b"sdta" + _chunk(b"smpl", smpl + (b"" if len(smpl) & 1 else b"x"), pad=pad), pad=pad)
    pdta = _chunk(b"LIST", b"pdta" + _chunk(b"phdr", b"p" * 38) + _chunk(b"shdr", b"".join(headers)))
    return _chunk(b"RIFF", b"sfbk" + info + sdta + pdta)


def _parse(sf2: bytes) -> tuple[dict, bytes, list[tuple]]:
    lists = {sf2[s : s + 4]: (s + 4, e) for c, s, e in tool._chunks(sf2, 12, len(sf2)) if c == b"LIST"}
    info = {c: sf2[s:e] for c, s, e in tool._chunks(sf2, *lists[b"INFO"])}
    smpl = next(sf2[s:e] for c, s, e in tool._chunks(sf2, *lists[b"sdta"]) if c == b"smpl")
    shdr = next(sf2[s:e] for c, s, e in tool._chunks(sf2, *lists[b"pdta"]) if c == b"shdr")
    return info, smpl, [tool.SHDR.unpack_from(shdr, i) for i in range(0, len(shdr), tool.SHDR.size)]


def test_an_sf3_comes_back_as_its_samples_with_absolute_loops_padded_or_not():
    t = np.arange(RATE) / RATE
    waves = [0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 220 * t[: RATE // 2])]
    loops = [(1000, 20000), (500, 9000)]
    for pad in (True, False):  # MuseScore's writer leaves odd chunks unpadded
        info, smpl, headers = _parse(tool.convert(_sf3(waves, loops, pad)))
        assert struct.unpack("<HH", info[b"ifil"]) == (2, 1) and info[b"INAM"] == b"test\0\0"
        frames = np.frombuffer(smpl, dtype="<i2") / 32768.0
        cursor = 0
        for w, (ls, le), h in zip(waves, loops, headers):
            _, start, end, lstart, lend, rate, *_, kind = h
            assert (start, end) == (cursor, cursor + len(w)) and (lstart, lend) == (start + ls, start + le)
            assert rate == RATE and kind == 1  # mono, the Vorbis flag cleared
            got = frames[start:end]
            assert np.corrcoef(got, w)[0, 1] > 0.99  # the same sine, through a lossy codec
            assert not frames[end : end + 46].any()  # SF2's 46 frames of silence after each sample
            cursor = end + 46
        assert headers[-1][0].rstrip(b"\0") == b"EOS"
