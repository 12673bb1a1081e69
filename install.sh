#!/usr/bin/env bash
# One-step set-up on a fresh machine that has only Python >= 3.11:
# a virtual environment in .venv with mulap, every extra and the exact versions of constraints.txt.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first and pinned: anything that depends on it must not pull a CUDA build.
$PIP install -q torch==2.13.0
# These two declare dependencies that cannot install and are not needed:
#  musicnn 0.1.0 (TensorFlow 1, numpy<1.17) - we only read its checkpoint files;
#  tinysoundfont (pyaudio, for live playback) - we only render offline.
$PIP install -q --no-deps musicnn==0.1.0 tinysoundfont==0.3.7
# mulap with every extra, at the tested versions (pyproject.toml declares ranges; constraints.txt pins them):
#  demo: music21, pretty_midi (the demo world; tinysoundfont above); shards: webdataset; parquet: pyarrow;
#  m4a: PyAV, which decodes m4a/AAC/ALAC with the FFmpeg its wheels ship; test: pytest, hypothesis.
# mulap runs without any of them; a command that needs a missing one says which: pip install 'mulap[demo]'.
$PIP install -q -c constraints.txt -e ".[demo,shards,parquet,m4a,test]"
# Debian soundfonts for the demo: opl3-soundfont (the world's second timbre source, FM synthesis) and
# csound-soundfont (the held-out bank the demo tests zero-shot on; the world never renders through it).
# Installed when this runs as root with apt-get, quietly and only once; without them the demo says what it
# skips. (TimGM6mb, the world's first source, comes with pretty_midi.)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && ! dpkg -s opl3-soundfont csound-soundfont >/dev/null 2>&1; then
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opl3-soundfont csound-soundfont) >/dev/null 2>&1; then
    echo "installed opl3-soundfont and csound-soundfont (demo soundfonts)"
  else
    echo "install.sh: could not install opl3-soundfont / csound-soundfont; the demo runs without them and says so" >&2
  fi
fi
echo "mulap installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
