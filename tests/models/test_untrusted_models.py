"""Model folders someone else wrote (issue 17): an export's config.json goes through the typed schema and its size
limits before anything is built (2a, 4a); damaged weights, tokenizers, configs and metrics are one line naming the
file (4c, 5f, 10); a damaged best.ckpt is passed over with a warning (5a); killed exports' temp folders are cleaned
(5e); weights get the umask's permissions (7c); a full disk during export is one WriteError (4e); the model card
finds a relative corpus from any folder (7b)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mulap
from mulap.cli import main
from mulap.inference.loading import ModelLoadError, export_model, load_experiment
from mulap.infra.files import WRITER_HOST, WriteError
from mulap.models.backbone import load_backbone, save_backbone
from mulap.models.musicnn import Musicnn, MusicnnConfig
from tests.helpers import TINY_MODEL, make_tone_corpus, tone


@pytest.fixture(scope="module")
def export(tiny_mulap, tmp_path_factory) -> Path:
    """The tiny pre-trained MuLaP exported once (read-only: tests that tamper copy it)."""
    save_dir, pid = tiny_mulap
    out = tmp_path_factory.mktemp("export") / "tiny"
    assert main(["export", pid, str(out), f"env.save_dir={save_dir}"]) == 0
    return out


@pytest.fixture
def copy_export(export, tmp_path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(export, out)
    return out


@pytest.fixture
def copy_experiment(tiny_mulap, tmp_path) -> Path:
    save_dir, pid = tiny_mulap
    out = tmp_path / "experiment"
    shutil.copytree(save_dir / "experiments" / pid, out)
    return out


def edit_config(folder: Path, change) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config = change(config) or config
    path.write_text(json.dumps(config))
    return path


def set_key(dotted: str, value):
    def change(config):
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value

    return change


def del_key(dotted: str):
    def change(config):
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node[p]
        del node[leaf]

    return change


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if a network (or an embedding table) is constructed."""
    from mulap.models import mulap as mulap_model

    def refuse(*args, **kwargs):
        raise AssertionError("a network was built from a config that should have been refused")

    monkeypatch.setattr(mulap_model.MuLaP, "__init__", refuse)
    monkeypatch.setattr(torch.nn.Embedding, "__init__", refuse)
    monkeypatch.setattr(Musicnn, "__init__", refuse)


def one_line_naming(exc: BaseException, *parts: str) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


# -- 2a: size limits, checked before anything is allocated ----------------------------------------------
@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("model_config.audio.num_layers", 100000, "model_config.audio.num_layers must be less than or equal to 48 (got 100000)"),
        ("text_config.vocab_size", 200_000_000, "text_config.vocab_size must be less than or equal to 262144"),
        ("text_config.max_position_embeddings", 10**8, "text_config.max_position_embeddings must be less than or equal to 8192"),
        ("text_config.intermediate_size", 10**9, "text_config.intermediate_size must be less than or equal to 16384"),
        ("model_config.audio.hidden_size", 10**6, "model_config.audio.hidden_size must be less than or equal to 4096"),
        ("model_config.audio.max_chunks", 10**9, "model_config.audio.max_chunks must be less than or equal to 4096"),
        (
            "model_config.coattention.t_biattention_id",
            [1] * 100000,
            "model_config.coattention.t_biattention_id must have at most 48 items",
        ),
        (
            "model_config.audio.musicnn.timbral_channels",
            10**7,
            "model_config.audio.musicnn.timbral_channels must be less than or equal to 4096",
        ),
        ("model_config.audio.musicnn.n_fft", 2**30, "model_config.audio.musicnn.n_fft must be less than or equal to 16384"),
        (
            "model_config.objectives.contrastive.dim",
            10**8,
            "model_config.objectives.contrastive.dim must be less than or equal to 4096",
        ),
    ],
)
def test_export_sizes_over_the_limits_are_refused_before_anything_is_built(copy_export, nothing_built, key, value, expected):
    path = edit_config(copy_export, set_key(key, value))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    assert time.perf_counter() - start < 1.0
    one_line_naming(err.value, str(path), expected)


