"""The text branch against transformers.BertModel on the same (packaged MiniLM) weights."""

import torch
from transformers import BertModel

from mulap.infra.config import load_config
from mulap.models.mulap import MuLaP
from mulap.models.text import load_tokenizer, minilm_path

CAPTIONS = ["a slow chorale for strings in d minor", "lively irish reel on fiddle and guitar, fast 6/8", "piano"]


def test_text_stream_before_first_coattention_equals_bert():
    cfg = load_config(overrides=["model_config.coattention.t_biattention_id=[4,5]"])
    model = MuLaP(cfg.model_config).eval()
    tok = load_tokenizer("minilm")
    enc = tok(CAPTIONS, padding=True, return_tensors="pt")
    ref = BertModel.from_pretrained(str(minilm_path()), local_files_only=True).eval()
    with torch.no_grad():
        expected = ref(**enc, output_hidden_states=True).hidden_states[4]  # input of layer index 4
        ours = model.text_lower(enc["input_ids"], enc["attention_mask"])
    keep = enc["attention_mask"].bool()
    assert ours.shape == expected.shape
    assert (ours[keep] - expected[keep]).abs().max().item() < 1e-5


def test_random_init_text_branch_has_configured_sizes():
    cfg = load_config(overrides=["model_config=mulbert_original", "model_config.audio.num_layers=2"])
    model = MuLaP(cfg.model_config)
    assert model.text.hidden_size == 768
    assert len(model.text.layers) == 6
    assert model.text.config.num_attention_heads == 12
    assert model.text.word_embeddings.num_embeddings == 30522
