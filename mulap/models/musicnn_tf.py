"""Read the TensorFlow-1 musicnn checkpoints without TensorFlow and load them into our Musicnn.

The ``musicnn==0.1.0`` wheel ships ``MTT_musicnn/`` and ``MSD_musicnn/`` folders holding a
TF "tensor bundle": ``.index`` (an SSTable, leveldb's table format, whose values are
serialized ``BundleEntryProto`` messages) and ``.data-00000-of-00001`` (the raw tensor bytes).
This module parses both with a few dozen lines of varint / protobuf wire-format code, so
neither TensorFlow nor protobuf is needed, then maps every variable of the musicnn graph
(``musicnn/models.py``: ``build_musicnn``) onto :class:`~mulap.models.musicnn.MusicnnTagger`.

Graph facts the mapping relies on (from ``musicnn/models.py`` and ``extractor.py``):

* layers are created in the order input BN, timbral 0.4·96 conv+BN, timbral 0.7·96 conv+BN,
  temporal 128/64/32 conv+BN, three mid-end conv+BN, pooled-feature BN, dense 200, BN, dense 50,
  so TF names them ``conv2d``, ``conv2d_1`` … and ``batch_normalization``, ``…_1`` … in that order;
* every conv is ``conv -> ReLU -> BatchNorm`` (the activation sits inside ``tf.layers.conv2d``);
* temporal convs are ``[k, 1]`` kernels with ``'same'`` padding run on every mel band, then
  max-pooled over frequency; the front end is concatenated as [timbral 38, timbral 67,
  temporal 128, 64, 32];
* the pooled vector is ``flatten(concat([max, mean], axis=2))`` of a ``[B, 753, 2]`` tensor,
  i.e. max and mean *interleaved* per channel; our Musicnn emits ``[max(753), mean(753)]``, so the
  first dense layer's rows and the 1506-d BatchNorm are permuted on load;
* BatchNorm epsilon is TF's default 1e-3; input is ``log10(1 + 10000·mel)`` of librosa's mel
  (Slaney scale, Slaney area norm, ``center=True``), 3 s = 187 frames.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mulap.models.musicnn import MusicnnConfig, MusicnnTagger

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # 1 byte compression type + 4 bytes crc

# TensorFlow DataType enum -> numpy little-endian dtype (only what a float checkpoint holds).
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}

MUSICNN_CHECKPOINTS = ("MTT_musicnn", "MSD_musicnn")


class CheckpointError(ValueError):
    """A TF checkpoint file is missing, malformed, or does not match the network."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------- wire format
def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``buf[pos]``; return (value, position after it)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def parse_protobuf(buf: bytes) -> dict[int, list[int | bytes]]:
    """Split a serialized protobuf message into {field number: [raw values]}.

    Varints come back as ints, fixed32/fixed64 as ints, length-delimited fields as bytes
    (nested messages are parsed by calling this again on them).
    """
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire_type == 2:
            length, pos = read_varint(buf, pos)
            value = bytes(buf[pos : pos + length])
            if len(value) != length:
                raise ValueError("truncated length-delimited field")
            pos += length
        elif wire_type == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's record in the bundle index (``BundleEntryProto``)."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked crc32c of the raw bytes, as TF stores it

    @classmethod
    def from_bytes(cls, raw: bytes) -> BundleEntry:
        f = parse_protobuf(raw)
        if 7 in f:
            raise ValueError("partitioned (sliced) tensors are not supported")
        shape: tuple[int, ...] = ()
        if 2 in f:
            shape_msg = parse_protobuf(f[2][0])  # type: ignore[arg-type]
            dims = []
            for dim_raw in shape_msg.get(2, []):
                dim = parse_protobuf(dim_raw)  # type: ignore[arg-type]
                dims.append(int(dim.get(1, [0])[0]))
            shape = tuple(dims)
        first = lambda n: int(f.get(n, [0])[0])  # noqa: E731 - absent field = proto default 0
        return cls(first(1), shape, first(3), first(4), first(5), first(6))


