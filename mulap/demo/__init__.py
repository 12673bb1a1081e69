"""The offline demo: the world renderer (`world/`), the end-to-end pipeline, its report and the
language measurements. Needs the `demo` extra (music21, pretty_midi, tinysoundfont)."""
