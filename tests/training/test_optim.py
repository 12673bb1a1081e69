"""AdamW parameter groups: every trainable parameter once, decay by module type, per-module learning-rate scales."""

from torch import nn

from mulap.training.optim import adamw_with_warmup, param_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.text = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 10)
        self.tied = nn.Linear(4, 10, bias=False)
        self.tied.weight = self.head.weight  # tied: one tensor, two modules


def test_groups_cover_each_parameter_once_with_scales():
    net = Net()
    groups = param_groups(net, 0.01, lr=1e-3, lr_scales={net.text: 0.1})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in net.parameters()})
    by = {id(p): g for g in groups for p in g["params"]}
    assert by[id(net.text[1].weight)]["lr"] == 1e-3 * 0.1 and by[id(net.text[1].weight)]["weight_decay"] == 0.01
    assert by[id(net.text[2].weight)]["weight_decay"] == 0.0 and by[id(net.text[0].weight)]["weight_decay"] == 0.0
    assert "lr" not in by[id(net.head.weight)] and by[id(net.head.bias)]["weight_decay"] == 0.0
    opt, sched = adamw_with_warmup(net, 1e-3, 0.01, (0.9, 0.98), 1e-8, 10, 0.0, {net.text: 0.1})
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == [1e-4, 1e-3]
    opt.step()
    sched.step()
    assert sorted({round(g["lr"], 12) for g in opt.param_groups}) == [round(1e-4 * 0.9, 12), round(1e-3 * 0.9, 12)]


def test_pretraining_lr_scales_cover_the_text_branch_and_the_cross_encoder():
    """`text.lr_scale` and `coattention.lr_scale` reach the optimiser: every parameter of the audio transformer,
    co-attention and poolers at lr x coattention.lr_scale, the text branch at lr x text.lr_scale, the rest
    (backbone, projections, heads) at lr."""
    from mulap.infra.config import load_config
    from mulap.models.mulap import MuLaP
    from mulap.training.pretrain import lr_scales
    from tests.helpers import TINY_MODEL

    cfg = load_config(
        None,
        [
            *TINY_MODEL,
            "model_config.coattention.lr_scale=0.2",
            "model_config.text.lr_scale=0.1",
            "model_config.objectives.contrastive.enabled=true",
        ],
    )
    net = MuLaP(cfg.model_config)
    groups = param_groups(net, 0.01, lr=1e-3, lr_scales=lr_scales(net, cfg.model_config))
    lr_of = {id(p): g.get("lr", 1e-3) for g in groups for p in g["params"]}
    cross = (net.audio_embeddings, net.audio_layers, net.coattention, net.audio_pooler, net.text_pooler)
    for module, want in [
        *[(m, 2e-4) for m in cross],
        (net.text, 1e-4),
        (net.backbone, 1e-3),
        (net.audio_proj, 1e-3),
        (net.text_proj, 1e-3),
        (net.atm_head, 1e-3),
        (net.mam_head, 1e-3),
    ]:
        assert {round(lr_of[id(p)], 12) for p in module.parameters()} == {want}, module
    assert lr_of[id(net.logit_scale)] == 1e-3
    # the MLM head decodes with the text branch's word embeddings (shared): they learn at the text rate
    assert net.mlm_head.word_embeddings is net.text.word_embeddings and lr_of[id(net.text.word_embeddings.weight)] == 1e-4
    # the defaults (1.0 everywhere in the packaged model config) give plain AdamW groups
    plain = load_config(None, [*TINY_MODEL, "model_config.text.lr_scale=1.0"])
    assert lr_scales(MuLaP(plain.model_config), plain.model_config) is None
