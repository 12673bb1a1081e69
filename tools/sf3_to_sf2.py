"""Convert an SF3 soundfont (SF2 with Ogg Vorbis samples, MuseScore's format) to a plain SF2 that
TinySoundFont, the demo's synthesizer, can play. Used to render NSynth-layout test notes through MuseScore
General (Debian `musescore-general-soundfont*`), a soundfont reserved for an independent check of the demo's
zero-shot figure and never used by the world:

    python tools/sf3_to_sf2.py /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 /tmp/MuseScore_General_Lite.sf2
    mulap data nsynth-soundfont /tmp/MuseScore_General_Lite.sf2 --out demo_out/world_musescore

In SF3 a sample header's start and end are byte offsets of the sample's Ogg stream in the `smpl` chunk, its
loop points are frames relative to the sample's start, and sampleType carries the flag 0x10. The output has
the decoded 16-bit samples, each followed by the 46 frames of silence SF2 asks for, absolute loop points,
version 2.1 and every other chunk byte for byte.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from mulap.infra.files import atomic_write_bytes

VORBIS = 0x10
SHDR = struct.Struct("<20sIIIIIBbHH")  # name, start, end, loop start, loop end, rate, pitch, correction, link, type


def _chunks(data: bytes, start: int, end: int):
    """(id, body start, body end) of the RIFF chunks in data[start:end]."""
    while start + 8 <= end:
        cid, size = data[start : start + 4], struct.unpack("<I", data[start + 4 : start + 8])[0]
        yield cid, start + 8, start + 8 + size
        start += 8 + size
        # RIFF pads odd chunks to even; some SF3 writers do not (the next id then starts right away)
        if size & 1 and not data[start : start + 4].isalnum():
            start += 1


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def _list(kind: bytes, chunks: list[bytes]) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def convert(src: bytes) -> bytes:
    if src[:4] != b"RIFF" or src[8:12] != b"sfbk":
        raise ValueError("not a soundfont (no RIFF sfbk header)")
    lists = {src[s : s + 4]: (s + 4, e) for cid, s, e in _chunks(src, 12, len(src)) if cid == b"LIST"}  # INFO, sdta, pdta
    info = [(c, src[s:e]) for c, s, e in _chunks(src, *lists[b"INFO"])]
    smpl = next(src[s:e] for c, s, e in _chunks(src, *lists[b"sdta"]) if c == b"smpl")
    pdta = [(c, src[s:e]) for c, s, e in _chunks(src, *lists[b"pdta"])]
    shdr = dict(pdta)[b"shdr"]
    out_samples: list[np.ndarray] = []
    cursor = 0
    headers = []
    for i in range(len(shdr) // SHDR.size):
        name, start, end, loop_start, loop_end, rate, pitch, corr, link, kind = SHDR.unpack_from(shdr, i * SHDR.size)
        if kind & VORBIS and end > start:
            wave, file_rate = sf.read(io.BytesIO(smpl[start:end]), dtype="int16", always_2d=True)
            wave, rate = wave[:, 0], rate or file_rate
            loop_start, loop_end = cursor + loop_start, cursor + loop_end  # relative in SF3
        elif kind & VORBIS:  # a compressed sample without data
            wave = np.zeros(0, np.int16)
            loop_start = loop_end = cursor
        else:  # an uncompressed sample, and the terminal record (EOS, no frames): copy its frames
            wave = np.frombuffer(smpl[2 * start : 2 * end], dtype="<i2").copy()
            loop_start, loop_end = cursor + loop_start - start, cursor + loop_end - start
        n, kind = len(wave), kind & ~VORBIS
        headers.append(SHDR.pack(name, cursor, cursor + n, loop_start, loop_end, rate, pitch, corr, link, kind))
        out_samples += [wave.astype("<i2"), np.zeros(46, "<i2")]
        cursor += n + 46
    info = [(c, struct.pack("<HH", 2, 1) if c == b"ifil" else body) for c, body in info]
    pdta = [(c, b"".join(headers) if c == b"shdr" else body) for c, body in pdta]
    body = b"sfbk" + _list(b"INFO", [_chunk(c, b) for c, b in info])
    body += _list(b"sdta", [_chunk(b"smpl", np.concatenate(out_samples).tobytes())])
    body += _list(b"pdta", [_chunk(c, b) for c, b in pdta])
    return _chunk(b"RIFF", body)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python tools/sf3_to_sf2.py IN.sf3 OUT.sf2")
    src, dst = Path(argv[0]), Path(argv[1])
    atomic_write_bytes(dst, convert(src.read_bytes()))  # an interrupted run leaves no truncated soundfont
    print(f"{src} -> {dst} ({dst.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
