"""Pre-training augmentation (mulap.audio.augment): each kind changes the chunks as specified, the draws are
a function of (seed, epoch, index), and with augmentation off the items are what they always were."""

import numpy as np
import pytest

from mulap.audio.augment import EQ_FREQS, Augment, augment_rng, augmented_chunks
from mulap.audio.chunks import chunk_with_mask, random_crop
from mulap.data.audiocaption import AudioCaptionDataset, clip_item
from mulap.infra.config import ConfigError, load_config
from tests.helpers import make_tone_corpus

SR, L = 16_000, 48_000
NONE = dict(gain_db=0.0, eq_db=0.0, noise_prob=0.0, shift_seconds=0.0)


def _wave(seconds: float = 8.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def _one(wave, aug: Augment, seed=0, start=0, max_chunks=2):
    n_real = int(chunk_with_mask(wave[start : start + max_chunks * L], L, max_chunks)[1].sum())
    return augmented_chunks(wave, start, L, n_real, max_chunks, aug, np.random.default_rng(seed))


def test_gain_alone_scales_each_chunk_within_its_range():
    wave = _wave()
    out = _one(wave, Augment(**{**NONE, "gain_db": 6.0}))
    ratios_db = [20 * np.log10(np.abs(out[i]).max() / np.abs(wave[i * L : (i + 1) * L]).max()) for i in range(2)]
    for i, r in enumerate(ratios_db):
        assert np.allclose(out[i], wave[i * L : (i + 1) * L] * 10 ** (r / 20), atol=1e-6)  # a pure gain
        assert 0.05 < abs(r) <= 6.0
    assert abs(ratios_db[0] - ratios_db[1]) > 1e-3  # one draw per chunk


def test_shift_alone_cuts_each_chunk_nearby_from_the_clip():
    wave = _wave()
    out = _one(wave, Augment(**{**NONE, "shift_seconds": 0.25}), start=SR)
    for i in range(2):
        place = SR + i * L
        ks = [k for k in range(-4000, 4001) if np.array_equal(out[i], wave[place + k : place + k + L])]
        assert len(ks) == 1 and ks[0] != 0  # moved, by at most 0.25 s, taken from the clip's own audio
    # past the clip's ends there is silence: a one-chunk clip moved by k keeps |k| zeros at one end
    out = _one(_wave(3.0), Augment(**{**NONE, "shift_seconds": 0.25}), seed=3, max_chunks=1)
    assert 0 < (out[0] == 0).sum() <= 4000


def test_eq_alone_is_a_smooth_curve_within_its_range():
    wave = _wave()
    out = _one(wave, Augment(**{**NONE, "eq_db": 6.0}))
    ratio = np.abs(np.fft.rfft(out[0])) / np.abs(np.fft.rfft(wave[:L]))
    freqs = np.fft.rfftfreq(L, 1 / SR)
    db = 20 * np.log10(ratio[(freqs >= EQ_FREQS[0])])
    assert db.max() <= 6.0 + 1e-3 and db.min() >= -6.0 - 1e-3 and db.max() - db.min() > 2.0
    assert np.abs(np.diff(db)).max() < 0.05  # smooth: no jumps between neighbouring (3 Hz) bins


def test_noise_alone_is_mild_and_at_the_drawn_snr():
    wave = _wave()
    out = _one(wave, Augment(**{**NONE, "noise_prob": 1.0, "noise_snr_db": (20.0, 40.0)}))
    for i in range(2):
        clean = wave[i * L : (i + 1) * L]
        snr = 10 * np.log10(np.mean(clean**2) / np.mean((out[i] - clean) ** 2))
        assert 19.5 < snr < 40.5


def test_padding_chunks_stay_empty_and_the_mask_is_unchanged():
    short = _wave(4.0)  # one full chunk + a partial one, of max 3
    item = clip_item("a", "c", short, L, 3, None, Augment(), augment_rng(0, 0, 0))
    plain = clip_item("a", "c", short, L, 3, None)
    assert item["chunk_mask"].tolist() == plain["chunk_mask"].tolist() == [True, True, False]
    assert not item["chunks"][2].any() and not np.array_equal(item["chunks"][0], plain["chunks"][0])


def test_off_gives_the_items_of_before():
    wave, rng_a, rng_b = _wave(), np.random.default_rng(7), np.random.default_rng(7)
    item = clip_item("a", "c", wave, L, 2, rng_a)
    old = chunk_with_mask(random_crop(wave, 2 * L, rng_b), L, 2)  # the crop as it was drawn before augmentation
    assert np.array_equal(item["chunks"], old[0]) and np.array_equal(item["chunk_mask"], old[1])


def test_dataset_draws_are_a_function_of_seed_epoch_and_index(tmp_path):
    corpus = make_tone_corpus(tmp_path / "tones", n_train=3, seconds=(7.0,))
    aug = Augment()

    def chunks(seed, epoch, i):
        ds = AudioCaptionDataset(corpus, "train", max_len_seconds=6, random_crop=True, seed=seed, augment=aug)
        ds.set_epoch(epoch)
        return ds[i]["chunks"]

    a = chunks(1, 2, 0)
    assert np.array_equal(a, chunks(1, 2, 0))  # a fresh dataset (another worker, a resumed run): the same chunks
    for other in (chunks(1, 3, 0), chunks(2, 2, 0)):
        assert not np.array_equal(a, other)
    ds = AudioCaptionDataset(corpus, "train", max_len_seconds=6, random_crop=True, seed=1)
    ds.set_epoch(2)
    assert not np.array_equal(a, ds[0]["chunks"])  # augmentation on changes the item
    assert ds[1]["chunks"].shape == a.shape


def test_config_keys_are_typed_and_reach_the_dataset(tmp_path):
    cfg = load_config(None, ["dataset_config.augment.enabled=true", "dataset_config.augment.gain_db=3"])
    aug = Augment.from_config(cfg.dataset_config)
    assert aug == Augment(gain_db=3.0)
    assert Augment.from_config(load_config(None).dataset_config) is None  # off by default
    for bad, words in (
        ("dataset_config.augment.noise_prob=1.5", "noise_prob must be less than or equal to 1"),
        ("dataset_config.augment.noise_snr_db=[40,20]", "low <= high"),
        ("dataset_config.augment.gain=3", "unknown config key"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_config(None, [bad])
