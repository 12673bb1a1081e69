"""The musicnn TF-checkpoint port: reader, variable mapping, forward pass, tags on rendered music.

Independent references used here:
* the bundle's own masked CRC32C of every tensor up to 64 KiB (a bitwise CRC32C written below);
* tensor bytes laid end to end in name order, filling the data shard exactly;
* a numpy re-implementation of musicnn's TF graph (``musicnn/models.py``) in TF layout
  (time x frequency, HWIO kernels, ReLU before BN, TF 'same' padding, interleaved pooling),
  fed with the raw checkpoint arrays, compared with our torch model;
* instrument renders from General MIDI (TimGM6mb.sf2 through tinysoundfont).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from mulap.models.musicnn_tf import (
    CheckpointError,
    list_checkpoint_tensors,
    load_musicnn_pretrained,
    musicnn_checkpoint_dir,
    parse_protobuf,
    read_bundle_index,
    read_checkpoint,
    read_varint,
    tf_variable_map,
)

pytest.importorskip("musicnn.configuration", reason="musicnn checkpoint files not installed")


@pytest.fixture(scope="module")
def mtt():
    return load_musicnn_pretrained("MTT_musicnn")


@pytest.fixture(scope="module")
def mtt_raw() -> dict[str, np.ndarray]:
    """Every tensor sliced straight out of the data shard with np.frombuffer."""
    ckpt = musicnn_checkpoint_dir("MTT_musicnn")
    data = (ckpt / ".data-00000-of-00001").read_bytes()
    return {
        name: np.frombuffer(data, "<f4", count=e.size // 4, offset=e.offset).reshape(e.shape)
        for name, e in read_bundle_index(ckpt).items()
    }


# ----------------------------------------------------------------------------- wire format
def test_varint_and_protobuf_parsing() -> None:
    assert read_varint(b"\xac\x02", 0) == (300, 2)
    assert read_varint(b"\x00\x01", 1) == (1, 2)
    # BundleEntryProto{dtype: DT_FLOAT, shape {dim {size: 7} dim {size: 38}}, offset: 300, crc32c: 0x01020304}
    msg = b"\x08\x01" + b"\x12\x08" + b"\x12\x02\x08\x07" + b"\x12\x02\x08\x26" + b"\x20\xac\x02" + b"\x35\x04\x03\x02\x01"
    f = parse_protobuf(msg)
    assert f[1] == [1] and f[4] == [300] and f[6] == [0x01020304]
    dims = [parse_protobuf(d)[1][0] for d in parse_protobuf(f[2][0])[2]]
    assert dims == [7, 38]
    with pytest.raises(ValueError):
        read_varint(b"\x80", 0)


def _crc32c(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _tf_mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn"])
def test_index_layout_and_checksums(name: str) -> None:
    ckpt = musicnn_checkpoint_dir(name)
    index = read_bundle_index(ckpt)
    data = (ckpt / ".data-00000-of-00001").read_bytes()
    assert _crc32c(b"123456789") == 0xE3069283
    assert len(index) == 150 and list(index) == sorted(index)
    # tensors are written back to back in name order and fill the shard exactly
    pos = 0
    for e in index.values():
        assert e.offset == pos and e.dtype == 1 and e.size == 4 * int(np.prod(e.shape))
        pos += e.size
    assert pos == len(data)
    checked = 0
    for n, e in index.items():
        if e.size <= 65536:
            assert _tf_mask(_crc32c(data[e.offset : e.offset + e.size])) == e.crc32c, n
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn"])
def test_every_variable_maps_with_matching_shape(name: str) -> None:
    tensors = list_checkpoint_tensors(musicnn_checkpoint_dir(name))
    model_vars = {n for n in tensors if not n.endswith(("/Adam", "/Adam_1")) and not n.startswith("beta")}
    # 11 BatchNorms x 4 + 8 convs x 2 + 2 dense x 2; with 2 Adam slots per trainable one and beta1/2_power: 150
    assert len(model_vars) == 64
    assert sum(n.startswith("batch_normalization") for n in model_vars) == 44
    # Adam keeps two slots per trainable variable, with the variable's shape
    for n in model_vars:
        if not n.endswith(("moving_mean", "moving_variance")):
            assert tensors[f"{n}/Adam"] == tensors[n] == tensors[f"{n}/Adam_1"]
    model, config, tags = load_musicnn_pretrained(name)
    mapping = tf_variable_map(model)
    assert set(mapping) == model_vars
    state = model.state_dict()
    for tf_name, (key, transform) in mapping.items():
        shape = transform(np.zeros(tensors[tf_name][1], np.float32)).shape
        assert tuple(shape) == tuple(state[key].shape), tf_name
    assert len(tags) == 50 and config.out_dim == 1506 and config.temporal_lengths == (128, 64, 32)
    assert (config.compression, config.mel_scale, config.mel_norm, config.bn_eps) == ("log10", "slaney", "slaney", 1e-3)


def test_loaded_values_equal_raw_bytes(mtt, mtt_raw) -> None:
    model = mtt[0]
    k = mtt_raw["conv2d/kernel"]  # [time 7, freq 38, in 1, out 204], the 0.4*96 timbral filter
    w = model.backbone.timbral[0].conv.weight.detach().numpy()  # [out, in, freq, time]
    for o, f, t in [(0, 0, 0), (203, 37, 6), (17, 5, 3)]:
        assert w[o, 0, f, t] == k[t, f, 0, o]
    assert np.array_equal(
        model.backbone.temporal[0].conv.weight.detach().numpy()[:, 0, :], mtt_raw["conv2d_2/kernel"][:, 0, 0, :].T
    )
    assert np.array_equal(model.backbone.input_bn.running_var.numpy(), mtt_raw["batch_normalization/moving_variance"])
    assert np.array_equal(model.head.output.weight.detach().numpy(), mtt_raw["dense_1/kernel"].T)
    # dense rows reordered from TF's interleaved (max_c, mean_c) to our [max..., mean...]
    assert np.array_equal(model.head.dense.weight.detach().numpy()[:, 753], mtt_raw["dense/kernel"][1])
    assert (
        read_checkpoint(musicnn_checkpoint_dir("MTT_musicnn"), ["dense/bias"])["dense/bias"].tolist()
        == mtt_raw["dense/bias"].tolist()
    )


# ----------------------------------------------------------------------------- numpy TF graph
def _np_musicnn(mel_tf: np.ndarray, W: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """musicnn/models.py build_musicnn in numpy. mel_tf: [T, 96]. Returns (pooled TF order, penultimate, probs)."""

    def bn(x, i):
        p = "batch_normalization" + ("" if i == 0 else f"_{i}")
        return (x - W[p + "/moving_mean"]) / np.sqrt(W[p + "/moving_variance"] + 1e-3) * W[p + "/gamma"] + W[p + "/beta"]

    def relu(x):
        return np.maximum(x, 0.0)

    def conv(name, windows, spec):
        return (
            np.einsum(spec, windows, W[name + "/kernel"][..., 0, :] if W[name + "/kernel"].ndim == 4 else W[name + "/kernel"])
            + W[name + "/bias"]
        )

    T = mel_tf.shape[0]
    x = bn(mel_tf.astype(np.float64)[:, :, None], 0)[:, :, 0]  # [T, 96]
    xp7 = np.pad(x, ((3, 3), (0, 0)))
    front = []
    for i, (name, h) in enumerate([("conv2d", 38), ("conv2d_1", 67)]):
        win = sliding_window_view(xp7, (7, h))  # [T, 96-h+1, 7, h]
        front.append(bn(relu(conv(name, win, "tfab,abo->tfo")), i + 1).max(axis=1))
    for i, (name, k) in enumerate([("conv2d_2", 128), ("conv2d_3", 64), ("conv2d_4", 32)]):
        before = (k - 1) // 2  # TF 'same': the extra pad goes after
        xp = np.pad(x, ((before, k - 1 - before), (0, 0)))
        win = sliding_window_view(xp, k, axis=0)  # [T, 96, k]
        kern = W[name + "/kernel"][:, 0, 0, :]  # [k, 51]
        front.append(bn(relu(np.einsum("tfk,ko->tfo", win, kern) + W[name + "/bias"]), i + 3).max(axis=1))
    fe = np.concatenate(front, axis=1)  # [T, 561]
    outs, prev = [fe], fe
    for i, name in enumerate(["conv2d_5", "conv2d_6", "conv2d_7"]):
        win = sliding_window_view(np.pad(prev, ((3, 3), (0, 0))), 7, axis=0)  # [T, C, 7]
        y = bn(relu(np.einsum("tck,kco->to", win, W[name + "/kernel"][:, :, 0, :]) + W[name + "/bias"]), i + 6)
        prev = y if i == 0 else y + prev
        outs.append(prev)
    feat = np.concatenate(outs, axis=1)  # [T, 753]
    pooled = np.stack([feat.max(axis=0), feat.mean(axis=0)], axis=1).reshape(-1)  # flatten([753, 2])
    pen = bn(relu(bn(pooled, 9) @ W["dense/kernel"] + W["dense/bias"]), 10)
    logits = pen @ W["dense_1/kernel"] + W["dense_1/bias"]
    assert T == feat.shape[0]
    return pooled, pen, 1.0 / (1.0 + np.exp(-logits))


def test_forward_matches_numpy_tf_graph(mtt, mtt_raw) -> None:
    model = mtt[0]
    rng = np.random.default_rng(0)
    mel = np.log10(1.0 + 10000.0 * rng.gamma(0.5, 1e-3, size=(2, 96, 60))).astype(np.float32)
    with torch.no_grad():
        feats = model.backbone.forward_mel(torch.from_numpy(mel)).double().numpy()
        pen = model.head.penultimate(torch.from_numpy(feats).float()).numpy()
        probs = model.forward_mel(torch.from_numpy(mel)).numpy()
    for i in range(2):
        ref_pooled, ref_pen, ref_probs = _np_musicnn(mel[i].T, mtt_raw)
        ours_tf_order = np.stack([feats[i, :753], feats[i, 753:]], axis=1).reshape(-1)
        np.testing.assert_allclose(ours_tf_order, ref_pooled, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pen[i], ref_pen, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(probs[i], ref_probs, atol=1e-5)


# ----------------------------------------------------------------------------- errors
def test_corrupt_or_missing_files_raise_clear_errors(tmp_path: Path) -> None:
    src = musicnn_checkpoint_dir("MTT_musicnn")
    bad = tmp_path / "ckpt"
    bad.mkdir()
    index = bytearray((src / ".index").read_bytes())
    index[-1] ^= 0xFF  # break the magic number
    (bad / ".index").write_bytes(bytes(index))
    with pytest.raises(CheckpointError, match=r"\.index.*magic"):
        read_bundle_index(bad)
    shutil.copy(src / ".index", bad / ".index")
    (bad / ".data-00000-of-00001").write_bytes((src / ".data-00000-of-00001").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"\.data-00000-of-00001.*conv2d/kernel"):
        read_checkpoint(bad, ["conv2d/kernel"])
    with pytest.raises(CheckpointError, match="no tensor named 'nope'"):
        read_checkpoint(src, ["nope"])
    with pytest.raises(ValueError, match="unknown musicnn checkpoint"):
        load_musicnn_pretrained("MTT_vgg")


# ----------------------------------------------------------------------------- tags on music
def _render(program: int, seconds: float = 6.0, sr: int = 16000, note_s: float = 0.4) -> np.ndarray:
    """A C-major scale up and down on one General MIDI program, peak-normalised to 0.5."""
    import pretty_midi
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sr)
    sfid = synth.sfload(os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2"))
    synth.program_select(0, sfid, 0, program)
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62]
    step, parts = int(note_s * sr), []
    for i in range(int(np.ceil(seconds / note_s))):
        synth.noteon(0, scale[i % len(scale)], 100)
        parts.append(np.frombuffer(synth.generate(step), dtype=np.float32).reshape(-1, 2).mean(axis=1))
        synth.noteoff(0, scale[i % len(scale)])
    wave = np.concatenate(parts)[: int(seconds * sr)]
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def test_mtt_tags_are_sensible_on_rendered_instruments(mtt) -> None:
    pytest.importorskip("tinysoundfont")
    model, _, tags = mtt
    programs = {"piano": 0, "strings": 48, "guitar": 24}  # GM: Acoustic Grand, String Ensemble 1, Nylon Guitar
    waves = torch.from_numpy(np.stack([_render(p, note_s=0.8 if n == "strings" else 0.4) for n, p in programs.items()]))
    with torch.no_grad():
        probs = model(waves.reshape(3, 2, 48000)).mean(dim=1)  # average the two 3 s chunks per render
    t = {name: tags.index(name) for name in ("piano", "strings", "violin", "guitar")}
    piano, strings, guitar = probs
    top = {n: [tags[i] for i in probs[k].argsort(descending=True)[:3]] for k, n in enumerate(programs)}
    assert top["piano"][0] == "piano", top
    assert {"strings", "violin"} & set(top["strings"]), top
    assert "guitar" in top["guitar"], top
    assert piano[t["piano"]] > max(strings[t["piano"]], guitar[t["piano"]])
    assert strings[t["strings"]] > max(piano[t["strings"]], guitar[t["strings"]])
    assert strings[t["violin"]] > max(piano[t["violin"]], guitar[t["violin"]])
    assert guitar[t["guitar"]] > max(piano[t["guitar"]], strings[t["guitar"]])