# --------------------------------------------------------------------------- SSTable
def _read_block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Decode one table block into its (key, value) entries (keys are prefix-compressed)."""
    if offset + size + BLOCK_TRAILER_SIZE > len(data):
        raise ValueError(f"block at {offset} (+{size}) runs past the end of the file")
    if data[offset + size] != 0:
        raise ValueError(f"block at {offset} is compressed (type {data[offset + size]}); unsupported")
    block = data[offset : offset + size]
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_sstable(path: str | Path) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a leveldb-format table file, in key order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read index file ({exc.strerror})") from exc
    try:
        if len(data) < FOOTER_SIZE:
            raise ValueError("file shorter than a table footer")
        footer = data[-FOOTER_SIZE:]
        (magic,) = struct.unpack_from("<Q", footer, 40)
        if magic != TABLE_MAGIC:
            raise ValueError(f"bad table magic {magic:#x} (expected {TABLE_MAGIC:#x})")
        _, pos = read_varint(footer, 0)  # metaindex handle: offset, size (unused)
        _, pos = read_varint(footer, pos)
        index_offset, pos = read_varint(footer, pos)
        index_size, pos = read_varint(footer, pos)
        entries: list[tuple[bytes, bytes]] = []
        for _, handle in _read_block(data, index_offset, index_size):
            block_offset, p = read_varint(handle, 0)
            block_size, _ = read_varint(handle, p)
            entries.extend(_read_block(data, block_offset, block_size))
    except (ValueError, struct.error, IndexError) as exc:
        raise CheckpointError(path, f"not a valid TF checkpoint index: {exc}") from exc
    return entries


# --------------------------------------------------------------------------- bundle
def _bundle_paths(ckpt_dir: str | Path) -> tuple[Path, Path]:
    """The musicnn folders use an empty checkpoint prefix: ``<dir>/.index``, ``<dir>/.data-…``."""
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir / ".index", ckpt_dir / ".data-00000-of-00001"


def read_bundle_index(ckpt_dir: str | Path) -> dict[str, BundleEntry]:
    """Parse ``<dir>/.index`` into {variable name: BundleEntry} (the header entry excluded)."""
    index_path, _ = _bundle_paths(ckpt_dir)
    entries: dict[str, BundleEntry] = {}
    for key, value in read_sstable(index_path):
        if key == b"":  # BundleHeaderProto: num_shards=1, endianness=2 (0 = little)
            header = parse_protobuf(value)
            if int(header.get(2, [0])[0]) != 0:
                raise CheckpointError(index_path, "big-endian bundles are not supported")
            if int(header.get(1, [1])[0]) != 1:
                raise CheckpointError(index_path, "only single-shard bundles are supported")
            continue
        name = key.decode("utf-8")
        try:
            entries[name] = BundleEntry.from_bytes(value)
        except (ValueError, struct.error) as exc:
            raise CheckpointError(index_path, f"bad entry for {name!r}: {exc}") from exc
    return entries


def list_checkpoint_tensors(ckpt_dir: str | Path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{variable name: (numpy dtype, shape)} for every tensor in the checkpoint."""
    out = {}
    for name, entry in read_bundle_index(ckpt_dir).items():
        if entry.dtype not in TF_DTYPES:
            raise CheckpointError(_bundle_paths(ckpt_dir)[0], f"{name!r} has unsupported dtype {entry.dtype}")
        out[name] = (TF_DTYPES[entry.dtype], entry.shape)
    return out


