"""Statistics of the pre-training corruptions over many draws."""

import torch

from mulap.models.masking import IGNORE, choose_masked_chunks, mask_tokens, sample_negatives


def test_mlm_masking_rates():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (400, 64), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False  # [CLS] / [SEP]
    new, labels = mask_tokens(ids, maskable, mask_id=103, vocab_size=30522, prob=0.15, generator=g)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    n = chosen.sum().item()
    to_mask = (new == 103) & chosen
    kept = (new == ids) & chosen
    changed = chosen & ~to_mask & ~kept
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02  # includes the rare random draw of the same token
    assert abs(changed.sum().item() / n - 0.1) < 0.02
    assert torch.equal(new[~chosen], ids[~chosen])  # nothing else changes


def test_masked_chunks_only_real_never_all():
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2000, 6, dtype=torch.bool)
    lengths = torch.randint(1, 7, (2000,), generator=g)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    hidden = choose_masked_chunks(mask, 0.15, g)
    assert not (hidden & ~mask).any()  # padding is never "masked"
    assert not hidden[lengths == 1].any()  # a one-chunk clip keeps its chunk
    assert (hidden.sum(1) < mask.sum(1)).all()  # never all chunks
    multi = lengths >= 2
    rate = hidden[multi].sum().item() / mask[multi].sum().item()
    assert 0.12 < rate < 0.16


def test_atm_negatives_never_own_caption():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 50, (16, 8), generator=g)
    ids[3] = ids[7]  # two clips with the same caption: neither is a negative for the other
    rates = []
    for _ in range(300):
        index, match = sample_negatives(ids, 0.5, generator=g)
        neg = match == 0
        assert (index[~neg] == torch.arange(16)[~neg]).all()
        assert (index[neg] != torch.arange(16)[neg]).all()
        assert not (ids[index[neg]] == ids[neg]).all(1).any()
        rates.append(neg.float().mean().item())
    assert abs(sum(rates) / len(rates) - 0.5) < 0.03


def test_hard_negatives_follow_similarity():
    g = torch.Generator().manual_seed(3)
    ids = torch.arange(8).unsqueeze(1).repeat(1, 4)
    sim = torch.eye(8)
    sim[0, 5] = 0.9  # caption 5 is the nearest other caption for clip 0
    picks = []
    for _ in range(200):
        index, match = sample_negatives(ids, 1.0, sim, temperature=0.05, generator=g)
        assert (match == 0).all()
        picks.append(index[0].item())
    assert picks.count(5) / len(picks) > 0.9


def test_single_clip_batch_has_no_negative():
    index, match = sample_negatives(torch.tensor([[1, 2, 3]]), 1.0)
    assert index.tolist() == [0] and match.tolist() == [1]
