"""The HEAR 2021 common API (hear-eval-kit, `hear-validator`), over `mulap.load`.

    from mulap import hear
    model = hear.load_model()                                  # supervised_mtt; or a path / name (below)
    scene = hear.get_scene_embeddings(audio, model)            # audio [n, samples] at 16 kHz -> [n, 1506]
    emb, ts = hear.get_timestamp_embeddings(audio, model)      # -> [n, T, 1506], timestamps in ms [n, T]

Torch tensors in and out, on the device the model was moved to (`model.to("cuda")`).

- `load_model(model_file_path="", **kwargs)`: "" -> supervised_mtt; otherwise whatever `mulap.load`
  takes: random / supervised_mtt / supervised_msd, a backbone .safetensors, an exported model folder,
  an experiment folder or a pre-training id. kwargs: `hop_ms` (timestamp spacing, default 50 ms, the
  HEAR suggestion for transcription tasks), `save_dir`, `seed` (for random).
- Scene embedding: the mean of the clip's non-overlapping 3 s chunk features (1506 = mean and max over
  time of 753 channels), the same numbers as `model.embed` / `mulap embed`; a trailing partial chunk is
  dropped unless it is the only one (then zero-padded).
- Timestamp embeddings: the features of a 3 s window centred on each timestamp (0, hop, 2 hop, ... up to
  the clip's length), zero-padded beyond the clip's ends. Musicnn sees 3 s at a time, so neighbouring
  timestamps share most of their window: the embedding varies smoothly, not at 50 ms resolution.
"""

from __future__ import annotations

import torch

from mulap.inference.api import backbone_features

DEFAULT_MODEL = "supervised_mtt"
DEFAULT_HOP_MS = 50.0


class HearModel(torch.nn.Module):
    """What `load_model` returns: a torch Module (the validator moves it with `.to(device)`) holding the
    Musicnn backbone, with the attributes HEAR asks for."""

    def __init__(self, model, hop_ms: float = DEFAULT_HOP_MS, batch_size: int = 64):
        super().__init__()
        if not hop_ms > 0:
            raise ValueError(f"hop_ms must be > 0, got {hop_ms}")
        self.name = model.name
        self.backbone = model.backbone.eval()  # a registered submodule: .to(device) moves it
        self.sample_rate: int = int(model.sample_rate)
        self.chunk_samples: int = int(model.chunk_samples)
        self.scene_embedding_size: int = int(model.embedding_dim)
        self.timestamp_embedding_size: int = int(model.embedding_dim)
        self.hop_ms = float(hop_ms)
        self.batch_size = int(batch_size)

    @torch.inference_mode()
    def chunk_features(self, chunks: torch.Tensor) -> torch.Tensor:
        """[B, chunk_samples] -> [B, D], batched; on the backbone's device."""
        return backbone_features(self.backbone, chunks, self.batch_size, next(self.backbone.parameters()).device).float()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return get_scene_embeddings(audio, self)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}, embedding_size={self.scene_embedding_size}, hop_ms={self.hop_ms}"


def load_model(model_file_path: str = "", **kwargs) -> HearModel:
    """A HEAR model: `model_file_path` "" (supervised_mtt) or anything `mulap.load` takes."""
    from mulap.inference.api import load

    hop_ms = kwargs.pop("hop_ms", DEFAULT_HOP_MS)
    batch_size = kwargs.pop("batch_size", 64)
    known = {"save_dir", "seed", "device"}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(
            f"unknown load_model argument(s) {sorted(unknown)}; known: hop_ms, batch_size, {', '.join(sorted(known))}"
        )
    return HearModel(load(str(model_file_path) or DEFAULT_MODEL, **kwargs), hop_ms=hop_ms, batch_size=batch_size)


def _check_audio(audio, model: HearModel) -> torch.Tensor:
    if not isinstance(model, HearModel):
        raise ValueError(f"model must come from mulap.inference.hear.load_model, got {type(model).__name__}")
    if not torch.is_tensor(audio):
        raise ValueError(
            f"audio must be a torch tensor [n_sounds, n_samples] at {model.sample_rate} Hz, got {type(audio).__name__}"
        )
    if audio.ndim != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples] at {model.sample_rate} Hz, got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point in [-1, 1], got {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio is empty (shape {tuple(audio.shape)})")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return audio.float()


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """audio [n, samples] (16 kHz) -> [n, scene_embedding_size] float32: mean of the 3 s chunk features."""
    audio = _check_audio(audio, model)
    n, samples = audio.shape
    c = model.chunk_samples
    full = samples // c
    if full == 0:  # shorter than one chunk: one zero-padded chunk, as mulap embed
        chunks = torch.nn.functional.pad(audio, (0, c - samples)).reshape(n, 1, c)
    else:
        chunks = audio[:, : full * c].reshape(n, full, c)
    feats = model.chunk_features(chunks.reshape(-1, c)).reshape(n, chunks.shape[1], -1)
    return feats.mean(1).to(audio.device)


def timestamps_ms(n_samples: int, sample_rate: int, hop_ms: float) -> torch.Tensor:
    """Frame centres 0, hop, 2 hop, ... up to the clip's length, in ms [T] (at least one)."""
    duration_ms = 1000.0 * n_samples / sample_rate
    count = int(duration_ms // hop_ms) + 1
    return torch.arange(count, dtype=torch.float64) * hop_ms


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [n, samples] (16 kHz) -> (embeddings [n, T, timestamp_embedding_size] float32, timestamps [n, T] ms):
    the features of a 3 s window centred on each timestamp (zero-padded past the clip's ends)."""
    audio = _check_audio(audio, model)
    n, samples = audio.shape
    c = model.chunk_samples
    ts = timestamps_ms(samples, model.sample_rate, model.hop_ms)
    starts = torch.round(ts * model.sample_rate / 1000.0).long() - c // 2  # window start of each centre
    padded = torch.nn.functional.pad(audio, (c // 2, c - c // 2))  # so every window lies inside
    offsets = (starts + c // 2).to(audio.device)  # window starts in the padded clips [T]
    span = torch.arange(c, device=audio.device)
    pairs = torch.cartesian_prod(torch.arange(n, device=audio.device), torch.arange(len(ts), device=audio.device))
    feats = []
    for k in range(0, len(pairs), model.batch_size):  # windows cut one batch at a time: memory stays batch x 3 s
        clip, t = pairs[k : k + model.batch_size].unbind(1)
        feats.append(model.chunk_features(padded[clip[:, None], offsets[t][:, None] + span[None, :]]))
    emb = torch.cat(feats).reshape(n, len(ts), -1)
    return emb.to(audio.device), ts.float().to(audio.device).expand(n, -1).contiguous()
