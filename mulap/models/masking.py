"""The random corruptions of pre-training: MLM token masking, masked chunks, ATM negatives.

All take an optional torch.Generator so statistics can be tested and runs repeated.
"""

from __future__ import annotations

import torch

IGNORE = -100


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking. input_ids [B, L]; maskable [B, L] bool (real, non-special tokens).

    `prob` of the maskable tokens are chosen; of those 80% become [MASK], 10% a random
    token, 10% stay. Returns (corrupted ids [B, L], labels [B, L] with IGNORE where not chosen).
    """
    dev = input_ids.device
    rand = lambda: torch.rand(input_ids.shape, generator=generator, device="cpu").to(dev)  # noqa: E731
    chosen = (rand() < prob) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    action = rand()
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device="cpu").to(dev)
    ids = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    ids = torch.where(to_random, random_ids, ids)
    return ids, labels


def choose_masked_chunks(chunk_mask: torch.Tensor, prob: float = 0.15, generator: torch.Generator | None = None) -> torch.Tensor:
    """chunk_mask [B, C] bool (real chunks) -> [B, C] bool chunks to hide from the transformer.

    Only clips with at least two real chunks are masked (one must stay visible for the
    global token), and never all of a clip's chunks. The global token is not a chunk and
    is never masked.
    """
    chosen = (torch.rand(chunk_mask.shape, generator=generator).to(chunk_mask.device) < prob) & chunk_mask
    n_real = chunk_mask.sum(1, keepdim=True)
    all_hidden = chosen.sum(1, keepdim=True) >= n_real
    return chosen & (n_real >= 2) & ~all_hidden


def sample_negatives(
    input_ids: torch.Tensor,
    prob: float = 0.5,
    similarity: torch.Tensor | None = None,
    temperature: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose, for each pair, whether its caption is swapped for another clip's.

    input_ids [B, L] (captions as token ids, used to rule out identical captions);
    similarity [B, B] optional: hard negatives are drawn with probability
    softmax(similarity / temperature) among valid captions, else uniformly.
    Returns (caption index per clip [B] long, match label [B] long: 1 own caption, 0 another).
    A clip is never paired with its own caption (nor an identical one) and labelled negative.
    """
    b = input_ids.shape[0]
    same = (input_ids[:, None, :] == input_ids[None, :, :]).all(-1)  # identical captions (incl. self)
    valid = ~same
    weights = valid.float()
    if similarity is not None:
        logits = (similarity.detach().float() / temperature).masked_fill(~valid, float("-inf"))
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)
    has_other = valid.any(1)
    want = (torch.rand(b, generator=generator) < prob).to(input_ids.device) & has_other
    index = torch.arange(b, device=input_ids.device)
    if want.any():
        w = weights[want].clamp_min(0).cpu()
        picks = torch.multinomial(w, 1, generator=generator).squeeze(1).to(input_ids.device)
        index = index.clone()
        index[want] = picks
    return index, (~want).long()
