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
    from mulap.evaluation.prompts import TEMPLATES, VOCABULARY, default_prompts, with_articles

    gm: dict[str, list[str]] = {}
    for program, family in sorted(PROGRAM_FAMILY.items()):
        names = gm.setdefault(family, [])
        if program_name(program) not in names:
            names.append(program_name(program))
    solo = ("solo {w}", "a {w} alone", "a single {w}")

    def note(c: str) -> tuple[str, ...]:
        return TEMPLATES["voice" if VOCABULARY[c][0] == "voice" else "note"]

    def both(c: str) -> list[str]:
        return list(dict.fromkeys([*VOCABULARY[c][1], *gm[c]]))

    def build(words, templates) -> dict[str, list[str]]:
        return {c: list(dict.fromkeys(with_articles(t.format(w=w)) for w in words(c) for t in templates(c))) for c in labels}

    return {
        "A default": default_prompts("nsynth_clf", labels),
        "B default + solo phrasings": build(lambda c: VOCABULARY[c][1], lambda c: note(c) + solo),
        "C GM names": build(lambda c: gm[c], note),
        "D GM names + solo phrasings": build(lambda c: gm[c], lambda c: note(c) + solo),
        "E default and GM names": build(both, note),
        "F default and GM names + solo phrasings": build(both, lambda c: note(c) + solo),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--split", choices=("valid", "test"), default="valid")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. env.save_dir=demo_out/save")
    args = ap.parse_intermixed_args()  # overrides may follow --split
    import numpy as np

    from mulap.evaluation.zeroshot import standardise, track_means, zero_shot_scores
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
        acc = float((standardise(s_v, s_x).argmax(1) == y).mean())
        raw = float((s_x.argmax(1) == y).mean())
        print(f"{name}: {acc:.3f} (raw cosines {raw:.3f}) on {len(y)} {args.split} notes", flush=True)


if __name__ == "__main__":
    main()