def test_sizes_that_pass_the_limits_but_not_the_weights_file_are_refused_before_allocating(copy_export, monkeypatch):
    """Within every limit, yet 400 MB of text layers: the weights file (a few MB) cannot hold them, and the real
    network is never built (its weightless copy, on torch's meta device, shows it)."""
    from mulap.models import mulap as mulap_model

    def bigger(config):
        config["text_config"].update(hidden_size=2048, intermediate_size=8192, num_attention_heads=16)
        config["model_config"]["text"]["num_layers"] = 8

    edit_config(copy_export, bigger)
    built = []
    real_init = mulap_model.MuLaP.__init__

    def record(self, *args, **kwargs):
        built.append(torch.get_default_device())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(mulap_model.MuLaP, "__init__", record)
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export / "model.safetensors"), "do not fit config.json", "another shape")
    assert built == [torch.device("meta")]


def test_backbone_file_metadata_over_the_limits_is_refused_before_building(tmp_path, nothing_built):
    from safetensors.torch import save_file

    path = tmp_path / "backbone.safetensors"
    config = MusicnnConfig(timbral_channels=8, temporal_channels=4, backend_channels=8).to_dict()
    save_file({"x": torch.zeros(1)}, str(path), metadata={"config": json.dumps({**config, "backend_channels": 10**6})})
    with pytest.raises(ValueError) as err:
        load_backbone(path)
    one_line_naming(err.value, str(path), "backend_channels must be less than or equal to 4096")


def test_experiment_backbone_metadata_over_the_limits_is_refused(copy_experiment, nothing_built):
    from safetensors.torch import save_file

    for name in ("backbone.safetensors", "backbone_last.safetensors"):
        save_file(
            {"x": torch.zeros(1)},
            str(copy_experiment / name),
            metadata={"config": json.dumps({"temporal_lengths": [1000] * 10**5})},
        )
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_experiment, device="cpu")
    one_line_naming(err.value, str(copy_experiment / "backbone.safetensors"), "temporal_lengths must have at most 16 items")


# -- 4a: a tampered config.json is one line naming the file and the key -----------------------------------
@pytest.mark.parametrize(
    "change,expected",
    [
        (del_key("model_config.audio.hidden_size"), "model_config.audio.hidden_size is missing"),
        (del_key("text_config"), "text_config is missing"),
        (del_key("max_seq_length"), "max_seq_length is missing"),
        (set_key("model_config.audio.num_layers", "two"), "model_config.audio.num_layers must be a valid integer (got 'two')"),
        (set_key("model_config.audio", [1, 2]), "model_config.audio must be a valid dictionary"),
        (set_key("text_config", "bert"), "text_config must be a valid dictionary"),
        (
            set_key("model_config.objectives.contrastive.enabled", "yes"),
            "model_config.objectives.contrastive.enabled must be a valid boolean",
        ),
        (set_key("model_config.audio.musicnn.mel_scale", 3), "model_config.audio.musicnn.mel_scale must be 'htk' or 'slaney'"),
        (set_key("model_config.audio.musicnn.bogus", 1), "model_config.audio.musicnn.bogus is not a known key"),
        (set_key("text_config.hidden_act", "rm -rf"), "text_config.hidden_act must be one of transformers' activations"),
        (
            set_key("text_config.num_attention_heads", 5),
            "text_config.hidden_size (32) must be a multiple of num_attention_heads (5)",
        ),
        (set_key("text_config.pad_token_id", 10**5), "text_config.pad_token_id (100000) must be below vocab_size"),
        (set_key("max_seq_length", 600), "max_seq_length (600) is more than text_config.max_position_embeddings (512)"),
        (set_key("model_config.audio.init", "supervised_msd"), "model_config.audio.init must be 'random' in an export"),
        (set_key("provenance.epoch", "one"), "provenance.epoch must be a valid integer"),
        (set_key("provenance.objectives", ["mlm"]), "provenance.objectives must be a valid dictionary"),
        (lambda c: [c], "expected a JSON object at the top level, not a list"),
        (lambda c: "mulap", "expected a JSON object at the top level, not a str"),
    ],
)
def test_a_tampered_export_config_is_one_line_naming_the_file_and_the_key(copy_export, change, expected):
    path = edit_config(copy_export, change)
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(path), expected)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b'{"format": ', "line 1: invalid JSON"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"format": "mulap-model-1", "x": "\xff"}', "not UTF-8 text"),
    ],
)
def test_an_unparsable_export_config_names_the_file(copy_export, content, expected):
    (copy_export / "config.json").write_bytes(content)
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export / "config.json"), expected)


