"""The offline demo world: captioned real-score music and five downstream datasets.

`build_demo(out, size, seed)` renders real scores of the music21 corpus (Bach chorales,
Palestrina, Monteverdi, trecento songs, Classical string quartets, fiddle tunes, Irish,
Scottish, German and Chinese folk songs) through the General MIDI soundfont TimGM6mb.sf2
(shipped in pretty_midi; rendered with tinysoundfont) in many arrangements, and writes:

  <out>/audiocaption/  audio/<id>.npy + dataset_{train,val,test}.json (the seed's format)
  <out>/raw/nsynth/    nsynth-{train,valid,test}/examples.json + audio/<note_str>.wav
  <out>/raw/mtt/       annotations_final.csv, clip_info_final.csv, mp3/<0-f>/*.mp3,
                       split/mtat/{train,valid,test,tags,binary}.npy (sota-music-tagging-models)
  <out>/raw/jamendo/   data/autotagging*.tsv, data/splits/split-0/*.tsv, audio/<NN>/<id>.mp3
  <out>/raw/fma/       fma_metadata/{tracks,genres}.csv, fma_small/<id[:3]>/<id:06d>.mp3
  <out>/raw/emomusic/  clips_45seconds/<id>.mp3, annotations/{static_annotations,songs_info}.csv,
                       emomusic.json.gz (jukemir split)
  <out>/world.json     what every clip really is (pieces, splits, styles), for analysis

Each module documents its layout: corpus, nsynth, mtt, jamendo, fma, emomusic. The
music model lives in scores (parsing), arrange (styles -> notes), render (soundfont),
captions and labels. Run: `python -m mulap.demo.world --out DIR --size small`.
"""

from .build import SIZES, DemoSummary, SizeConfig, build_demo

__all__ = ["build_demo", "DemoSummary", "SizeConfig", "SIZES"]
