"""Why does the Wasserstein loss lose? Measure what each loss asks of a model, at its starting point.

    OMP_NUM_THREADS=1 LISTRANK_DATA=../shared/data python benchmarks/exp_dl_diagnose.py \
        --dataset msmarco/dl19-pool --split test -o runs/exp/dlfull/diagnose.json

The encoder (default: the bundled all-MiniLM-L6-v2, cosine scores, T = 0.05, as the section-a runs
train) embeds every judged passage of the training split once. Then, for many batches drawn the
way `listrank train` draws them (all B queries of a random order, G passages sampled per query), it
forms the `[B, B*G]` score matrix and, for each loss setting, records:

* the **target** Q of a list-wise loss (softmax of the labels over the row, in-batch negatives
  label 0): the mass on the query's own group and on its top-labelled passage, against the same
  numbers for the model's own distribution P = softmax(scores / T);
* the **descent direction** -dL/ds of the loss with respect to the scores: its mean per column
  class (own passages by label, in-batch negatives), in units of the row's mean |.|, and how often
  it orders pairs correctly: own pairs with label a > b where the descent raises a more than b
  (`own_pairs_ok`), and (own passage with label >= 2, in-batch negative) pairs where it raises the
  relevant passage more (`pos_vs_inbatch_ok`). A step in score space along -dL/ds is what the
  encoder is asked to realise; below 0.5 a loss asks for the wrong order.

Nothing here trains; it is a first-order measurement at the start model, and cheap (one encoding
pass of the judged passages).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from listrank import losses
from listrank.encoder import Encoder
from listrank.train.config import SourceConfig
from listrank.train.data import load_qrels_source

# name, loss, options; evaluated at every (B, G) of the grid
SETTINGS = [
    ("wasserstein (paper, tau_L=1)", "wasserstein", {}),
    ("wasserstein tau_L=0.5", "wasserstein", {"label_temperature": 0.5}),
    ("wasserstein tau_L=0.25", "wasserstein", {"label_temperature": 0.25}),
    ("wasserstein tau_L=0.1", "wasserstein", {"label_temperature": 0.1}),
    ("wasserstein no in-batch targets", "wasserstein", {"in_batch_targets": False}),
    ("wasserstein no in-batch targets tau_L=0.25", "wasserstein", {"in_batch_targets": False, "label_temperature": 0.25}),
    ("listnet (tau_L=1)", "listnet", {}),
    ("listnet tau_L=0.25", "listnet", {"label_temperature": 0.25}),
    ("infonce (threshold 2)", "infonce", {}),
]


def batches(lists, b: int, g: int, n: int, rng: np.random.Generator):
    """`n` batches of `b` lists (a random order, as an epoch visits them), `g` passages per list."""
    for _ in range(n):
        chosen = rng.permutation(len(lists))[:b]
        groups = []
        for i in chosen:
            ps = lists[i]
            take = rng.choice(len(ps), size=g, replace=len(ps) < g)
            groups.append([ps[j] for j in take])
        yield chosen, groups


def measure(scores: torch.Tensor, labels: torch.Tensor, loss, temperature: float) -> dict:
    b, g = labels.shape
    s = scores.clone().double().requires_grad_()
    value = loss(s, labels, temperature)
    value.backward()
    desc = -s.grad  # descent direction in score space
    unit = desc.abs().mean(dim=1, keepdim=True).clamp_min(1e-300)
    desc = desc / unit
    idx = torch.arange(b)
    own = desc.reshape(b, b, g)[idx, idx]  # [B, G]
    mask = torch.ones(b, b, dtype=torch.bool)
    mask[idx, idx] = False
    inbatch = desc.reshape(b, b, g)[mask].reshape(b, (b - 1) * g)
    out = {"loss": value.item(), "push_inbatch": inbatch.mean().item()}
    for level in range(4):
        sel = labels == level
        out[f"push_{level}"] = own[sel].mean().item() if sel.any() else math.nan
    # own pairs a > b in label: does the descent raise a more than b?
    ok = tot = 0
    for i in range(b):
        la, da = labels[i], own[i]
        gt = la[:, None] > la[None, :]
        ok += int(((da[:, None] > da[None, :]) & gt).sum())
        tot += int(gt.sum())
    out["own_pairs_ok"] = ok / tot if tot else math.nan
    pos = labels >= 2
    ok2 = tot2 = 0
    for i in range(b):
        dp = own[i][pos[i]]
        if len(dp):
            ok2 += int((dp[:, None] > inbatch[i][None, :]).sum())
            tot2 += len(dp) * inbatch.shape[1]
    out["pos_vs_inbatch_ok"] = ok2 / tot2 if tot2 else math.nan
    return out


def score_gaps(scores: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """The model's logit gaps s/T: own passages of each label minus the mean in-batch negative."""
    b, g = labels.shape
    idx = torch.arange(b)
    logits = scores / temperature
    own = logits.reshape(b, b, g)[idx, idx]
    mask = torch.ones(b, b, dtype=torch.bool)
    mask[idx, idx] = False
    inb = logits.reshape(b, b, g)[mask].reshape(b, -1).mean(1, keepdim=True)
    out = {}
    for level in range(4):
        sel = labels == level
        out[f"gap_{level}"] = (own - inb)[sel].mean().item() if sel.any() else math.nan
    return out


