"""Tar shards: conversion, the epoch plan (every sample once across ranks x workers, equal batch
counts), mid-epoch resume, object-storage style URLs, and bad input (corrupt member, an index that
does not match its shards, a non-empty output folder)."""

import errno
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mulap.audio.io import load_audio
from mulap.cli import main
from mulap.data import shards as sh
from mulap.data.audiocaption import Collate, DatasetError, Skipped
from mulap.data.shards import ShardDataset, ShardError, read_index, write_shards
from mulap.models.text import load_tokenizer


def _records(shard_source, split):
    return json.loads((shard_source / f"dataset_{split}.json").read_text())


def _tar_members(path):
    with tarfile.open(path) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


def _ids(batches):
    return [it["audio_id"] for b in batches for it in b]


def test_shard_round_trip_npy_exact_flac_16bit(shard_source, tmp_path):
    index = write_shards(shard_source, tmp_path / "npy", shard_size="150kB", fmt="npy", num_workers=0, progress=False)
    assert index == read_index(tmp_path / "npy")
    for split in ("train", "val", "test"):
        recs = _records(shard_source, split)
        entry = index["splits"][split]
        assert entry["samples"] == len(recs) and len(entry["shards"]) >= 2
        members = []
        for s in entry["shards"]:
            assert (tmp_path / "npy" / s["name"]).stat().st_size == s["bytes"]
            got = _tar_members(tmp_path / "npy" / s["name"])
            assert len(got) == 2 * s["samples"]
            members += got
        assert [n for n, _ in members] == [f"{i:08d}.{ext}" for i in range(len(recs)) for ext in ("json", "npy")]
        members = dict(members)
        for i, rec in enumerate(recs):  # key = position; JSON carries the ids; audio = load_audio of the shard_source
            meta, audio = json.loads(members[f"{i:08d}.json"]), members[f"{i:08d}.npy"]
            assert (meta["audio_id"], meta["caption"], meta["split"]) == (rec["audio_id"], rec["caption"], split)
            want = load_audio(shard_source / "audio" / rec["audio_path"])
            np.testing.assert_array_equal(np.load(io.BytesIO(audio)), want)
    # flac: 16-bit PCM of the same 16 kHz mono waveform
    index = write_shards(shard_source, tmp_path / "flac", shard_size="100kB", fmt="flac", num_workers=2, progress=False)
    name, data = _tar_members(tmp_path / "flac" / index["splits"]["train"]["shards"][0]["name"])[0]
    assert name == "00000000.flac"
    want = load_audio(shard_source / "audio" / _records(shard_source, "train")[0]["audio_path"])
    got = load_audio(name, data=data)
    assert got.shape == want.shape and np.abs(got - want).max() < 1.0 / 2**14


def test_every_sample_once_per_epoch_across_2_ranks_x_2_workers(tiny_shards, shard_source):
    """Real DataLoader workers; each rank yields len(ds) batches, all ranks the same number."""
    want = sorted(r["audio_id"] for r in _records(shard_source, "train"))
    orders = []
    for epoch in (0, 1):
        seen, lengths = [], set()
        for rank in (0, 1):
            ds = ShardDataset(
                tiny_shards,
                "train",
                batch_size=2,
                rank=rank,
                world_size=2,
                num_workers=2,
                shuffle=True,
                buffer_size=3,
                max_len_seconds=9,
            )
            ds.epoch = epoch
            batches = list(DataLoader(ds, batch_size=None, num_workers=2, collate_fn=list))
            assert len(batches) == len(ds) and all(1 <= len(b) <= 2 for b in batches)
            lengths.add(len(batches))
            seen += _ids(batches)
        assert len(lengths) == 1
        assert sorted(seen) == want  # once each: no repeats, none missing
        orders.append(seen)
    assert orders[0] != orders[1]  # a new shard order and shuffle each epoch
    val = ShardDataset(tiny_shards, "val", batch_size=3, rank=1, world_size=2, num_workers=0)
    assert _ids(list(val)) == [r["audio_id"] for r in _records(shard_source, "val")][2:]  # no shuffle: in order


