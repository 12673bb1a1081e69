"""AdamW parameter groups: every trainable parameter once, decay by module type, per-module learning-rate scales."""
import torch
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
    opt.step(); sched.step()
    assert sorted({round(g["lr"], 12) for g in opt.param_groups}) == [round(1e-4 * 0.9, 12), round(1e-3 * 0.9, 12)]