def dist_stats(rows: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mass of each row on its own group and on its top-labelled own passage(s) (mean per passage)."""
    b, g = labels.shape
    idx = torch.arange(b)
    own = rows.reshape(b, b, g)[idx, idx]
    top = labels == labels.max(dim=1, keepdim=True).values
    return {"own_mass": own.sum(1).mean().item(),
            "top_passage": ((own * top).sum(1) / top.sum(1)).mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="msmarco/dl19-pool")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-normalize", action="store_true", help="dot product instead of cosine")
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--grid", default="8x8,43x4,43x8,43x16", help="comma-separated BxG")
    ap.add_argument("--batches", type=int, default=20, help="random batches per grid point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="raw embeddings .npz (default: next to --output)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    lists, _, _, _ = load_qrels_source(SourceConfig(path=args.dataset, split=args.split))
    lists = [ql for ql in lists if len(ql.labels()) > 1]  # list-wise losses skip one-label lists
    enc = Encoder(args.model, normalize=False, precision="fp32")  # raw embeddings, normalised below
    t0 = time.time()
    texts = [p.text for ql in lists for p in ql.all_passages()]
    cache = args.cache or args.output.with_suffix(".emb.npz")  # re-runs of the analysis skip the encoding
    if cache.exists():
        z = np.load(cache)
        p_emb, q_emb = torch.from_numpy(z["p"]), torch.from_numpy(z["q"])
    else:
        p_emb = torch.from_numpy(enc.encode(texts, batch_size=32))
        q_emb = torch.from_numpy(enc.encode([ql.query for ql in lists], batch_size=32))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, p=p_emb.numpy(), q=q_emb.numpy())
    encode_s = time.time() - t0
    if not args.no_normalize:
        p_emb, q_emb = F.normalize(p_emb, dim=-1), F.normalize(q_emb, dim=-1)
    offsets = np.cumsum([0] + [len(ql.all_passages()) for ql in lists])
    per_list = [[(offsets[i] + j, p.label) for j, p in enumerate(ql.all_passages())] for i, ql in enumerate(lists)]

    rng = np.random.default_rng(args.seed)
    results = []
    for spec in args.grid.split(","):
        b, g = map(int, spec.split("x"))
        b = min(b, len(lists))
        acc: dict[str, list[dict]] = {name: [] for name, _, _ in SETTINGS}
        pred_acc, target_acc = [], {}
        for chosen, groups in batches(per_list, b, g, args.batches, rng):
            q = q_emb[chosen]
            p = p_emb[[pid for grp in groups for pid, _ in grp]]
            labels = torch.tensor([[lab for _, lab in grp] for grp in groups])
            scores = (q @ p.T).double()
            pred_acc.append({**dist_stats(torch.softmax(scores / args.temperature, dim=1), labels),
                             **score_gaps(scores, labels, args.temperature)})
            for name, loss_name, opts in SETTINGS:
                loss = losses.get(loss_name, **opts)
                try:
                    acc[name].append(measure(scores, labels, loss, args.temperature))
                except Exception as exc:  # e.g. an InfoNCE batch without a positive
                    print(f"{spec} {name}: skipped a batch ({exc})")
                if loss_name == "wasserstein":
                    target_acc.setdefault(name, []).append(dist_stats(loss.targets(labels, b, g), labels))
        mean = lambda rows: {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}  # noqa: E731
        entry = {"B": b, "G": g, "columns": b * g, "model_P": mean(pred_acc),
                 "settings": {name: {**mean(acc[name]), **({"target": mean(target_acc[name])} if name in target_acc else {})}
                              for name, _, _ in SETTINGS if acc[name]}}
        results.append(entry)
        mp = entry["model_P"]
        print(f"B={b} G={g}: model P own mass {mp['own_mass']:.3f}, top {mp['top_passage']:.3f}; logit gap to in-batch "
              f"by label 3/2/1/0: {mp['gap_3']:.2f} {mp['gap_2']:.2f} {mp['gap_1']:.2f} {mp['gap_0']:.2f}")
        for name, r in entry["settings"].items():
            tgt = r.get("target")
            tgt_s = f"Q own {tgt['own_mass']:.3f} top {tgt['top_passage']:.3f} | " if tgt else ""
            print(f"  {name:46s} {tgt_s}push 3/2/1/0/inb {r['push_3']:+.2f} {r['push_2']:+.2f} {r['push_1']:+.2f} "
                  f"{r['push_0']:+.2f} {r['push_inbatch']:+.3f} | own pairs ok {r['own_pairs_ok']:.3f} "
                  f"pos>inbatch ok {r['pos_vs_inbatch_ok']:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "dataset": args.dataset, "split": args.split, "model": enc.model_path, "normalize": not args.no_normalize,
        "temperature": args.temperature, "batches": args.batches, "seed": args.seed, "lists": len(lists),
        "passages": len(texts), "encode_seconds": round(encode_s, 1), "grid": results}, indent=1))


if __name__ == "__main__":
    main()
