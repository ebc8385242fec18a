"""The checkpoint store of a training run: `OUTPUT/checkpoints/step-N/`, verified when written and read.

A checkpoint holds the model (sentence-transformers layout, safetensors), `trainer_state.pt`
(optimizer, scheduler, step, validation state), `rng_state.pt` (the torch RNG of every rank),
`listrank.json` (the run's metadata at that step) and `manifest.json`: the size and SHA-256 of
every other file. It is built in a temporary folder and renamed into place, then read back and
checked against its manifest before older checkpoints are pruned, so the newest *intact*
checkpoint always survives. `--resume` takes the newest checkpoint that passes the same check and
says which damaged ones it skipped (a disk that filled up, a copy cut short, a file truncated by
hand). Checkpoints from before manifests existed are checked by loading each file instead.

Everything is read with `json`, `safetensors` and `torch.load(weights_only=True)`: a checkpoint
folder is data, never code.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from listrank.atomic import atomic_dir, file_sha256
from listrank.errors import ListrankError

CKPT_DIR = "checkpoints"
META_FILE = "listrank.json"
STATE_FILE = "trainer_state.pt"
RNG_FILE = "rng_state.pt"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "listrank-checkpoint/1"


def write_manifest(folder: Path) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1))


def verify(folder: Path) -> str | None:
    """None if the checkpoint is complete and unchanged, else what is wrong with it (one phrase)."""
    for name in (STATE_FILE, RNG_FILE, META_FILE):
        if not (folder / name).is_file():
            return f"{name} is missing"
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        return _verify_by_loading(folder)
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST_FILE} is unreadable ({type(e).__name__})"
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != want.get("size"):
            return f"{rel} has {size} bytes, {want.get('size')} were written"
        if file_sha256(path) != want.get("sha256"):
            return f"{rel} changed since it was written (SHA-256 differs)"
    return None


def _verify_by_loading(folder: Path) -> str | None:
    """A checkpoint without a manifest (older listrank): intact if every file loads."""
    from safetensors.torch import load_file

    try:
        json.loads((folder / META_FILE).read_text())
        for name in (STATE_FILE, RNG_FILE):
            torch.load(folder / name, map_location="cpu", weights_only=True)
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            return "no .safetensors weights"
        for f in weights:
            load_file(str(f))
    except Exception as e:  # noqa: BLE001 - any failure to load means damaged
        return f"a file does not load ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return None


@dataclass
class Checkpoint:
    step: int
    path: Path

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / META_FILE).read_text())

    def trainer_state(self) -> dict[str, Any]:
        return torch.load(self.path / STATE_FILE, map_location="cpu", weights_only=True)

    def rng_states(self) -> dict[str, Any]:
        return torch.load(self.path / RNG_FILE, map_location="cpu", weights_only=True)


class CheckpointStore:
    """`OUTPUT/checkpoints/`: write, verify, list, prune, remove."""

    def __init__(self, output: Path, keep: int):
        self.root = Path(output) / CKPT_DIR
        self.keep = keep

    def all(self) -> list[Checkpoint]:
        """Every `step-N` folder, intact or not, oldest first."""
        found = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                m = re.fullmatch(r"step-(\d+)", p.name)
                if m and p.is_dir():
                    found.append(Checkpoint(int(m.group(1)), p))
        return sorted(found, key=lambda c: c.step)

    def newest_intact(self, warn: Callable[[str], None]) -> Checkpoint | None:
        """The newest checkpoint that passes `verify`; each damaged newer one is named through `warn`."""
        for ckpt in reversed(self.all()):
            problem = verify(ckpt.path)
            if problem is None:
                return ckpt
            warn(f"checkpoint {ckpt.path} is damaged ({problem}); skipping it")
        return None

    def save(self, step: int, write: Callable[[Path], None]) -> Checkpoint:
        """`write(folder)` fills a temporary folder; it becomes `step-N` with its manifest, is read back
        and verified, and only then are checkpoints beyond the newest `keep` removed."""
        target = self.root / f"step-{step}"
        with atomic_dir(target) as tmp:
            write(tmp)
            write_manifest(tmp)
        problem = verify(target)
        if problem is not None:
            raise ListrankError(f"checkpoint {target} did not verify after writing ({problem}): "
                                "is the disk full or failing? older checkpoints were kept")
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old.path, ignore_errors=True)
        return Checkpoint(step, target)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load_state_dict_file(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ListrankError(f"{model_dir}: no .safetensors weights to resume from")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def load_weights(encoder, model_dir: Path) -> None:
    """Load a saved model's weights into `encoder` in place (the architecture must match)."""
    state = load_state_dict_file(model_dir)
    missing, unexpected = encoder.transformer.load_state_dict(state, strict=False)
    # save_pretrained leaves out tied weights and non-persistent buffers; anything else is an error.
    own = dict(encoder.transformer.named_parameters())
    really_missing = [k for k in missing if k in own]
    if really_missing or unexpected:
        raise ListrankError(
            f"{model_dir}: weights do not fit the model (missing {really_missing[:3]}, unexpected {unexpected[:3]})"
        )


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of parameters holding NaN or infinity (one device sync for all of them)."""
    named = [(n, p) for n, p in module.named_parameters()]
    if not named:
        return []
    flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu().tolist()
    return [n for (n, _), ok in zip(named, flags) if not ok]
