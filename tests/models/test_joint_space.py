"""The joint audio-text space can be learnt and is what the API serves: a tiny MuLaP trained a few hundred
steps on eight captioned clips retrieves each clip from its own caption through Model.embed_text/embed."""

import numpy as np
import torch

from mulap.data.audiocaption import Collate
from mulap.inference.api import Model
from mulap.infra.config import load_config
from mulap.models.mulap import MuLaP
from mulap.models.text import load_tokenizer
from tests.helpers import TINY_MODEL, tone

MASK_ID = 103
# eight clips that differ in pitch, brightness and loudness, each with its own words
CLIPS = [(f0, bright, loud) for f0 in (110.0, 440.0) for bright in (True, False) for loud in (True, False)]


def _caption(f0, bright, loud):
    return f"a {'bright' if bright else 'dull'} {'loud' if loud else 'quiet'} tone in a {'low' if f0 < 200 else 'high'} register"


def test_tiny_model_retrieves_each_clip_from_its_caption():
    torch.manual_seed(0)
    cfg = load_config(
        None,
        TINY_MODEL
        + [
            "model_config.audio.max_chunks=2",
            "dataset_config.max_len_seconds=6",
            "model_config.audio.freeze_backbone=true",
            "model_config.audio.dropout=0.0",
            "model_config.text.dropout=0.0",
            "model_config.coattention.dropout=0.0",
        ],
    )
    net = MuLaP(cfg.model_config)
    tok = load_tokenizer(None)
    waves = [tone(6.0, f0, bright=b, loud=loud) for f0, b, loud in CLIPS]
    captions = [_caption(*c) for c in CLIPS]
    items = [
        {"audio_id": str(i), "caption": c, "chunks": w.reshape(2, 48000), "chunk_mask": np.ones(2, bool)}
        for i, (w, c) in enumerate(zip(waves, captions))
    ]
    batch = Collate(tok)(items)
    model = Model("tiny", net.backbone, torch.device("cpu"), net, tok)

    def t2a_ranks():
        net.eval()
        sim = model.similarity(model.embed(waves, 16000, space="joint"), model.embed_text(captions))
        return (sim.T > np.diag(sim)[:, None]).sum(1)  # clips scored above each caption's own clip

    before = t2a_ranks()
    with torch.no_grad():
        features = net.chunk_features(batch["waveforms"], batch["chunk_mask"])
    net.chunk_features = lambda waveforms, chunk_mask: features  # frozen backbone: embed once
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    net.train()
    for step in range(300):  # at most 300 steps; stop once every caption finds its clip (about 90 here)
        loss = net.pretraining_losses(batch, MASK_ID, torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            done = (t2a_ranks() == 0).all()
            net.train()
            if done:
                break
    del net.chunk_features
    after = t2a_ranks()
    assert (after == 0).all(), (before, after)  # every caption ranks its own clip first
    assert (before > 0).any()
