"""The public Python API (mulap.load / Model) against the CLI's numbers and independent computations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import mulap
from mulap.cli import main
from mulap.inference.loading import ModelLoadError
from mulap.models.text import additive_mask
from tests.helpers import tone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """44.1 kHz stereo wav (7 s), 22.05 kHz flac (4 s), 16 kHz npy (2 s: shorter than one chunk)."""
    d = tmp_path_factory.mktemp("audio")
    left = tone(7.0, 220.0, 44100)
    sf.write(d / "a.wav", np.stack([left, 0.5 * left], axis=1), 44100)
    sf.write(d / "b.flac", tone(4.0, 440.0, 22050, bright=False), 22050)
    np.save(d / "c.npy", tone(2.0, 110.0))
    return [d / "a.wav", d / "b.flac", d / "c.npy"]


@pytest.fixture(scope="module")
def mtt():
    return mulap.load("supervised_mtt", device="cpu")


@pytest.fixture(scope="module")
def experiment(tiny_mulap):
    return tiny_mulap


def test_embed_files_equals_mulap_embed_and_embed_of_decoded_arrays(files, mtt, tmp_path):
    out = tmp_path / "e.npz"
    assert main(["embed", "supervised_mtt", *map(str, files), "-o", str(out), "training.num_workers=0"]) == 0
    cli = np.load(out)
    api = mtt.embed_files(files, num_workers=0)
    assert api.shape == (3, 1506) and api.dtype == np.float32
    assert [Path(f).name for f in cli["files"]] == [f.name for f in files]
    np.testing.assert_allclose(api, cli["track_embeddings"], atol=1e-5)
    # the same numbers from arrays in memory: soundfile's [samples, channels] passed as [channels, samples]
    wav, sr = sf.read(files[0], dtype="float32")
    # (batches of other sizes round differently in float32: relative 1e-5)
    np.testing.assert_allclose(mtt.embed(wav.T, sr), api[:1], rtol=1e-5, atol=1e-5)
    flac, sr = sf.read(files[1], dtype="float32")
    np.testing.assert_allclose(mtt.embed(flac, sr), api[1:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mtt.embed(torch.from_numpy(np.load(files[2])), 16000), api[2:], rtol=1e-5, atol=1e-5)


def test_embed_is_mean_of_chunk_features_after_downmix_and_resampling(mtt):
    sr = 44100
    stereo = np.stack([tone(6.5, 330.0, sr), tone(6.5, 165.0, sr)])
    mono16 = soxr.resample(stereo.mean(0), sr, 16000, quality="HQ").astype(np.float32)
    chunks = torch.from_numpy(np.stack([mono16[:48000], mono16[48000:96000]]))  # 6.5 s: two whole chunks, the rest dropped
    with torch.no_grad():
        expected = mtt.backbone(chunks).mean(0).numpy()
    np.testing.assert_allclose(mtt.embed(stereo, sr)[0], expected, rtol=1e-5, atol=1e-5)
    # a list is a batch, each row equal to its own call; int16 PCM is scaled by its range
    pcm = np.round(mono16 * 32767).astype(np.int16)
    both = mtt.embed([mono16, pcm], 16000)
    assert both.shape == (2, 1506)
    np.testing.assert_allclose(both[0], mtt.embed(mono16, 16000)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[1], both[0], atol=2e-3 * np.abs(both[0]).max())


def test_embed_chunks_non_overlapping_and_overlapping(mtt, files, tmp_path):
    wav, sr = sf.read(files[0], dtype="float32")
    emb, starts = mtt.embed_chunks(wav.T, sr)
    out = tmp_path / "e.npz"
    assert main(["embed", "supervised_mtt", str(files[0]), "-o", str(out), "training.num_workers=0"]) == 0
    np.testing.assert_allclose(emb, np.load(out)["chunk_embeddings"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(starts, [0.0, 3.0])
    emb_h, starts_h = mtt.embed_chunks(wav.T, sr, hop_seconds=1.0)
    np.testing.assert_allclose(starts_h, [0.0, 1.0, 2.0, 3.0, 4.0])  # 7 s: windows starting every second, fully inside
    mono16 = soxr.resample(wav.mean(1), sr, 16000, quality="HQ").astype(np.float32)
    with torch.no_grad():
        third = mtt.backbone(torch.from_numpy(mono16[32000:80000])[None]).numpy()
    np.testing.assert_allclose(emb_h[2:3], third, rtol=1e-5, atol=1e-5)
    short, s = mtt.embed_chunks(np.load(files[2]), 16000, hop_seconds=0.5)  # shorter than a chunk: one padded chunk
    assert short.shape == (1, 1506) and list(s) == [0.0]


@pytest.mark.parametrize(
    "audio,rate,message",
    [
        (np.zeros((44100, 2), np.float32), 44100, "[channels, samples]"),
        (np.zeros(16000, np.float32), None, "sample_rate is required"),
        (np.zeros(16000, np.float32), 44100.5, "positive whole number"),
        (np.zeros(16000, np.float32), "44100", "positive whole number"),
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.full(16000, np.nan, np.float32), 16000, "NaN"),
        (np.zeros((2, 2, 16000), np.float32), 16000, "expected 1-D mono"),
        ([], 16000, "no audio"),
        ("song.mp3", 16000, "numpy array or torch tensor"),
    ],
)
def test_bad_audio_is_a_clear_value_error(mtt, audio, rate, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        mtt.embed(audio, rate)


def test_audio_only_models_have_no_text_side(mtt):
    assert mtt.tag_names is not None and len(mtt.tag_names) == 50 and not mtt.has_text
    with pytest.raises(ValueError, match="supervised_mtt has no text side"):
        mtt.embed_text(["calm piano"])
    rnd = mulap.load("random", device="cpu")
    assert rnd.embedding_dim == 1506 and rnd.sample_rate == 16000
    with pytest.raises(ValueError, match="has no text side"):
        rnd.match(np.zeros(16000, np.float32), ["x"], 16000)


def test_not_a_model_is_refused_by_name(tmp_path):
    with pytest.raises(ModelLoadError, match="'nosuchrun' is not a model"):
        mulap.load("nosuchrun", save_dir=tmp_path)
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelLoadError, match="junk is not a model"):
        mulap.load(tmp_path / "junk")
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a mulap backbone file"):
        mulap.load(tmp_path / "x.safetensors")


def test_pretrained_model_text_side(experiment):
    save_dir, pid = experiment
    model = mulap.load(pid, save_dir=save_dir, device="cpu")
    assert model.has_joint_space and model.joint_dim == 256 and model.max_chunks == 2
    texts = ["a bright loud tone, high register", "a dull soft tone"]
    t = model.embed_text(texts)
    assert t.shape == (2, 256) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        model.embed_text([""])
    x = tone(5.0, 220.0)
    a = model.embed(x, 16000, space="joint")
    b = model.embed(x, 16000)
    # similarity: cosine of the joint vectors; backbone embeddings are projected first
    np.testing.assert_allclose(model.similarity(a, t), a @ t.T, atol=1e-5)
    np.testing.assert_allclose(model.similarity(b, t), a @ t.T, atol=1e-5)
    with pytest.raises(ValueError, match="expected 256"):
        model.similarity(a[:, :10], t)
    # the backbone is the one the run exported for transfer
    same = mulap.load(save_dir / "experiments" / pid / "backbone.safetensors", device="cpu")
    np.testing.assert_allclose(same.embed(x, 16000), b, atol=1e-5)


def test_match_equals_the_atm_head(experiment):
    save_dir, pid = experiment
    model = mulap.load(pid, save_dir=save_dir, device="cpu")
    x = tone(7.0, 440.0)  # 2 whole chunks (the last second is dropped, as `embed` does): one window of the transformer
    texts = ["a bright loud tone", "a dull soft tone, low register"]
    got = model.match(x, texts, 16000)
    m = model.mulap
    chunks = x[:96000].reshape(2, 48000)
    with torch.no_grad():
        feats = m.backbone(torch.from_numpy(chunks))[None].repeat(2, 1, 1)
        mask = torch.ones(2, 2, dtype=torch.bool)
        tok = model.tokenizer(texts, padding=True, return_tensors="pt")
        enc = m.encode(feats, mask, m.text_lower(tok["input_ids"], tok["attention_mask"]), tok["attention_mask"])
        logits = m.atm_head(enc.fused)
        # the default recipe's matching head also sees the pair's joint-space cosine, scaled
        a = torch.nn.functional.normalize(m.audio_proj(feats.mean(1)), dim=-1)
        h = m.text.run_layers(
            m.text.embed(tok["input_ids"]), additive_mask(tok["attention_mask"], torch.float32), 0, len(m.text.layers)
        )
        w = tok["attention_mask"].unsqueeze(-1).float()
        t = torch.nn.functional.normalize(m.text_proj((h * w).sum(1) / w.sum(1)), dim=-1)
        logits[:, 1] += m.atm_similarity_scale * (a * t).sum(-1)
        expected = torch.softmax(logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    # longer than the window: scored window by window, the best window's probability
    other = tone(6.0, 110.0)
    long = np.concatenate([x[: 48000 * 2], other])
    both = model.match([long], texts, 16000)
    assert both.shape == (1, 2)
    np.testing.assert_allclose(both[0], np.maximum(got[0], model.match(other, texts, 16000)[0]), atol=1e-5)


def test_export_round_trip_in_a_fresh_process(experiment, tmp_path):
    save_dir, pid = experiment
    out = tmp_path / "export"
    assert main(["export", pid, str(out), f"env.save_dir={save_dir}"]) == 0
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "README.md"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "8 train / 4 val / 4 test clips" in card and "contrastive" in card
    assert main(["export", pid, str(out), f"env.save_dir={save_dir}"]) == 2  # refuses to overwrite without --overwrite
    model = mulap.load(pid, save_dir=save_dir, device="cpu")
    x = tone(4.0, 330.0)
    texts = ["a bright loud tone"]
    expected = {"embed": model.embed(x, 16000), "text": model.embed_text(texts), "match": model.match(x, texts, 16000)}
    np.save(tmp_path / "x.npy", x)
    script = (
        f"import json, numpy as np, mulap; m = mulap.load({str(out)!r}, device='cpu'); x = np.load({str(tmp_path / 'x.npy')!r}); "
        f"print(json.dumps({{'embed': m.embed(x, 16000).tolist(), 'text': m.embed_text({texts!r}).tolist(), "
        f"'match': m.match(x, {texts!r}, 16000).tolist()}}))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for k, v in expected.items():
        np.testing.assert_allclose(np.array(got[k]), v, atol=1e-5, err_msg=k)


def test_incomplete_export_is_refused_naming_the_file(experiment, tmp_path):
    save_dir, pid = experiment
    out = tmp_path / "export"
    assert main(["export", pid, str(out), f"env.save_dir={save_dir}"]) == 0
    (out / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors is missing"):
        mulap.load(out)
