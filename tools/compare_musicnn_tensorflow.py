"""One-off check of the musicnn port against TensorFlow itself (not part of the test suite).

TensorFlow is not a dependency of mulap. Put it in a throw-away environment, e.g.

    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.18.0 tf-keras==2.18.0

then, from the repository root with mulap's own interpreter:

    .venv/bin/python tools/compare_musicnn_tensorflow.py --tf-python /tmp/tfenv/bin/python

Steps (each one a sub-command, so the torch side and the TF side never share a process):
1. ``prepare``  (mulap env): deterministic test audio -> our musicnn front end -> mel patches
   ``[N, 187, 96]`` (musicnn's 3 s input), saved to an .npz;
2. ``tf``       (TF env): builds the graph with the package's *own* ``musicnn/models.py``
   (``tf.compat.v1.layers``, legacy Keras), restores the checkpoint with ``tf.train.Saver``, runs it
   on the patches, and dumps every variable as TensorFlow's checkpoint reader returns it;
3. ``compare``  (mulap env): our reader's tensors vs TensorFlow's (must be bit-identical) and our
   model's outputs vs TensorFlow's forward pass (max abs difference printed per output).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

N_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1


def prepare(model_name: str, out: Path) -> None:
    import numpy as np
    import torch

    from mulap.models.musicnn_tf import load_musicnn_pretrained, musicnn_checkpoint_dir

    model, _, _ = load_musicnn_pretrained(model_name)
    rng = np.random.default_rng(0)
    t = np.arange(4 * 48000) / 16000
    sines = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6)) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    waves = np.stack([sines, 0.1 * rng.standard_normal(len(t)), sines + 0.02 * rng.standard_normal(len(t))])
    with torch.no_grad():
        mel = model.backbone.frontend(torch.from_numpy(waves.astype(np.float32)))  # [3, 96, frames]
    patches = mel.numpy().transpose(0, 2, 1)  # [3, frames, 96], TF layout
    patches = np.concatenate([patches[:, i : i + N_FRAMES] for i in range(0, patches.shape[1] - N_FRAMES + 1, N_FRAMES)])
    np.savez(out, mel=patches.astype(np.float32), ckpt_dir=str(musicnn_checkpoint_dir(model_name)), model=model_name)
    print(f"prepared {patches.shape[0]} patches of {N_FRAMES} frames -> {out}")


def run_tensorflow(inp: Path, out: Path) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs Keras 2
    import shutil

    import numpy as np
    import tensorflow as tf

    data = np.load(inp)
    ckpt_dir = Path(str(data["ckpt_dir"]))
    model_name = str(data["model"])
    # import the package's own graph code without its TF-1-era package __init__ chain
    pkg_root = Path(tempfile.mkdtemp())
    (pkg_root / "musicnn").mkdir()
    for f in ("__init__.py", "models.py", "configuration.py"):
        shutil.copy(ckpt_dir.parent / f, pkg_root / "musicnn" / f)
    sys.path.insert(0, str(pkg_root))
    from musicnn import configuration, models

    labels = configuration.MTT_LABELS if "MTT" in model_name else configuration.MSD_LABELS
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, configuration.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
            x, is_training, model_name, len(labels)
        )
        probs = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(sess, str(ckpt_dir) + "/")
    names = ["probs", "timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate"]
    outs = sess.run(
        [probs, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate],
        feed_dict={x: data["mel"], is_training: False},
    )
    # a prefix, not the folder: the folder's "checkpoint" file points at the author's machine
    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt_dir) + "/")
    variables = {f"var:{n}": reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    np.savez(out, **dict(zip(names, outs)), **variables)
    print(f"TensorFlow {tf.__version__}: {len(variables)} checkpoint tensors and {len(names)} outputs -> {out}")


def compare(inp: Path, tf_out: Path) -> int:
    import numpy as np
    import torch

    from mulap.models.musicnn_tf import load_musicnn_pretrained, read_checkpoint

    data, ref = np.load(inp), np.load(tf_out)
    ours_vars = read_checkpoint(str(data["ckpt_dir"]))
    tf_vars = {k[4:]: ref[k] for k in ref.files if k.startswith("var:")}
    failures = 0
    if set(ours_vars) != set(tf_vars):
        print("tensor names differ:", sorted(set(ours_vars) ^ set(tf_vars)))
        failures += 1
    mismatched = [n for n in tf_vars if n in ours_vars and not np.array_equal(ours_vars[n], tf_vars[n])]
    print(f"checkpoint tensors: {len(tf_vars)} read by TensorFlow, {len(mismatched)} differ from ours {mismatched[:5]}")
    failures += bool(mismatched)

    model, _, _ = load_musicnn_pretrained(str(data["model"]))
    mel = torch.from_numpy(data["mel"]).transpose(1, 2)  # [N, 96, 187]
    with torch.no_grad():
        frames = model.backbone.time_features(mel)  # [N, 753, T]
        feats = model.backbone.pool(frames)
        ours = {
            "timbral": frames[:, :408].transpose(1, 2),
            "temporal": frames[:, 408:561].transpose(1, 2),
            "cnn1": frames[:, 561:625].transpose(1, 2),
            "cnn2": frames[:, 625:689].transpose(1, 2),
            "cnn3": frames[:, 689:753].transpose(1, 2),
            "max_pool": feats[:, :753],
            "mean_pool": feats[:, 753:],
            "penultimate": model.head.penultimate(feats),
            "probs": torch.sigmoid(model.head(feats)),
        }
    for name, value in ours.items():
        theirs = ref[name].reshape(value.shape)
        diff = float(np.abs(value.numpy() - theirs).max())
        scale = float(np.abs(theirs).max())
        ok = diff <= 1e-4 * max(1.0, scale)
        failures += not ok
        print(
            f"{name:12s} shape {tuple(value.shape)!s:16s} max|ours-tf| {diff:.2e} (max|tf| {scale:.2e}) {'ok' if ok else 'FAIL'}"
        )
    print("all equal within tolerance" if not failures else f"{failures} mismatches")
    return int(failures > 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", nargs="?", default="all", choices=["all", "prepare", "tf", "compare"])
    ap.add_argument("--model", default="MTT_musicnn", choices=["MTT_musicnn", "MSD_musicnn"])
    ap.add_argument("--tf-python", default=os.environ.get("TF_PYTHON", ""), help="interpreter with tensorflow")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="musicnn_tf_"))
    work.mkdir(parents=True, exist_ok=True)
    inp, tf_out = work / f"{args.model}_input.npz", work / f"{args.model}_tf.npz"
    if args.step == "prepare":
        prepare(args.model, inp)
    elif args.step == "tf":
        run_tensorflow(inp, tf_out)
    elif args.step == "compare":
        return compare(inp, tf_out)
    else:
        if not args.tf_python:
            ap.error("the 'all' step needs --tf-python (an interpreter with tensorflow installed)")
        prepare(args.model, inp)
        cmd = [args.tf_python, __file__, "tf", "--model", args.model, "--workdir", str(work)]
        subprocess.run(cmd, check=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
        return compare(inp, tf_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