def test_the_cli_prints_a_tampered_export_as_one_line(copy_export, tmp_path, capsys):
    np.save(tmp_path / "a.npy", tone(3.0, 220.0))
    path = edit_config(copy_export, lambda c: [c])
    assert main(["embed", str(copy_export), str(tmp_path / "a.npy"), "-o", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mulap embed: error: ") and str(path) in err and len(err.splitlines()) == 1


# -- 4c: damaged weights --------------------------------------------------------------------------------------
def _header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_header(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a safetensors file at all" * 10)


def _lying_header(path: Path) -> None:  # a tensor said to be 1000x larger than the bytes the file holds
    header, data = _header(path)
    name = next(k for k, v in header.items() if k != "__metadata__" and v["shape"])
    header[name]["shape"] = [s * 1000 for s in header[name]["shape"]]
    _write_header(path, header, data)


def _renamed_tensor(path: Path) -> None:  # consistent file, a tensor under another name
    header, data = _header(path)
    name = next(k for k in header if k.startswith("audio_layers."))
    header[name.replace("audio_layers.", "evil_layers.")] = header.pop(name)
    _write_header(path, header, data)


def _reshaped_tensor(path: Path) -> None:  # consistent file, a [a, b] tensor stored as [b, a]
    header, data = _header(path)
    name = next(k for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 2 and v["shape"][0] != v["shape"][1])
    header[name]["shape"] = header[name]["shape"][::-1]
    _write_header(path, header, data)


@pytest.mark.parametrize(
    "damage,expected",
    [
        (_truncate, "cannot read the weights (SafetensorError"),
        (_garbage, "cannot read the weights (SafetensorError"),
        (_lying_header, "cannot read the weights (SafetensorError"),
        (_renamed_tensor, "1 tensor(s) missing: audio_layers."),
        (_reshaped_tensor, "of another shape"),
    ],
)
def test_damaged_export_weights_are_one_line_naming_the_file(copy_export, damage, expected):
    damage(copy_export / "model.safetensors")
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export / "model.safetensors"), expected)


@pytest.mark.parametrize("damage", [_truncate, _garbage])
def test_a_corrupt_backbone_file_in_an_experiment_is_one_line_naming_it(copy_experiment, tmp_path, capsys, damage):
    damage(copy_experiment / "backbone.safetensors")
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_experiment, device="cpu")
    one_line_naming(err.value, str(copy_experiment / "backbone.safetensors"), "not a mulap backbone file")
    np.save(tmp_path / "a.npy", tone(3.0, 220.0))
    assert main(["embed", str(copy_experiment), str(tmp_path / "a.npy"), "-o", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mulap embed: error: ") and "backbone.safetensors" in err and len(err.splitlines()) == 1


def test_backbone_metadata_that_is_not_a_config_is_named(tmp_path):
    from safetensors.torch import save_file

    cases = {
        "none.safetensors": {},
        "json.safetensors": {"config": "{oops"},
        "list.safetensors": {"config": "[1, 2]"},
        "type.safetensors": {"config": json.dumps({"n_mels": "many"})},
    }
    expected = {
        "none.safetensors": "no Musicnn config in its metadata",
        "json.safetensors": "not valid JSON",
        "list.safetensors": "is a list, not an object",
        "type.safetensors": "n_mels must be a valid integer",
    }
    for name, meta in cases.items():
        save_file({"x": torch.zeros(1)}, str(tmp_path / name), metadata=meta)
        with pytest.raises(ValueError) as err:
            load_backbone(tmp_path / name)
        one_line_naming(err.value, str(tmp_path / name), expected[name])


def _header_bomb(path: Path) -> None:  # the 8-byte header length says 4 EiB: nothing may be allocated for it
    path.write_bytes(struct.pack("<Q", 2**62) + b'{"x": {}}' + bytes(55))


def test_safetensors_header_bombs_are_refused_naming_the_file(copy_export, tmp_path):
    """A header length of 4 EiB, or a header whose tensors promise 4 TiB in a file of a few bytes, is refused by the
    safetensors reader before anything is allocated: one line naming the file, at once."""
    lying = json.dumps({"x": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}).encode()
    files = {"length": tmp_path / "length.safetensors", "tensors": tmp_path / "tensors.safetensors"}
    _header_bomb(files["length"])
    files["tensors"].write_bytes(struct.pack("<Q", len(lying)) + lying + bytes(16))
    start = time.perf_counter()
    for path in files.values():
        with pytest.raises(ValueError) as err:
            load_backbone(path)
        one_line_naming(err.value, str(path), "not a mulap backbone file (unreadable: SafetensorError")
    _header_bomb(copy_export / "model.safetensors")
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export / "model.safetensors"), "SafetensorError")
    assert time.perf_counter() - start < 5.0


