"""How much the cross-encoder's streams still differ from one clip/caption to the next (collapse check).

    .venv/bin/python benchmarks/cross_encoder_spread.py CORPUS MODEL [MODEL ...] [--split val] [--n 32]
    .venv/bin/python benchmarks/cross_encoder_spread.py demo_out/world/audiocaption untrained demo_out/save/experiments/mulap

MODEL: a pre-trained MuLaP (experiment folder, export folder, or id with --save_dir), or `untrained` for the
initial weights of the recipe of the first trained MODEL given. For the first `--n` clips of the split (their
first `max_chunks` chunks, through each model's own backbone) and their captions, prints the spread across the
batch (std over the clips, averaged over dimensions) after the audio embeddings and after each audio layer run
alone, then of the co-attended audio and text streams and of the fused pooled vector that the matching head
reads. A healthy stack keeps the input's spread (~0.3); a collapsed one ends near 0 and its matching head can
only repeat the joint-space prior. The last line is `fused_spread=… model=…` for the last MODEL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def spreads(model, corpus: Path, split: str, n: int) -> dict[str, list[float] | float]:
    from mulap.data.audiocaption import read_split
    from mulap.inference.extract import extract

    net = model.mulap.eval()
    pairs = read_split(corpus, split, "audio", on_bad="skip")[0][:n]
    feats, track, _ = extract(model.backbone, [p.audio_path for p in pairs], progress=False, device=model.device)
    x, mask = model.pad_windows([torch.from_numpy(feats[track == i][: model.max_chunks]) for i in range(len(pairs))])
    tok = model._tokens([p.caption for p in pairs])
    with torch.no_grad():  # the audio stack alone, layer by layer, as MuLaP.encode runs it
        h, keep = net.audio_input(x, mask)
        layers = [float(h.std(0).mean())]
        for i in range(len(net.audio_layers)):
            h = net._run_audio(h, keep, i, i + 1)
            layers.append(float(h.std(0).mean()))
        enc = net.encode(x, mask, net.text_lower(tok["input_ids"], tok["attention_mask"]), tok["attention_mask"])
    return {
        "audio_layers": layers,
        "coattended_audio": float(enc.audio.std(0).mean()),
        "coattended_text": float(enc.text.std(0).mean()),
        "fused": float(enc.fused.std(0).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--save_dir", default=None)
    args = ap.parse_args()
    from mulap.demo.language import untrained_model
    from mulap.inference.api import load, model_path

    trained = [m for m in args.models if m != "untrained"]
    for name in args.models:
        if name == "untrained":
            if not trained:
                raise SystemExit("untrained: give a trained MODEL too (its recipe is the one initialised)")
            model = untrained_model(model_path(trained[0], args.save_dir), 0)
        else:
            model = load(name, save_dir=args.save_dir, device="cpu")
        s = spreads(model, args.corpus, args.split, args.n)
        print(
            f"{name}: audio embeddings + layers {np.round(s['audio_layers'], 4).tolist()}; co-attended audio "
            f"{s['coattended_audio']:.4f}, text {s['coattended_text']:.4f}; fused {s['fused']:.5f}"
        )
    print(f"fused_spread={s['fused']:.5f} model={name}")


if __name__ == "__main__":
    main()