def test_plan_splits_samples_evenly_and_balances_batches():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = [int(c) for c in rng.integers(0, 9, size=int(rng.integers(1, 9)))]
        if sum(counts) == 0:
            continue
        order = [int(i) for i in rng.permutation(len(counts))]
        world, workers = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        segs = sh.stream_segments(counts, order, world, workers)
        items = [(s, p) for rank in segs for w in rank for s, a, b in w for p in range(a, b)]
        assert sorted(items) == [(s, p) for s in range(len(counts)) for p in range(counts[s])]
        sizes = [sum(b - a for _, a, b in w) for rank in segs for w in rank]
        assert max(sizes) - min(sizes) <= 1
        batch = int(rng.integers(1, 5))
        per = [[sum(b - a for _, a, b in w) for w in rank] for rank in segs]
        try:
            counts_b = sh.batch_counts(per, batch)
        except ShardError:
            assert min(sum(r) for r in per) < max(sum(-(-n // batch) for n in r) for r in per)
            continue
        assert len({sum(r) for r in counts_b}) == 1
        for rank, tb in zip(per, counts_b):
            for n, t in zip(rank, tb):
                assert t <= n and (n == 0 or -(-n // t) <= batch)


class _Counted(IterableDataset):
    """Worker k yields `counts[k]` tagged batches: how a real DataLoader interleaves uneven workers."""

    def __init__(self, counts):
        self.counts = counts

    def __iter__(self):
        k = get_worker_info().id
        for i in range(self.counts[k]):
            yield (k, i)


def test_consumed_per_worker_matches_the_dataloader_order():
    counts = [2, 5, 3]
    order = list(DataLoader(_Counted(counts), batch_size=None, num_workers=3, prefetch_factor=2))
    assert len(order) == sum(counts)
    for j in range(len(order) + 1):
        got = [sum(1 for k, _ in order[:j] if k == w) for w in range(3)]
        assert sh.consumed_per_worker(j, counts) == got, j


def test_resume_skips_consumed_batches_and_does_not_reopen_used_shards(tiny_shards, shard_source, monkeypatch):
    kw = dict(batch_size=2, rank=0, world_size=1, num_workers=2, shuffle=True, buffer_size=4, max_len_seconds=9)
    full = list(DataLoader(ShardDataset(tiny_shards, "train", **kw), batch_size=None, num_workers=2, collate_fn=list))
    opened = []
    real_open = sh.open_shard
    monkeypatch.setattr(sh, "open_shard", lambda loc: opened.append(loc) or real_open(loc))
    for j in (1, 3, len(full) - 1, len(full)):
        opened.clear()
        ds = ShardDataset(tiny_shards, "train", **kw)
        ds.skip_batches = j
        rest = list(DataLoader(ds, batch_size=None, num_workers=2, collate_fn=list))
        assert sorted(_ids(rest)) == sorted(_ids(full[j:]))  # exactly the samples not yet trained on
    assert opened == []  # the whole epoch was consumed: no shard is read again
    # part-way: the shards whose samples all lie in the consumed batches are not opened
    shards = read_index(tiny_shards)["splits"]["train"]["shards"]
    checked = 0
    for j in range(1, len(full)):
        ds = ShardDataset(tiny_shards, "train", **kw)
        ds.skip_batches = j
        skips = sh.consumed_per_worker(j, ds.per_worker[0])
        consumed = {item for k in (0, 1) for b in ds.plan(0, 0, k)[: skips[k]] for item in b}
        used_up = {s["name"] for i, s in enumerate(shards) if all((i, p) in consumed for p in range(s["samples"]))}
        opened.clear()
        for k in (0, 1):  # each worker's part, read in this process so that the patched opener sees it
            monkeypatch.setattr(sh, "get_worker_info", lambda k=k: type("Info", (), {"id": k, "num_workers": 2}))
            list(iter(ds))
        assert opened and not used_up & {loc.rsplit("/", 1)[-1] for loc in opened}
        checked += bool(used_up)
    assert checked


def test_pipe_urls_read_like_local_files(tiny_shards):
    local = ShardDataset(tiny_shards, "val", batch_size=2)
    piped = ShardDataset(tiny_shards, "val", batch_size=2, shard_url=f"pipe:cat {tiny_shards}/{{name}}")
    a, b = list(local), list(piped)
    assert _ids(a) == _ids(b)
    for x, y in zip(a, b):
        for i, j in zip(x, y):
            np.testing.assert_array_equal(i["chunks"], j["chunks"])


def _copy(tiny_shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_shards, out)
    return out


def test_corrupt_member_is_counted_and_skipped_with_its_name(tiny_shards, tmp_path, caplog):
    out = _copy(tiny_shards, tmp_path)
    name = read_index(out)["splits"]["val"]["shards"][0]["name"]
    raw = bytearray((out / name).read_bytes())
    start = raw.index(b"fLaC")  # the first member's audio: garble its stream info and frames, keep its size
    raw[start : start + 2000] = bytes(2000)
    (out / name).write_bytes(bytes(raw))
    ds = ShardDataset(out, "val", batch_size=4, on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        batches = list(ds)
    items = [it for b in batches for it in b]
    bad = [it for it in items if isinstance(it, Skipped)]
    assert len(items) == 4 and len(bad) == 1 and f"{name}:00000000" in bad[0].where
    assert f"{name}:00000000" in caplog.text
    batch = Collate(load_tokenizer(None))(batches[0])
    assert batch["n_skipped"] == 1 and batch["waveforms"].shape[0] == len(batches[0]) - 1
    with pytest.raises(DatasetError, match=f"{name}:00000000"):
        list(ShardDataset(out, "val", batch_size=4))


def test_truncated_shard_counts_its_lost_samples(tiny_shards, tmp_path):
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    shard = max(index["splits"]["train"]["shards"], key=lambda s: s["samples"])
    raw = (out / shard["name"]).read_bytes()
    (out / shard["name"]).write_bytes(raw[: len(raw) // 2] + bytes(len(raw) - len(raw) // 2))  # same size, zeros
    ds = ShardDataset(out, "train", batch_size=3, on_bad_sample="skip")
    items = [it for b in ds for it in b]
    assert len(items) == 12
    bad = [it for it in items if isinstance(it, Skipped)]
    assert 1 <= len(bad) < shard["samples"] and all(shard["name"] in it.where for it in bad)


def test_index_that_does_not_match_its_shards_is_refused(tiny_shards, tmp_path):
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    first = index["splits"]["train"]["shards"][0]["name"]
    with open(out / first, "ab") as fh:  # a changed shard
        fh.write(bytes(512))
    with pytest.raises(ShardError, match=f"{first}.*does not match|{first}.*index"):
        ShardDataset(out, "train", batch_size=2)
    (out / first).unlink()  # a missing shard
    with pytest.raises(ShardError, match=f"{first}.*missing"):
        ShardDataset(out, "train", batch_size=2)
    out = _copy(tiny_shards, tmp_path / "b")
    index = read_index(out)
    index["splits"]["val"]["samples"] += 1  # totals that do not add up
    (out / sh.INDEX).write_text(json.dumps(index))
    with pytest.raises(ShardError, match="add up"):
        ShardDataset(out, "val", batch_size=2)
    index["splits"]["val"]["shards"][-1]["samples"] -= 1  # a shard holding more samples than its entry
    index["splits"]["val"]["samples"] -= 2
    (out / sh.INDEX).write_text(json.dumps(index))
    with pytest.raises(ShardError, match="more samples"):
        list(ShardDataset(out, "val", batch_size=2))
    with pytest.raises(ShardError, match="no shard index"):
        ShardDataset(tmp_path, "val", batch_size=2)


def test_data_shard_command_refuses_a_non_empty_folder_and_lists_skipped_records(shard_source, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(shard_source, src)
    recs = _records(src, "train")
    (src / "audio" / recs[1]["audio_path"]).write_bytes(b"not audio at all")
    out = tmp_path / "out"
    assert main(["data", "shard", str(src), str(out), "--shard-size", "1MB", "--workers", "0"]) == 0
    index = read_index(out)
    assert index["splits"]["train"]["samples"] == 11
    assert [s["split"] for s in index["skipped"]] == ["train"] and recs[1]["audio_path"] in index["skipped"][0]["reason"]
    assert "1 record(s) skipped" in capsys.readouterr().out
    assert main(["data", "shard", str(src), str(out), "--format", "npy"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert read_index(out)["audio_format"] == "flac"  # untouched
    assert main(["data", "shard", str(src), str(out), "--format", "npy", "--overwrite", "--workers", "0"]) == 0
    assert read_index(out)["audio_format"] == "npy" and not list(out.glob("*.tmp*"))
    (out / "notes.txt").write_text("mine")
    assert main(["data", "shard", str(src), str(out), "--overwrite"]) == 2  # never deletes what it did not write
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").is_file()


def test_pipe_commands_get_the_shard_name_shell_quoted(tiny_shards, tmp_path, monkeypatch):
    """Defence in depth behind read_index's name check: whatever name reaches shard_location, a pipe:
    command receives it as one quoted word, never as shell syntax."""
    monkeypatch.chdir(tmp_path)
    loc = sh.shard_location(tiny_shards, "x.tar; touch PWNED", "pipe:cat {name}")
    assert loc == "pipe:cat 'x.tar; touch PWNED'"
    with pytest.raises(OSError, match="exit 1"):  # cat: no file of that name (webdataset reports the exit status)
        with sh.open_shard(loc) as stream:
            stream.read()
    assert not list(tmp_path.rglob("PWNED"))
    name = read_index(tiny_shards)["splits"]["val"]["shards"][0]["name"]  # a plain name is passed as it is
    assert sh.shard_location(tiny_shards, name, f"pipe:cat {tiny_shards}/{{name}}") == f"pipe:cat {tiny_shards}/{name}"
    assert sh.shard_location(tiny_shards, name, "https://host/c/{name}") == f"https://host/c/{name}"


@pytest.mark.parametrize(
    "name",
    [
        "train-000000.tar; touch PWNED",
        "$(touch PWNED).tar",
        "-rf.tar",
        ".hidden.tar",
        "a b.tar",
        "shard.tar\n",
        "shard",
        "../x.tar",
        "x\x00.tar",
        7,
        None,
    ],
)
def test_index_names_that_are_not_plain_file_names_are_refused(tiny_shards, tmp_path, name):
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    index["splits"]["val"]["shards"][0]["name"] = name
    (out / sh.INDEX).write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"shards\.json: split 'val', shard 0: name .* is not a plain shard name") as err:
        ShardDataset(out, "val", batch_size=2, shard_url="pipe:cat {name}")
    assert repr(name) in str(err.value) and "\n" not in str(err.value)


def _set(path, value):
    def mutate(index):
        d = index
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return mutate


def _huge_count(index):
    val = index["splits"]["val"]
    val["shards"][0]["samples"] = 10**12
    val["samples"] = sum(s["samples"] for s in val["shards"])


@pytest.mark.parametrize(
    "what,mutate,says",
    [
        ("a text sample rate", _set(["sample_rate"], "x"), "sample_rate must be a whole number"),
        ("a zero sample rate", _set(["sample_rate"], 0), "sample_rate must be a whole number"),
        ("a fractional sample rate", _set(["sample_rate"], 22050.5), "sample_rate must be a whole number"),
        (
            "a bool sample count",
            _set(["splits", "val", "shards", 0, "samples"], True),
            "samples must be a whole number >= 0, got True",
        ),
        ("a negative size", _set(["splits", "val", "shards", 0, "bytes"], -1), "bytes must be a whole number >= 0, got -1"),
        (
            "a split count as text",
            _set(["splits", "val", "samples"], "4"),
            "split 'val': samples must be a whole number >= 0, got '4'",
        ),
        ("more samples than the bytes can hold (accepted before: the epoch plan lists them all)", _huge_count, "cannot fit in"),
        (
            "a largest member over the shard size",
            _set(["splits", "val", "shards", 0, "max_member_bytes"], 10**12),
            "max_member_bytes",
        ),
        ("a shard that is a list", _set(["splits", "val", "shards", 0], ["val-000000.tar"]), "expected an object"),
    ],
)
def test_a_tampered_index_is_one_line_naming_the_index(tiny_shards, tmp_path, what, mutate, says):
    """shards.json from someone else: wrong types, negative or impossible counts are refused at opening
    (they were a ValueError naming no file, a message that misread them, or accepted)."""
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    mutate(index)
    (out / sh.INDEX).write_text(json.dumps(index))
    with pytest.raises(ShardError) as err:
        ShardDataset(out, "val", batch_size=2)
    assert str(err.value).startswith(f"{out / sh.INDEX}: ") and says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"format": ' + "9" * 5000 + "}", '{"format": "mulap-shards/1"} \xff'])
def test_an_index_that_is_not_json_is_one_line_naming_it(tiny_shards, tmp_path, text):
    """Nested too deeply (a RecursionError before), an integer over Python's digit limit (a ValueError
    naming no file), not UTF-8."""
    out = _copy(tiny_shards, tmp_path)
    (out / sh.INDEX).write_bytes(text.encode("latin-1"))
    with pytest.raises(ShardError) as err:
        read_index(out)
    assert str(err.value).startswith(f"{out / sh.INDEX}") and "\n" not in str(err.value)


# -- members that must not be read whole -----------------------------------------------------------
def _sparse_header(name, real_size, stored=512):
    """A GNU sparse member header (tarfile reads these but cannot write them): `real_size` bytes of
    which only the last `stored` are in the tar, the rest a hole that tarfile fills with zeros."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.size = tarfile.GNUTYPE_SPARSE, stored
    hdr = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    hdr[386:410] = tarfile.itn(real_size - stored, 12, tarfile.GNU_FORMAT) + tarfile.itn(stored, 12, tarfile.GNU_FORMAT)
    hdr[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)  # the sparse map's one entry, and the real size
    hdr[148:156] = b" " * 8
    hdr[148:155] = b"%06o\0" % sum(hdr)
    return bytes(hdr)


def _header(name, size, kind=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size = kind, size
    if kind == tarfile.SYMTYPE:
        ti.linkname = "/etc/passwd"
    return ti.tobuf(tarfile.GNU_FORMAT)


def _replace_member(out, split, target, make, drop_max=False):
    """Rewrite the first shard of `split` in `out` with member `target` replaced by the raw bytes
    `make(name)` returns (header + stored data), and its index entry to match (a hostile shard set:
    tar and index from the same hand). Returns (shard name, member name)."""
    index = read_index(out)
    entry = index["splits"][split]["shards"][0]
    members = _tar_members(out / entry["name"])
    raw, largest = bytearray(), max(len(data) for _, data in members)
    for name, data in members:
        if name == target:
            made = make(name)
            raw += made
            largest = max(largest, len(made) - 512)
        else:
            raw += _header(name, len(data)) + data + bytes(-len(data) % 512)
    raw += bytes(1024)
    raw += bytes(-len(raw) % 10240)
    (out / entry["name"]).write_bytes(bytes(raw))
    entry["bytes"], entry["max_member_bytes"] = len(raw), largest
    if drop_max:
        entry.pop("max_member_bytes", None)
    (out / sh.INDEX).write_text(json.dumps(index))
    return entry["name"], target


_BOUNDED_READ = r"""
import json, resource, sys
from mulap.data.audiocaption import DatasetError, Skipped
from mulap.data.shards import ShardDataset
skip = ShardDataset(sys.argv[1], "val", batch_size=4, on_bad_sample="skip")
error = ShardDataset(sys.argv[1], "val", batch_size=4)
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))  # 1 GiB more at most
items = [it for b in skip for it in b]
out = {"items": len(items), "skipped": [[s.where, s.reason] for s in items if isinstance(s, Skipped)]}
try:
    list(error)
except DatasetError as exc:
    out["error"] = str(exc)
print(json.dumps(out))
"""


def test_a_sparse_member_of_6_gb_in_a_tiny_shard_is_a_bad_sample_not_a_memory_error(tiny_shards, tmp_path):
    """The issue's memory bomb: a GNU-sparse member whose header says 6 GB, in a shard of a few hundred
    KB. It used to be read whole (a MemoryError that on_bad_sample=skip did not catch); now its header
    is checked first. Read in a child process with 1 GiB of address space to spare, so a regression
    fails with MemoryError instead of taking the machine's memory."""
    import subprocess
    import sys

    out = _copy(tiny_shards, tmp_path)
    shard, member = _replace_member(
        out, "val", "00000001.flac", lambda name: _sparse_header(name, 6 * 2**30) + bytes(512), drop_max=True
    )
    assert (out / shard).stat().st_size < 300_000
    run = subprocess.run([sys.executable, "-c", _BOUNDED_READ, str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["items"] == 4  # every sample of the split accounted for
    where, reason = got["skipped"][0]
    assert where == f"{shard}:00000001" and f"member {member} is a sparse file" in reason
    assert len(got["skipped"]) > 1 and all(shard in w and "not read further" in r for w, r in got["skipped"][1:])  # the rest
    assert got["error"].startswith(f"{shard}:00000001: member {member} is a sparse file") and "\n" not in got["error"]


@pytest.mark.parametrize("kind", ["declared huge", "link"])
def test_a_member_that_is_not_a_plain_file_of_sane_size_is_a_bad_sample(tiny_shards, tmp_path, kind):
    """A regular member whose header declares 6 GB (the file being tiny) is refused by its header,
    before any of its data is read or skipped; a symbolic link is not read either."""
    out = _copy(tiny_shards, tmp_path)
    if kind == "link":
        make = lambda name: _header(name, 0, tarfile.SYMTYPE)  # noqa: E731
    else:
        make = lambda name: _header(name, 6 * 2**30) + bytes(512)  # noqa: E731
    shard, member = _replace_member(out, "val", "00000001.flac", make)
    items = [it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip") for it in b]
    bad = [it for it in items if isinstance(it, Skipped)]
    assert len(items) == 4 and bad[0].where == f"{shard}:00000001"
    with pytest.raises(DatasetError) as err:
        list(ShardDataset(out, "val", batch_size=4))
    msg = str(err.value)
    assert msg.startswith(f"{shard}:00000001: member {member} is ") and "\n" not in msg
    if kind == "link":
        assert "is a link, not a plain file" in msg
    else:
        assert (
            f"{6 * 2**30:,} bytes by its tar header, over the limit of" in msg and "the largest member shards.json records" in msg
        )


def test_member_names_that_climb_out_or_are_absolute_write_nothing(tiny_shards, tmp_path, monkeypatch):
    """A shard's members are read into memory, never extracted: a name with ../ or an absolute path is only the
    sample's key, so nothing is written anywhere (a link member is refused: the test above)."""
    out = _copy(tiny_shards, tmp_path)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    index = read_index(out)
    entry = index["splits"]["val"]["shards"][0]
    raw = bytearray()
    for name, data in _tar_members(out / entry["name"]):
        name = {"00000000": str(tmp_path / "abs" / name), "00000001": f"../../../escaped/{name}"}.get(name[:8], name)
        raw += _header(name, len(data)) + data + bytes(-len(data) % 512)
    raw += bytes(1024)
    raw += bytes(-len(raw) % 10240)
    (out / entry["name"]).write_bytes(bytes(raw))
    entry["bytes"] = len(raw)
    (out / sh.INDEX).write_text(json.dumps(index))
    before = sorted(tmp_path.rglob("*"))
    items = [it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip") for it in b]
    assert len(items) == 4 and not any(isinstance(it, Skipped) for it in items)
    assert sorted(tmp_path.rglob("*")) == before and not (tmp_path.parent / "escaped").exists()  # ../../../ of a/b


def test_member_limits_from_the_index_and_the_hard_cap(tiny_shards, tmp_path, monkeypatch):
    """`mulap data shard` records each shard's largest member; a member over it is a bad sample naming
    shard:key and both sizes. An index from before (no max_member_bytes) stays readable, its members
    limited by the shard size and MAX_MEMBER_BYTES."""
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    entry = index["splits"]["val"]["shards"][0]
    sizes = {name: len(data) for name, data in _tar_members(out / entry["name"])}
    assert entry["max_member_bytes"] == max(sizes.values())
    biggest = max(sizes, key=sizes.get)
    entry["max_member_bytes"] -= 1
    (out / sh.INDEX).write_text(json.dumps(index))
    with pytest.raises(DatasetError) as err:
        list(ShardDataset(out, "val", batch_size=4))
    key = biggest.split(".")[0]
    assert str(err.value).startswith(f"{entry['name']}:{key}: member {biggest} is ")
    assert f"is {sizes[biggest]:,} bytes by its tar header, over the limit of {sizes[biggest] - 1:,} (the largest member" in str(
        err.value
    )
    items = [it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip") for it in b]
    assert len(items) == 4 and any(isinstance(it, Skipped) and it.where == f"{entry['name']}:{key}" for it in items)

    for s in (s for split in index["splits"].values() for s in split["shards"]):
        del s["max_member_bytes"]  # an index written before the field
    (out / sh.INDEX).write_text(json.dumps(index))
    assert _ids(list(ShardDataset(out, "val", batch_size=4))) == [
        r for r in _ids(list(ShardDataset(tiny_shards, "val", batch_size=4)))
    ]
    monkeypatch.setattr(sh, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(DatasetError, match="over the limit of 1,000 .the most mulap reads into memory for one member"):
        list(ShardDataset(out, "val", batch_size=4))


def test_a_shard_stream_longer_than_its_index_says_is_refused(tiny_shards, tmp_path):
    """pipe: shards are not sized before reading; the index's byte count bounds what is read."""
    out = _copy(tiny_shards, tmp_path)
    index = read_index(out)
    entry = index["splits"]["val"]["shards"][0]
    entry["bytes"] = entry["bytes"] // 2
    entry["max_member_bytes"] = min(entry.get("max_member_bytes", 0), entry["bytes"])
    (out / sh.INDEX).write_text(json.dumps(index))
    items = [
        it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip", shard_url=f"pipe:cat {out}/{{name}}") for it in b
    ]
    bad = [it for it in items if isinstance(it, Skipped)]
    assert len(items) == 4 and bad and all("longer than the" in it.reason for it in bad)


@pytest.mark.parametrize(
    "text,says",
    [
        (b"[1, 2]", "expected a JSON object with audio_id and caption, got list"),
        (b'"a caption"', "got str"),
        (b'{"audio_id": "a", "caption": null}', "caption text, got audio_id='a', caption=None"),
        (b'{"audio_id": [1], "caption": "c"}', "audio_id must be text or a whole number"),
        (b"[" * 100_000, "nested too deeply"),  # a RecursionError out of the DataLoader before
        (b'{"audio_id": "a", "caption": "\xff"}', "not UTF-8"),
    ],
)
def test_a_member_json_that_is_not_the_expected_object_is_a_bad_sample(tiny_shards, tmp_path, text, says):
    out = _copy(tiny_shards, tmp_path)
    shard, _ = _replace_member(
        out, "val", "00000000.json", lambda name: _header(name, len(text)) + text + bytes(-len(text) % 512)
    )
    with pytest.raises(DatasetError) as err:
        list(ShardDataset(out, "val", batch_size=4))
    assert str(err.value).startswith(f"{shard}:00000000.json") and says in str(err.value) and "\n" not in str(err.value)
    items = [it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip") for it in b]
    assert len(items) == 4 and [it.where for it in items if isinstance(it, Skipped)] == [f"{shard}:00000000"]


# -- a full disk during `mulap data shard` --------------------------------------------------------------
class _FillingDisk:
    """A file on a disk with `left[0]` bytes free: writes past that fail with ENOSPC, as a full disk does."""

    def __init__(self, fh, left):
        self.fh, self.left = fh, left

    def write(self, data):
        if len(data) > self.left[0]:
            self.fh.write(data[: self.left[0]])
            self.left[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left[0] -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no "Exception ignored" from a tar stream
def test_a_full_disk_during_data_shard_is_one_line_keeps_nothing_and_the_command_then_works(
    shard_source, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    left = [250_000]  # a few shards fit, then the disk is full
    real_open = open
    monkeypatch.setattr(
        sh,
        "open",
        lambda path, mode="r", *a, **k: (
            _FillingDisk(real_open(path, mode, *a, **k), left) if "w" in mode else real_open(path, mode, *a, **k)
        ),
        raising=False,
    )
    cli = ["data", "shard", str(shard_source), str(out), "--shard-size", "50kB", "--workers", "0"]
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(
        rf"mulap data: error: cannot write {re.escape(str(out))}/(train|val|test)-\d{{6}}\.tar: no space left on "
        r"device \([0-9.]+ [KMGT]?B free, about [0-9.]+ [KMGT]?B needed\)",
        err,
    ), err
    assert sorted(p.name for p in out.iterdir()) == []  # no shard without its index, no temp file: the folder is as it was
    monkeypatch.undo()  # space freed
    assert main(cli) == 0
    assert read_index(out)["splits"]["train"]["samples"] == 12 and not list(out.glob(".shard-tmp*"))


class _InterruptedDisk(_FillingDisk):
    """A file whose writer is stopped by one Ctrl-C once `left[0]` bytes are written."""

    def write(self, data):
        if len(data) > self.left[0] >= 0:
            self.left[0] = -1  # one Ctrl-C; the clean-up's writes go through
            raise KeyboardInterrupt
        if self.left[0] < 0:
            return self.fh.write(data)
        self.left[0] -= len(data)
        return self.fh.write(data)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_during_data_shard_keeps_nothing_so_the_same_command_runs_again(shard_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    left = [250_000]  # a few shards are written, then Ctrl-C
    real_open = open
    monkeypatch.setattr(
        sh,
        "open",
        lambda path, mode="r", *a, **k: (
            _InterruptedDisk(real_open(path, mode, *a, **k), left) if "w" in mode else real_open(path, mode, *a, **k)
        ),
        raising=False,
    )
    cli = ["data", "shard", str(shard_source), str(out), "--shard-size", "50kB", "--workers", "0"]
    assert main(cli) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mulap data: interrupted (SIGINT); run the same command to start again: mulap data shard "), err
    assert sorted(p.name for p in out.iterdir()) == []  # finished shards without their index would need --overwrite
    monkeypatch.undo()
    assert main(cli) == 0
    assert read_index(out)["splits"]["train"]["samples"] == 12


@pytest.fixture
def tmpfs_600k(tmp_path):
    """A 600 KB tmpfs (a real full disk: the shards of `shard_source` take about 1.2 MB); skipped where
    mounting is not allowed (as tests/training/test_run_safety.py's small_tmpfs)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True).returncode != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_data_shard_on_a_real_full_then_read_only_then_freed_disk(shard_source, tmpfs_600k, capsys):
    out = tmpfs_600k / "shards"
    cli = ["data", "shard", str(shard_source), str(out), "--shard-size", "50kB", "--workers", "0"]
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {out}/" in err and "no space left on device (" in err, err
    needed = float(re.search(r"KB free, about ([0-9.]+) MB needed\)$", err).group(1)) * 1e6
    assert list(out.iterdir()) == []
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs_600k)], check=True)
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "read-only file system" in err and str(out) in err, err
    subprocess.run(["mount", "-o", "remount,rw,size=20m", str(tmpfs_600k)], check=True)  # space freed
    assert main(cli) == 0
    assert read_index(out)["splits"]["train"]["samples"] == 12
    size = sum(p.stat().st_size for p in out.iterdir())
    assert 0.8 * size < needed < 1.25 * size  # the estimate of the space the command needs


def test_a_small_member_that_decodes_to_hours_is_a_bad_sample(tiny_shards, tmp_path, monkeypatch):
    """A decompression bomb inside the size limits: 10 minutes of silence is a 30 KB FLAC (it was
    decoded whole, 38 MB here, hours from a larger member). The index records each shard's longest
    clip; an index from before gets the hard cap (MAX_MEMBER_BYTES of float32)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(16_000 * 600, np.float32), 16_000, format="FLAC", subtype="PCM_16")
    bomb = buf.getvalue()
    assert len(bomb) < 40_000
    out = _copy(tiny_shards, tmp_path)
    longest = read_index(out)["splits"]["val"]["shards"][0]["max_audio_samples"]
    assert 0 < longest < 16_000 * 30
    shard, member = _replace_member(
        out, "val", "00000001.flac", lambda name: _header(name, len(bomb)) + bomb + bytes(-len(bomb) % 512)
    )
    with pytest.raises(DatasetError) as err:
        list(ShardDataset(out, "val", batch_size=4))
    assert str(err.value).startswith(f"{shard}:00000001.flac: decodes to more than {longest + 16:,} samples")
    assert "the longest clip shards.json records" in str(err.value)
    items = [it for b in ShardDataset(out, "val", batch_size=4, on_bad_sample="skip") for it in b]
    assert len(items) == 4 and [it.where for it in items if isinstance(it, Skipped)] == [f"{shard}:00000001"]

    old = _copy(tiny_shards, tmp_path / "old")  # an index without max_audio_samples: the hard cap
    index = read_index(old)
    for s in (s for split in index["splits"].values() for s in split["shards"]):
        del s["max_audio_samples"]
    (old / sh.INDEX).write_text(json.dumps(index))
    assert len([it for b in ShardDataset(old, "val", batch_size=4) for it in b]) == 4
    monkeypatch.setattr(sh, "MAX_MEMBER_BYTES", 4 * 20_000)  # the members (about 13 KB) pass, their clips do not
    with pytest.raises(DatasetError, match="decodes to more than 20,000 samples .* the most mulap decodes for one member"):
        list(ShardDataset(old, "val", batch_size=4))