def read_checkpoint(ckpt_dir: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read tensors (all, or only ``names``) from a TF bundle as numpy arrays in TF layout."""
    index_path, data_path = _bundle_paths(ckpt_dir)
    index = read_bundle_index(ckpt_dir)
    try:
        data = data_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(data_path, f"cannot read data shard ({exc.strerror})") from exc
    wanted = list(index) if names is None else names
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        if name not in index:
            raise CheckpointError(index_path, f"no tensor named {name!r}")
        e = index[name]
        if e.dtype not in TF_DTYPES:
            raise CheckpointError(index_path, f"{name!r} has unsupported dtype {e.dtype}")
        dtype = TF_DTYPES[e.dtype]
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * dtype.itemsize or e.offset + e.size > len(data):
            raise CheckpointError(data_path, f"{name!r}: recorded size/offset do not fit shape {e.shape}")
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=e.offset)
        out[name] = arr.reshape(e.shape).copy()
    return out


def musicnn_checkpoint_dir(name: str) -> Path:
    """Folder of a checkpoint shipped in the ``musicnn`` package (``MTT_musicnn``/``MSD_musicnn``)."""
    if name not in MUSICNN_CHECKPOINTS:
        raise ValueError(f"unknown musicnn checkpoint {name!r}; choose one of {MUSICNN_CHECKPOINTS}")
    import importlib.util

    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'musicnn' package is not installed; install its checkpoint files with `pip install --no-deps musicnn==0.1.0`"
        )
    # Never import musicnn itself: its modules import TensorFlow.
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not (path / ".index").is_file():
        raise FileNotFoundError(f"{path}: no checkpoint index (.index) in the musicnn package")
    return path


def musicnn_tag_names(name: str) -> list[str]:
    """The 50 tag names of a musicnn checkpoint, read from ``musicnn/configuration.py`` as text."""
    import ast

    cfg_path = musicnn_checkpoint_dir(name).parent / "configuration.py"
    wanted = "MTT_LABELS" if name.startswith("MTT") else "MSD_LABELS"
    tree = ast.parse(cfg_path.read_text(encoding="utf-8"), filename=str(cfg_path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == wanted for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise CheckpointError(cfg_path, f"no {wanted} list found")


# --------------------------------------------------------------------------- mapping
def musicnn_tf_config(num_tags: int = 50, backend_channels: int = 64, dense_units: int = 200) -> MusicnnConfig:
    """The MusicnnConfig of the published musicnn checkpoints (front end included)."""
    return MusicnnConfig(
        mel_scale="slaney",
        mel_norm="slaney",
        compression="log10",
        center=True,
        pad_mode="reflect",  # librosa < 0.10 default, which musicnn was trained with
        timbral_height_fractions=(0.4, 0.7),
        temporal_lengths=(128, 64, 32),
        temporal_mode="conv_max",
        block_order="conv_relu_bn",
        backend_channels=backend_channels,
        bn_eps=1e-3,
        num_tags=num_tags,
        dense_units=dense_units,
        variant="musicnn_tf",
    )


def _bn_names(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def _named(prefix: str, i: int) -> str:
    return prefix if i == 0 else f"{prefix}_{i}"


Transform = Callable[[np.ndarray], np.ndarray]


def tf_variable_map(model: MusicnnTagger) -> dict[str, tuple[str, Transform]]:
    """{TF variable: (our state_dict key, numpy transform TF layout -> ours)} for the TF variant."""
    net = model.backbone
    cfg = net.config
    n_front = cfg.frontend_channels
    mapping: dict[str, tuple[str, Transform]] = {}
    ident: Transform = lambda a: a  # noqa: E731

    def bn(tf_i: int, ours: str, transform: Transform = ident) -> None:
        for tf_name, our_name in (
            ("gamma", "weight"),
            ("beta", "bias"),
            ("moving_mean", "running_mean"),
            ("moving_variance", "running_var"),
        ):
            mapping[f"{_bn_names(tf_i)}/{tf_name}"] = (f"{ours}.{our_name}", transform)

    def conv(tf_i: int, ours: str, kernel_transform: Transform) -> None:
        mapping[f"{_named('conv2d', tf_i)}/kernel"] = (f"{ours}.weight", kernel_transform)
        mapping[f"{_named('conv2d', tf_i)}/bias"] = (f"{ours}.bias", ident)

    bn(0, "backbone.input_bn")
    conv_i, bn_i = 0, 1
    # timbral: TF kernel [time, freq, in, out] -> torch [out, in, freq, time]
    for b in range(len(cfg.timbral_height_fractions)):
        conv(conv_i, f"backbone.timbral.{b}.conv", lambda a: a.transpose(3, 2, 1, 0))
        bn(bn_i, f"backbone.timbral.{b}.bn")
        conv_i, bn_i = conv_i + 1, bn_i + 1
    # temporal: TF kernel [k, 1, 1, out] -> torch Conv1d [out, 1, k]
    for b in range(len(cfg.temporal_lengths)):
        conv(conv_i, f"backbone.temporal.{b}.conv", lambda a: a[:, 0].transpose(2, 1, 0))
        bn(bn_i, f"backbone.temporal.{b}.bn")
        conv_i, bn_i = conv_i + 1, bn_i + 1
    # mid-end: TF kernel [7, C_in, 1, out] -> torch Conv1d [out, C_in, 7]
    for b in range(3):
        conv(conv_i, f"backbone.backend.{b}.conv", lambda a: a[:, :, 0].transpose(2, 1, 0))
        bn(bn_i, f"backbone.backend.{b}.bn")
        conv_i, bn_i = conv_i + 1, bn_i + 1
    # pooled feature: TF order is interleaved (max_c, mean_c); ours is [max..., mean...]
    pooled = 2 * (n_front + 3 * cfg.backend_channels)
    perm = np.concatenate([np.arange(0, pooled, 2), np.arange(1, pooled, 2)])
    bn(bn_i, "head.input_bn", lambda a: a[perm])
    bn_i += 1
    mapping["dense/kernel"] = ("head.dense.weight", lambda a: a[perm].T)  # [in, out] -> [out, in]
    mapping["dense/bias"] = ("head.dense.bias", ident)
    bn(bn_i, "head.dense_bn")
    mapping["dense_1/kernel"] = ("head.output.weight", lambda a: a.T)
    mapping["dense_1/bias"] = ("head.output.bias", ident)
    return mapping


def _is_training_state(name: str) -> bool:
    """Optimizer slots and counters that a forward pass never needs."""
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power", "global_step")


def load_musicnn_pretrained(
    name: str = "MTT_musicnn", ckpt_dir: str | Path | None = None
) -> tuple[MusicnnTagger, MusicnnConfig, list[str]]:
    """Build a MusicnnTagger with the weights of a published musicnn checkpoint.

    Returns (model in eval mode, its config — front-end settings included —, tag names).
    Every model variable of the checkpoint is used and every parameter/buffer of the model is
    filled; anything else is a :class:`CheckpointError` naming what did not match.
    """
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else musicnn_checkpoint_dir(name)
    index_path = ckpt_dir / ".index"
    tags = musicnn_tag_names(name) if name in MUSICNN_CHECKPOINTS else []
    shapes = list_checkpoint_tensors(ckpt_dir)
    try:
        backend_channels = int(shapes["conv2d_5/kernel"][1][-1])
        dense_units, num_tags = (int(s) for s in shapes["dense_1/kernel"][1])
    except KeyError as exc:
        raise CheckpointError(index_path, f"not a musicnn checkpoint: no variable {exc}") from exc
    config = musicnn_tf_config(num_tags=num_tags, backend_channels=backend_channels, dense_units=dense_units)
    model = MusicnnTagger(config, tag_names=tags or None)
    mapping = tf_variable_map(model)

    model_vars = {n for n in shapes if not _is_training_state(n)}
    unused = sorted(model_vars - set(mapping))
    missing_in_ckpt = sorted(set(mapping) - set(shapes))
    if unused or missing_in_ckpt:
        raise CheckpointError(
            index_path, f"checkpoint/network mismatch: unused variables {unused}, absent variables {missing_in_ckpt}"
        )
    arrays = read_checkpoint(ckpt_dir, sorted(mapping))
    state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for tf_name, (key, transform) in mapping.items():
        if key not in state:
            raise CheckpointError(index_path, f"{tf_name!r} maps to {key!r}, which the model does not have")
        value = np.ascontiguousarray(transform(arrays[tf_name]))
        if tuple(value.shape) != tuple(state[key].shape):
            raise CheckpointError(
                index_path,
                f"{tf_name!r} {arrays[tf_name].shape} -> {key!r}: got {value.shape}, model wants {tuple(state[key].shape)}",
            )
        new_state[key] = torch.from_numpy(value).to(state[key].dtype)
    # num_batches_tracked counters are the only entries TF has no counterpart for.
    unfilled = sorted(k for k in state if k not in new_state and not k.endswith("num_batches_tracked"))
    if unfilled:
        raise CheckpointError(index_path, f"model entries left unfilled by the checkpoint: {unfilled}")
    model.load_state_dict(new_state, strict=False)
    model.eval()
    return model, config, tags