def test_experiment_weights_of_another_shape_are_one_line(copy_experiment):
    best = copy_experiment / "checkpoints" / "best.ckpt"
    saved = torch.load(best, weights_only=True)
    key = next(k for k, v in saved["state_dict"].items() if k.startswith("model.audio_layers.") and v.ndim == 2)
    saved["state_dict"][key] = torch.zeros(3, 3)
    torch.save(saved, best)
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_experiment, device="cpu")
    one_line_naming(err.value, str(best), "do not fit", key.removeprefix("model."), "[3, 3]")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):  # a pickle that creates `marker` when loaded with pickle's full power
        return open, (self.marker, "w")


def test_experiment_weights_that_would_run_code_are_refused_naming_the_file(copy_experiment, tmp_path):
    """Checkpoints load with weights_only=True: a pickle payload is one line naming the file and never runs."""
    marker = tmp_path / "PWNED"
    ckpts = sorted((copy_experiment / "checkpoints").glob("*.ckpt"))
    for path in ckpts:
        saved = torch.load(path, weights_only=True)
        torch.save({**saved, "hyper_parameters": {"x": _RunsCode(marker)}}, path)
    best = copy_experiment / "checkpoints" / "best.ckpt"
    with pytest.raises(ModelLoadError) as err:
        load_experiment(copy_experiment, checkpoint=best)  # named (`--checkpoint`)
    one_line_naming(err.value, str(best), "cannot read the weights (UnpicklingError")
    with pytest.raises(ModelLoadError) as err:
        load_experiment(copy_experiment)  # chosen: every checkpoint is passed over as unreadable
    one_line_naming(err.value, f"no intact checkpoint in {copy_experiment / 'checkpoints'}")
    assert len(ckpts) >= 2 and not marker.exists()


# -- 5a: a damaged best.ckpt --------------------------------------------------------------------------------
def test_a_damaged_best_checkpoint_is_passed_over_with_a_warning(copy_experiment, caplog):
    best = copy_experiment / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="mulap"):
        model = mulap.load(copy_experiment, device="cpu")
    assert model.info["checkpoint"] == "last.ckpt"
    warning = next(r.getMessage() for r in caplog.records if "best.ckpt" in r.getMessage())
    assert "unreadable" in warning and "using last.ckpt instead" in warning and str(copy_experiment / "checkpoints") in warning


