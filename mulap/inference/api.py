"""The public Python API: one model object for notebooks, the CLI and the HEAR module.

    import mulap
    model = mulap.load("supervised_mtt")              # or a pre-training id, an experiment or export folder, ...
    emb = model.embed(wave, 44100)                     # [1, 1506] track embedding of a mono or [channels, samples] array
    emb, starts = model.embed_chunks(wave, 44100)      # [T, 1506] per 3 s chunk, start times in seconds
    embs = model.embed_files(["a.mp3", "b.wav"])       # [2, 1506], the numbers `mulap embed` writes

Models with a text side (pre-trained MuLaP, exported models):

    t = model.embed_text(["calm piano", "hip hop drums"])     # [2, 256] L2-normalised joint-space vectors
    a = model.embed(wave, sr, space="joint")                  # [1, 256] audio in the same space
    model.similarity(a, t)                                    # [1, 2] cosine scores
    model.match(wave, ["calm piano"], sr)                     # [1, 1] MuLaP's audio-text matching probability

Audio is taken at any sample rate (resampled with soxr to 16 kHz) and down-mixed to mono, exactly as
`mulap embed` reads files; a track embedding is the mean of its 3 s chunk features (a trailing partial
chunk is dropped unless it is the clip's only one, where it is zero-padded).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mulap.audio.chunks import cut_chunks
from mulap.audio.io import SAMPLE_RATE, resample
from mulap.infra.experiment import experiment_dir
from mulap.models.musicnn import Musicnn

SPACES = ("backbone", "joint")


def backbone_features(backbone, chunks: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """The backbone on [B, chunk_samples] chunks, `batch_size` at a time, on `device` -> [B, D]."""
    out = [backbone(chunks[i : i + batch_size].to(device)) for i in range(0, len(chunks), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, backbone.out_dim, device=device)


class Model:
    """A loaded backbone, optionally with MuLaP's text side. Build it with `mulap.load`."""

    def __init__(
        self,
        name: str,
        backbone: Musicnn,
        device: torch.device,
        mulap=None,
        tokenizer=None,
        max_seq_length: int = 64,
        tagger=None,
        tag_names: list[str] | None = None,
        info: dict | None = None,
    ):
        self.name = name
        self.device = device
        self.backbone = backbone.to(device).eval()
        self.mulap = mulap.to(device).eval() if mulap is not None else None
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.tagger = tagger.to(device).eval() if tagger is not None else None
        self.tag_names = list(tag_names) if tag_names is not None else None
        self.info = info or {}

    # -- what it is -------------------------------------------------------------------------------------
    sample_rate: int = SAMPLE_RATE

    @property
    def chunk_seconds(self) -> float:
        return self.backbone.config.chunk_samples / self.backbone.config.sample_rate

    @property
    def chunk_samples(self) -> int:
        return self.backbone.config.chunk_samples

    @property
    def embedding_dim(self) -> int:
        return self.backbone.out_dim

    @property
    def has_text(self) -> bool:
        return self.mulap is not None

    @property
    def has_joint_space(self) -> bool:
        return self.mulap is not None and self.mulap.has_joint_space

    @property
    def joint_dim(self) -> int | None:
        return int(self.mulap.objectives.contrastive.dim) if self.mulap is not None and self.mulap.has_joint_space else None

    @property
    def max_chunks(self) -> int | None:
        """Chunks per clip the audio transformer (and so `match`) takes at once."""
        return self.mulap.audio_embeddings.position.num_embeddings - 1 if self.mulap is not None else None

    def __repr__(self) -> str:
        text = f", joint_dim={self.joint_dim}" if self.has_joint_space else (", text side" if self.has_text else "")
        return f"mulap.Model({self.name!r}, embedding_dim={self.embedding_dim}{text}, device={self.device})"

    # -- audio in ---------------------------------------------------------------------------------------
    def prepare_audio(self, audio, sample_rate) -> list[np.ndarray]:
        """Validated 16 kHz mono float32 waveforms from a 1-D array, a 2-D [channels, samples] array, or a
        list of those (numpy or torch). Integer arrays are scaled by their dtype's range."""
        rate = _check_rate(sample_rate)
        clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not clips:
            raise ValueError("no audio given (an empty list)")
        return [_to_mono_16k(clip, rate, f"audio[{i}]" if len(clips) > 1 else "audio") for i, clip in enumerate(clips)]

    def chunks_of(self, wave: np.ndarray, hop_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """[T] 16 kHz -> (chunks [n, chunk_samples], start times in seconds [n]). Without a hop: the
        non-overlapping chunks `mulap embed` uses; with `hop_seconds`, windows every hop (overlapping when
        hop < chunk length). A clip shorter than a chunk gives one zero-padded chunk."""
        n = self.chunk_samples
        if hop_seconds is None:
            chunks = cut_chunks(wave, n, None, pad_last=False)
            return chunks, np.arange(len(chunks)) * n / SAMPLE_RATE
        hop = int(round(float(hop_seconds) * SAMPLE_RATE))
        if hop <= 0:
            raise ValueError(f"hop_seconds must be > 0, got {hop_seconds}")
        if len(wave) <= n:
            return cut_chunks(wave, n, 1, pad_last=True), np.zeros(1)
        starts = np.arange(0, len(wave) - n + 1, hop)
        return np.stack([wave[s : s + n] for s in starts]), starts / SAMPLE_RATE

    # -- audio embeddings -------------------------------------------------------------------------------
    @torch.inference_mode()
    def chunk_features(self, chunks: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """The backbone on 16 kHz chunks: [B, chunk_samples] -> [B, embedding_dim] on `self.device`."""
        chunks = torch.as_tensor(chunks, dtype=torch.float32)
        if chunks.ndim != 2 or chunks.shape[1] != self.chunk_samples:
            raise ValueError(f"chunks must be [B, {self.chunk_samples}] (3 s at 16 kHz), got {tuple(chunks.shape)}")
        return backbone_features(self.backbone, chunks, batch_size, self.device)

    def embed(self, audio, sample_rate, space: str = "backbone", batch_size: int = 64) -> np.ndarray:
        """Track embeddings [N, D] float32 (N = 1 for a single array): the mean of each clip's chunk features,
        or its projection into the joint audio-text space with `space="joint"`."""
        waves = self.prepare_audio(audio, sample_rate)
        cut = [self.chunks_of(w)[0] for w in waves]
        feats = self.chunk_features(torch.from_numpy(np.concatenate(cut)), batch_size)
        bounds = np.cumsum([0] + [len(c) for c in cut])
        tracks = torch.stack([feats[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])])
        return self._space(tracks, space)

    def embed_chunks(
        self, audio, sample_rate, hop_seconds: float | None = None, space: str = "backbone", batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """One clip's chunk embeddings [T, D] and their start times in seconds [T]. `hop_seconds` < 3 gives
        overlapping chunks (musicnn's input_overlap); the default is the non-overlapping chunks of `embed`."""
        if isinstance(audio, (list, tuple)):
            raise ValueError("embed_chunks takes one clip (a 1-D or [channels, samples] array), not a list")
        (wave,) = self.prepare_audio(audio, sample_rate)
        chunks, starts = self.chunks_of(wave, hop_seconds)
        return self._space(self.chunk_features(torch.from_numpy(chunks), batch_size), space), starts.astype(np.float64)

    def embed_files(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        space: str = "backbone",
        num_workers: int = 2,
        progress: bool = False,
    ) -> np.ndarray:
        """Track embeddings [N, D] of audio files, in order: the numbers `mulap embed` writes. A file that
        cannot be read raises AudioError naming it."""
        from mulap.audio.io import AudioError
        from mulap.inference.extract import extract

        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not files:
            raise ValueError("no files given")
        feats, track, failures = extract(
            self.backbone, files, batch_chunks=batch_size, num_workers=num_workers, progress=progress, device=self.device
        )
        if failures:
            raise AudioError(failures[0][0], f"{failures[0][1]} ({len(failures)} of {len(files)} file(s) could not be read)")
        chunk_feats = torch.from_numpy(feats)
        tracks = torch.stack([chunk_feats[torch.from_numpy(track == i)].mean(0) for i in range(len(files))])
        return self._space(tracks, space)

    def _space(self, feats: torch.Tensor, space: str) -> np.ndarray:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if space == "joint":
            return self.project_audio(feats)
        return feats.float().cpu().numpy()

    # -- the joint audio-text space ---------------------------------------------------------------------
    def require_joint(self, what: str) -> None:
        """A ValueError naming the model when it has no joint audio-text space (text queries, zero-shot, retrieval)."""
        if self.mulap is None:
            raise ValueError(
                f"{self.name} has no text side: {what} needs a pre-trained MuLaP model "
                "(a pre-training id, experiment folder or exported model)"
            )
        if not self.mulap.has_joint_space:
            raise ValueError(
                f"{self.name} was trained without the contrastive objective (the paper's recipe), so it has "
                f"no joint audio-text space for {what}; `match` still scores audio-text pairs"
            )

    @torch.inference_mode()
    def project_audio(self, features) -> np.ndarray:
        """Backbone embeddings [N, embedding_dim] (track means or chunks) -> L2-normalised joint vectors [N, joint_dim]."""
        self.require_joint("project_audio")
        assert self.mulap is not None  # require_joint checked it
        x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.embedding_dim:
            raise ValueError(f"expected backbone embeddings [N, {self.embedding_dim}], got {tuple(x.shape)}")
        return self.mulap.embed_audio_joint(x.to(self.device)).float().cpu().numpy()

    def _tokens(self, texts) -> dict:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("no text given (an empty list)")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text {i} is empty: give a non-empty query or caption")
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt")
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    @torch.inference_mode()
    def embed_text(self, texts: str | Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> L2-normalised joint-space vectors [N, joint_dim] float32."""
        self.require_joint("embed_text")
        assert self.mulap is not None  # require_joint checked it
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for i in range(0, max(len(texts), 1), batch_size):
            tok = self._tokens(texts[i : i + batch_size])
            out.append(self.mulap.embed_text_joint(tok["input_ids"], tok["attention_mask"]).float().cpu().numpy())
        return np.concatenate(out)

    def similarity(self, audio_emb, text_emb) -> np.ndarray:
        """Cosine scores [Na, Nt]. `audio_emb` may be joint vectors or backbone embeddings (projected first)."""
        self.require_joint("similarity")
        a = _as_2d(audio_emb, "audio_emb")
        t = _as_2d(text_emb, "text_emb")
        if a.shape[1] == self.embedding_dim:
            a = self.project_audio(a)
        for name, x in (("audio_emb", a), ("text_emb", t)):
            if x.shape[1] != self.joint_dim:
                raise ValueError(
                    f"{name} has {x.shape[1]} dimensions; expected {self.joint_dim} (joint space)"
                    + (f" or {self.embedding_dim} (backbone)" if name == "audio_emb" else "")
                )
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
        return (a @ t.T).astype(np.float32)

    # -- the cross-encoder ------------------------------------------------------------------------------
    @torch.inference_mode()
    def match(self, audio, texts: str | Sequence[str], sample_rate, batch_size: int = 64) -> np.ndarray:
        """MuLaP's audio-text matching probability [Na, Nt] through the co-attention (slow, exact). A clip
        longer than the transformer's window (`max_chunks` chunks) is scored window by window; its score is
        the best window's."""
        if self.mulap is None:
            raise ValueError(f"{self.name} has no text side: match needs a pre-trained MuLaP model")
        assert self.max_chunks is not None  # a MuLaP model has a window
        waves = self.prepare_audio(audio, sample_rate)
        windows, owner = [], []
        for i, w in enumerate(waves):
            feats = self.chunk_features(torch.from_numpy(self.chunks_of(w)[0]))  # the chunks `embed` uses
            for start in range(0, len(feats), self.max_chunks):
                windows.append(feats[start : start + self.max_chunks])
                owner.append(i)
        return self.match_features(windows, texts, owner, len(waves), batch_size)

    def window_at(self, chunks, first: int):
        """The transformer-length window (`max_chunks` chunks) of a clip's chunks that starts at chunk `first`,
        moved back so it is full where the clip allows: what `match` scores for one moment."""
        assert self.max_chunks is not None  # a model with a text side (its audio transformer's window)
        lo = max(0, min(first, len(chunks) - self.max_chunks))
        return chunks[lo : lo + self.max_chunks]

    @torch.inference_mode()
    def match_features(
        self, windows: list[torch.Tensor], texts, owner: list[int], n_audio: int, batch_size: int = 64
    ) -> np.ndarray:
        """`match` on backbone chunk features: windows (each [c <= max_chunks, D]) owned by clip `owner[k]`
        -> [n_audio, Nt], the best window per clip."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        nt = len(texts)
        pairs = [(k, j) for k in range(len(windows)) for j in range(nt)]
        probs = self.match_pairs([windows[k] for k, _ in pairs], [texts[j] for _, j in pairs], batch_size)
        per_window = probs.reshape(len(windows), nt)
        out = np.full((n_audio, nt), -np.inf, dtype=np.float32)
        for k, i in enumerate(owner):
            out[i] = np.maximum(out[i], per_window[k])
        return out

    def pad_windows(self, windows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of chunk features (each [c, D]) -> features [N, max c, D] zero-padded and chunk mask [N, max c]."""
        c = max(len(w) for w in windows)
        feats = torch.zeros(len(windows), c, self.embedding_dim, device=self.device)
        mask = torch.zeros(len(windows), c, dtype=torch.bool, device=self.device)
        for k, w in enumerate(windows):
            feats[k, : len(w)] = w.to(self.device)
            mask[k, : len(w)] = True
        return feats, mask

    @torch.inference_mode()
    def match_pairs(self, windows: list[torch.Tensor], texts: list[str], batch_size: int = 64) -> np.ndarray:
        """The matching probability of each (window of chunk features [c <= max_chunks, D], text) pair -> [P]."""
        if len(windows) != len(texts):
            raise ValueError(f"{len(windows)} audio windows but {len(texts)} texts: match_pairs scores pairs")
        assert self.mulap is not None  # a model with a text side (match checks it)
        out = np.empty(len(windows), dtype=np.float32)
        for s in range(0, len(windows), batch_size):
            ws = windows[s : s + batch_size]
            feats, mask = self.pad_windows(ws)
            tok = self._tokens(texts[s : s + batch_size])
            logits = self.mulap.match_logits(feats, mask, tok["input_ids"], tok["attention_mask"])
            out[s : s + len(ws)] = logits.float().softmax(-1)[:, 1].cpu().numpy()
        return out


# -- loading -------------------------------------------------------------------------------------------------
def load(
    name_or_path: str | Path, save_dir: str | Path | None = None, device: str | torch.device | None = None, seed: int = 0
) -> Model:
    """A model by name or path:

    - ``"random"``: Musicnn with fresh weights (seeded);
    - ``"supervised_mtt"`` / ``"supervised_msd"``: the MTT- / MSD-trained musicnn taggers (audio only, with tags);
    - a pre-training id (under `save_dir`, default the config's env.save_dir) or an experiment folder: the whole
      pre-trained MuLaP (best weights), text side included;
    - an exported model folder (`mulap export`);
    - a backbone ``.safetensors`` file (audio only).
    """
    from mulap.inference.loading import ModelLoadError, is_experiment, is_export, load_experiment, load_export
    from mulap.models.backbone import SUPERVISED, load_backbone

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = str(name_or_path)
    if ref == "random":
        torch.manual_seed(seed)
        return Model(f"random(seed={seed})", Musicnn(), dev)
    if ref in SUPERVISED:
        from mulap.models.musicnn_tf import load_musicnn_pretrained

        tagger, _, tags = load_musicnn_pretrained(SUPERVISED[ref])
        return Model(ref, tagger.backbone, dev, tagger=tagger, tag_names=tags)
    path = model_path(ref, save_dir)
    if path.is_file():
        if path.suffix == ".safetensors" and is_export(path.parent) and path.name == "model.safetensors":
            path = path.parent
        else:
            return Model(str(path), load_backbone(path), dev)
    if is_export(path) or is_experiment(path):
        pre = load_export(path) if is_export(path) else load_experiment(path)
        return Model(f"mulap:{path.name}", pre.model.backbone, dev, pre.model, pre.tokenizer, pre.max_seq_length, info=pre.info)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or folder")
    raise ModelLoadError(
        f"{path} is not a model: expected an exported model folder (config.json + model.safetensors), "
        "an experiment folder (config.yaml + checkpoints/) or a backbone .safetensors"
    )


def model_path(ref: str, save_dir: str | Path | None = None) -> Path:
    """Where a model reference points: a bare name is a pre-training id first (<save_dir>/experiments/<name>;
    a folder of that name may also exist here), then a path."""
    from mulap.inference.loading import ModelLoadError
    from mulap.models.backbone import SUPERVISED

    path = Path(ref)
    if "/" in ref or path.suffix:
        return path
    if save_dir is None:
        from mulap.infra.config import load_config

        save_dir = load_config(None).env.save_dir
    candidate = experiment_dir(save_dir, ref)
    if candidate.exists():
        return candidate
    if not path.exists():
        raise ModelLoadError(
            f"{ref!r} is not a model: not random/{'/'.join(SUPERVISED)}, not a file or folder, and no pre-training {candidate}"
        )
    return path


# -- input checks ----------------------------------------------------------------------------------------------
def _check_rate(sample_rate) -> int:
    if sample_rate is None:
        raise ValueError("sample_rate is required (the rate of the audio you pass, e.g. 44100); it is never guessed")
    real = isinstance(sample_rate, numbers.Real) and not isinstance(
        sample_rate, bool
    )  # not narrowed: typeshed's Real has no __int__
    if not real or float(sample_rate) != int(sample_rate) or int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of samples per second, got {sample_rate!r}")
    return int(sample_rate)


def _to_mono_16k(clip, rate: int, name: str) -> np.ndarray:
    if torch.is_tensor(clip):
        clip = clip.detach().cpu().numpy()
    if not isinstance(clip, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(clip).__name__}")
    if clip.dtype.kind in "iu":  # PCM integers: full scale -> [-1, 1]
        info = np.iinfo(clip.dtype)
        clip = (clip.astype(np.float64) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif clip.dtype.kind != "f":
        raise ValueError(f"{name}: dtype {clip.dtype} is not audio (float or integer PCM expected)")
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim == 2:
        if clip.shape[0] > clip.shape[1]:
            raise ValueError(
                f"{name} has shape {clip.shape}, which looks like [samples, channels]: pass [channels, samples] "
                f"(x.T), or a list of 1-D clips for a batch"
            )
        clip = clip.mean(axis=0)
    elif clip.ndim != 1:
        raise ValueError(f"{name} has shape {clip.shape}: expected 1-D mono or 2-D [channels, samples]")
    if clip.size == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if not np.isfinite(clip).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    return np.ascontiguousarray(resample(clip, rate, SAMPLE_RATE).astype(np.float32, copy=False))


def _as_2d(x, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {x.shape}")
    return x.astype(np.float32, copy=False)
