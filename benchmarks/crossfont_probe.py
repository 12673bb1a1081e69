"""Does a backbone carry NSynth's instrument family from one soundfont to another? (issue 10)

    .venv/bin/python benchmarks/crossfont_probe.py TRAIN_DATASET OTHER_DATASET MODEL [MODEL ...]
    .venv/bin/python benchmarks/crossfont_probe.py demo_out/data/datasets/nsynth \\
        demo_out/data/datasets/nsynth_other_soundfont demo_out/save/experiments/mulap random supervised_mtt

A logistic-regression probe (scikit-learn, standardised features, C=0.1) on each MODEL's track embeddings of
TRAIN_DATASET's train split, scored on TRAIN_DATASET's test split and on OTHER_DATASET's test split (the same
task rendered with another soundfont, `mulap data nsynth-soundfont`). High accuracy on the other soundfont
means the audio features hold the family across soundfonts, so a low zero-shot figure there comes from the
language side. Prints one line per MODEL: `MODEL own=… other=…`.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train_dataset")
    ap.add_argument("other_dataset")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--save_dir", default=None)
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mulap.data.prepare import load_prepared, targets
    from mulap.inference.api import load

    own, other = load_prepared(args.train_dataset), load_prepared(args.other_dataset)
    parts = {"train": (own, "train"), "own": (own, "test"), "other": (other, "test")}
    for name in args.models:
        model = load(name, save_dir=args.save_dir, device="cpu")
        x = {k: model.embed_files([it.audio_path for it in ds.split(split)]) for k, (ds, split) in parts.items()}
        y = {k: targets(ds, split) for k, (ds, split) in parts.items()}
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x["train"], y["train"])
        print(
            f"{name} own={(probe.predict(x['own']) == y['own']).mean():.3f} "
            f"other={(probe.predict(x['other']) == y['other']).mean():.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
