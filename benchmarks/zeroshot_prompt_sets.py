"""Do other prompt ensembles move zero-shot NSynth instrument family? (issue 19)

    .venv/bin/python benchmarks/zeroshot_prompt_sets.py MODEL DATASET [--split valid|test] [key=value ...]
    .venv/bin/python benchmarks/zeroshot_prompt_sets.py demo_out/model demo_out/data/datasets/nsynth \\
        --split test env.save_dir=demo_out/save

Scores MODEL's zero-shot family on DATASET's split (a prepared `nsynth_clf` dataset) with six prompt sets,
calibrated as `mulap zeroshot` does (each class's scores standardised on the validation split):

- A: the default prompts (mulap/evaluation/prompts.py: a few synonyms per family x the note templates);
- B: A's synonyms x the note templates plus the corpus's solo phrasings ("solo {w}", "a {w} alone", "a single {w}");
- C: every General MIDI program name the demo world files under the family (mulap/demo/world/gm.py) x the note templates;
- D: C's names x B's templates;
- E: A's synonyms and C's names x the note templates;
- F: E's names x B's templates.

Choose among them on the world's own notes only: a held-out soundfont scored here stops being held out. Prints
one line per set: `SET: accuracy (raw cosines …)`.
"""

from __future__ import annotations

import argparse


def prompt_sets(labels: list[str]) -> dict[str, dict[str, list[str]]]:
    from mulap.demo.world.gm import PROGRAM_FAMILY, program_name
    from mulap.evaluation.prompts import TEMPLATES, class_words, default_prompts, ensemble

    programs = sorted(PROGRAM_FAMILY.items())
    gm = {f: list(dict.fromkeys(program_name(p) for p, g in programs if g == f)) for f in set(PROGRAM_FAMILY.values())}
    solo = ("solo {w}", "a {w} alone", "a single {w}")  # the corpus's solo phrasings (mulap/demo/world/captions.py)
    kinds = {c: class_words("nsynth_clf", c) for c in labels}  # (the note or voice templates' kind, the synonyms)

    def build(words, extra=()) -> dict[str, list[str]]:
        return {c: ensemble(words(c), TEMPLATES[kinds[c][0]] + extra) for c in labels}

    def both(c: str) -> list[str]:
        return list(dict.fromkeys([*kinds[c][1], *gm[c]]))

    return {
        "A default": default_prompts("nsynth_clf", labels),
        "B default + solo phrasings": build(lambda c: kinds[c][1], solo),
        "C GM names": build(lambda c: gm[c]),
        "D GM names + solo phrasings": build(lambda c: gm[c], solo),
        "E default and GM names": build(both),
        "F default and GM names + solo phrasings": build(both, solo),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--split", choices=("valid", "test"), default="valid")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. env.save_dir=demo_out/save")
    args = ap.parse_intermixed_args()  # overrides may follow --split
    import numpy as np

    from mulap.evaluation.zeroshot import standardise, track_means, zero_shot_scores, zero_shot_value
    from mulap.inference.api import load
    from mulap.inference.cache import dataset_embeddings
    from mulap.training.downstream import downstream_config, load_task_data

    cfg = downstream_config("nsynth_clf", None, [f"downstream.dataset_dir={args.dataset}", *args.overrides])
    model = load(args.model, save_dir=cfg.env.save_dir, device="cpu")
    ds = load_task_data(cfg)
    emb = dataset_embeddings(model.backbone, ds, cfg)
    labels = list(ds.label_names)
    feats_v, _ = track_means(emb, ds, "valid")
    feats, y = track_means(emb, ds, args.split)
    for name, prompts in prompt_sets(labels).items():
        s = zero_shot_scores(model, np.concatenate([feats_v, feats]), "multiclass", labels, prompts)
        s_v, s_x = s[: len(feats_v)], s[len(feats_v) :]
        acc = zero_shot_value("multiclass", y, standardise(s_v, s_x), labels)  # as `mulap zeroshot` scores it
        raw = zero_shot_value("multiclass", y, s_x, labels)
        print(f"{name}: {acc:.3f} (raw cosines {raw:.3f}) on {len(y)} {args.split} notes", flush=True)


if __name__ == "__main__":
    main()