# -- 5f: the tokenizer ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("tokenizer.json", b"{not json", "tokenizer.json, line 1: invalid JSON"),
        ("tokenizer.json", b"[1, 2]", "tokenizer.json: expected a JSON object, not a list"),
        ("tokenizer.json", json.dumps({"version": "1.0", "model": {"type": "Nope"}}).encode(), "tokenizer.json: not a tokenizer"),
        ("tokenizer_config.json", b"{nope", "tokenizer_config.json, line 1: invalid JSON"),
        ("tokenizer_config.json", b"[1]", "tokenizer_config.json: expected a JSON object"),
        ("tokenizer_config.json", json.dumps({"do_lower_case": "yes"}).encode(), "tokenizer_config.json"),
    ],
)
def test_a_malformed_tokenizer_names_the_file(copy_export, name, content, expected):
    (copy_export / name).write_bytes(content)
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export), expected)


def test_a_vocab_txt_that_is_not_text_names_the_file(copy_export):
    (copy_export / "tokenizer.json").unlink()
    (copy_export / "vocab.txt").write_bytes(b"[PAD]\n\xff\xfe oops\n")
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export / "vocab.txt"), "not UTF-8 text")


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(copy_export):
    from mulap.models.text import read_tokenizer

    tok = read_tokenizer(copy_export)
    tok.add_tokens(["zzqxj", "qqzxw"])
    tok.save_pretrained(str(copy_export))
    with pytest.raises(ModelLoadError) as err:
        mulap.load(copy_export, device="cpu")
    one_line_naming(err.value, str(copy_export), "30524 tokens, more than the 30522 of config.json's text_config.vocab_size")


# -- 10: the experiment's other files --------------------------------------------------------------------------
def test_a_tampered_metrics_csv_names_the_file_and_line(copy_experiment):
    path = copy_experiment / "logs" / "csv" / "metrics.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    col = next(i for i, k in enumerate(header) if k.startswith("val/"))
    row = [""] * len(header)
    row[col] = "lots"
    path.write_text("\n".join([*lines, ",".join(row)]) + "\n")
    with pytest.raises(ModelLoadError) as err:
        load_experiment(copy_experiment)
    one_line_naming(err.value, f"{path}, line {len(lines) + 1}", f"column {header[col]} holds 'lots', not a number")


def test_a_tampered_experiment_config_names_the_file(copy_experiment):
    path = copy_experiment / "config.yaml"
    path.write_text(path.read_text().replace("  num_layers: 2\n", "  num_layers: 100000\n", 1))
    with pytest.raises(ModelLoadError) as err:
        load_experiment(copy_experiment)
    one_line_naming(err.value, str(path), "must be less than or equal to 48 (got 100000)")


# -- 5e: temp folders left by killed exports --------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_export_removes_the_temp_folders_of_killed_exports_only(tiny_mulap, tmp_path):
    save_dir, pid = tiny_mulap
    parent = tmp_path / "models"
    parent.mkdir()
    host = WRITER_HOST
    dead = parent / f".tiny.tmp-{host}-{_dead_pid()}-0123abcd"
    dead_other = parent / f".other.tmp-{host}-{_dead_pid()}-89abcdef"
    live = parent / f".tiny.tmp-{host}-{os.getpid()}-fedcba98"
    elsewhere = parent / f".tiny.tmp-another-host-{_dead_pid()}-00ff00ff"
    old_format, recent_old_format = parent / ".tiny.tmp-1a2b3c4d", parent / ".tiny.tmp-5e6f7a8b"
    for folder in (dead, dead_other, live, elsewhere, old_format, recent_old_format):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(old_format, (two_hours_ago, two_hours_ago))
    export_model(load_experiment(save_dir / "experiments" / pid), parent / "tiny")
    left = sorted(p.name for p in parent.iterdir())
    assert left == sorted(["tiny", live.name, elsewhere.name, recent_old_format.name])


def test_the_temp_folder_of_an_export_names_its_writer(monkeypatch, tmp_path):
    from mulap.infra.files import writer_temp

    name = writer_temp(tmp_path / "tiny").name
    assert name.startswith(f".tiny.tmp-{WRITER_HOST}-{os.getpid()}-") and len(name.rsplit("-", 1)[1]) == 8


# -- 7c: weights honour the umask -----------------------------------------------------------------------------
@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    before = os.umask(0o022)
    os.umask(before)
    yield set_umask
    os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_weights_get_the_umask_permissions_like_every_other_file(tiny_mulap, tmp_path, umask, mask):
    save_dir, pid = tiny_mulap
    umask(mask)
    out = export_model(load_experiment(save_dir / "experiments" / pid), tmp_path / "shared")
    backbone = save_backbone(
        Musicnn(MusicnnConfig(timbral_channels=4, temporal_channels=2, backend_channels=4)), tmp_path / "backbone.safetensors"
    )
    expected = 0o666 & ~mask
    for path in (out / "model.safetensors", out / "config.json", out / "tokenizer.json", backbone):
        assert path.stat().st_mode & 0o777 == expected, (path.name, oct(path.stat().st_mode & 0o777))


# -- 4e: a full disk during export --------------------------------------------------------------------------------
def _small_tmpfs(path: Path, size: str) -> Path | None:
    path.mkdir()
    if os.geteuid() != 0:
        return None
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return path if done.returncode == 0 else None


def test_a_full_disk_during_export_is_one_write_error_and_leaves_no_temp_folder(tiny_mulap, tmp_path, monkeypatch):
    save_dir, pid = tiny_mulap
    source = load_experiment(save_dir / "experiments" / pid)
    disk = tmp_path / "disk"
    small = _small_tmpfs(disk, "1m")  # the config fits, the weights (a few MB) do not
    try:
        if small is None:  # no tmpfs: the OS's answer to a full disk, injected where the weights are flushed
            import mulap.infra.files as files

            real_fsync = files.os.fsync

            def fsync(fd):
                if os.readlink(f"/proc/self/fd/{fd}").endswith(".model.safetensors.tmp"):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_fsync(fd)

            monkeypatch.setattr(files.os, "fsync", fsync)
        with pytest.raises(WriteError) as err:
            export_model(source, disk / "tiny")
        one_line_naming(err.value, "model.safetensors", "no space left on device")
        assert list(disk.iterdir()) == []  # no temp folder, no half export
    finally:
        if small is not None:
            subprocess.run(["umount", "-l", str(small)], capture_output=True)


# -- 7b: the corpus in the model card, exported from another folder ------------------------------------------------
def test_the_model_card_counts_a_relative_corpus_when_exported_from_another_folder(tmp_path, monkeypatch, capsys):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    make_tone_corpus(work / "corpus", n_train=4, n_val=2)
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    quick = [
        "training.epochs=1",
        "training.limit_train_batches=1",
        "training.limit_val_batches=1",
        "training.batch_size=2",
        "training.num_workers=0",
        "training.progress_bar=false",
        "dataset_config.max_len_seconds=3",
        "model_config.audio.max_chunks=1",
        *TINY_MODEL,
    ]
    assert main(["pretrain", "--pretrain_id", "rel", "env.save_dir=save", "dataset_config.data_dir=corpus", *quick]) == 0
    monkeypatch.chdir(elsewhere)
    assert main(["export", str(work / "save" / "experiments" / "rel"), "out"]) == 0
    card = (elsewhere / "out" / "README.md").read_text()
    assert f"`{work / 'corpus'}`: 4 train / 2 val / 2 test clips" in card


# -- where evaluations of an export are written ---------------------------------------------------------------
def test_an_exports_recorded_source_does_not_decide_where_outputs_go(copy_export, tmp_path):
    """provenance.source names the exporter's experiment folder (another machine's, or any path someone wrote
    there): evaluations of an export are written under the export."""
    from mulap.cli.commands import _model_out
    from mulap.infra.config import load_config

    edit_config(copy_export, set_key("provenance.source", str(tmp_path / "somewhere" / "else")))
    model = mulap.load(copy_export, device="cpu")
    assert _model_out(model, load_config(None, []), "zeroshot", "genre") == copy_export.resolve() / "zeroshot" / "genre"
