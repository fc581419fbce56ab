#!/usr/bin/python3
"""Trains the morphology classifier and writes model.onnx, model.yaml, metrics.json and the
reference pair, from three cutout sets written by `astroflow simulate cutouts --single-file`.

Run through models/classify/train.sh, which simulates the three sets with disjoint seeds.
The test set is read only after the model and its temperature are fixed: early stopping and the
temperature use the validation set alone.

Network: a stride-2 4x4 conv stem and four conv(3x3) + batch-norm + ReLU blocks with max pooling,
global average pooling, dropout and a linear head giving logits; softmax(logits / T) happens in
C++. Training: random quarter turns and flips per stamp (labels do not depend on orientation),
AdamW with a linear warm-up and a cosine decay whose progress is the larger of steps done / steps
planned and seconds spent / --max-train-s, so the run always ends annealed inside its time budget;
the checkpoint with the best validation accuracy (checked every half epoch) is kept. The graph keeps to
the ops OpenCV 4.6 imports (ONNX-NOTES.md): torch.flatten(x, 1), no Clip, no asinh.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from common.card import sha256_file, write_card, write_reference  # noqa: E402
from common.export import OPSET, export_onnx  # noqa: E402
from common.fits_cube import load_cutout_set  # noqa: E402
from common.metrics import (  # noqa: E402
    classification_report, fit_decision_bias, fit_temperature, softmax)
from common.preprocess import normalise_batch  # noqa: E402

CLASS_NAMES = ["spheroid", "disk", "irregular", "point_source", "artifact"]
GALAXY_CLASSES = (0, 1, 2)  # the classes whose logits the decision rule may offset
NORM = {"method": "asinh", "background": "median_clip", "scale": 3.0, "clip_sigma": 3.0,
        "clip_iterations": 5}
SIZE = 64
PIXEL_SCALE = 0.06  # arcsec/pix of simulate cutouts (its --pixel-scale default)


def block(cin, cout, kernel=3, stride=1):
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


# The stem halves the resolution at once: the PSF FWHM is 2.5-4 px, so a learned 4x4 stride-2
# filter keeps compact clumps, and the 64x64 full-resolution activations (the slowest part of
# training on 2 shared CPU cores) are never stored.
WIDTHS = (16, 32, 64, 96, 128)


class MorphologyNet(nn.Module):
    def __init__(self, n_classes=len(CLASS_NAMES), dropout=0.2, widths=WIDTHS):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            *block(1, w0, kernel=4, stride=2),  # 32x32
            *block(w0, w1), nn.MaxPool2d(2),    # 16x16
            *block(w1, w2), nn.MaxPool2d(2),    # 8x8
            *block(w2, w3), nn.MaxPool2d(2),    # 4x4
            *block(w3, w4),
            nn.AdaptiveAvgPool2d(1))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w4, n_classes)

    def forward(self, x):
        return self.head(self.dropout(torch.flatten(self.features(x), 1)))


def augment(x):
    """A random element of the dihedral group per stamp: morphology has no orientation."""
    code = torch.randint(0, 8, (len(x),))
    out = x.clone()
    for c in range(8):
        m = code == c
        if not bool(m.any()):
            continue
        v = x[m]
        if c >= 4:
            v = torch.flip(v, dims=[3])
        out[m] = torch.rot90(v, c % 4, dims=[2, 3]) if c % 4 else v
    return out


def logits_of(model, x, batch=512):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="folder from simulate cutouts (train seed)")
    ap.add_argument("--val", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--seed", type=int, default=42, help="torch seed (init, shuffling, dropout)")
    ap.add_argument("--data-seeds", default="", help="train,val,test simulator seeds, recorded")
    ap.add_argument("--limit-train", type=int, default=0, help="use only the first N train stamps")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--patience", type=int, default=4,
                    help="stop after this many half-epoch checks without a better validation")
    ap.add_argument("--max-train-s", type=float, default=1080.0,
                    help="seconds for the training loop; the cosine schedule ends by then")
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--widths", default=",".join(str(w) for w in WIDTHS),
                    help="channels of the five conv blocks")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", default="models/classify/train.sh")
    ap.add_argument("--version", default="1.0.0", help="the card's version")
    a = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)

    raw_tr, y_tr, _, rows_tr = load_cutout_set(a.train)
    # The training PSFs in arcsec: the card's input.psf_fwhm_arcsec, classify's psf_match target.
    psf_tr = [float(r["PSF_FWHM"]) * PIXEL_SCALE for r in rows_tr]
    psf_range = [round(min(psf_tr), 3), round(max(psf_tr), 3)]
    if a.limit_train:
        raw_tr, y_tr = raw_tr[:a.limit_train], y_tr[:a.limit_train]
    raw_va, y_va, _, _ = load_cutout_set(a.val)
    x_tr = normalise_batch(raw_tr, NORM)
    x_va = normalise_batch(raw_va, NORM)
    print(f"train {len(x_tr)}  val {len(x_va)}  ({time.time() - t0:.0f} s to load)", flush=True)

    model = MorphologyNet(widths=tuple(int(v) for v in a.widths.split(",")))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    steps_per_epoch = (len(x_tr) + a.batch - 1) // a.batch
    planned = a.epochs * steps_per_epoch
    check_every = max(1, steps_per_epoch // 2)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)

    best = (-1.0, None, 0.0)
    history = []
    step = 0
    checks_since_best = 0
    t_loop = time.time()
    progress = 0.0
    stop = False
    while not stop:
        model.train()
        perm = torch.randperm(len(xt))
        total, seen = 0.0, 0
        for i in range(0, len(perm), a.batch):
            progress = max(step / planned, (time.time() - t_loop) / a.max_train_s)
            if progress >= 1.0:
                stop = True
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup_steps) * 0.5 * (1 + math.cos(math.pi * progress))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[i:i + a.batch]
            opt.zero_grad()
            loss = loss_fn(model(augment(xt[idx])), yt[idx])
            loss.backward()
            opt.step()
            step += 1
            total += loss.item() * len(idx)
            seen += len(idx)
            if step % check_every == 0 or step >= planned:
                val_acc = float((logits_of(model, x_va).argmax(1) == y_va).mean())
                epoch = step / steps_per_epoch
                history.append({"epoch": round(epoch, 3), "step": step,
                                "train_loss": total / max(1, seen), "val_accuracy": val_acc,
                                "lr": lr})
                print(f"epoch {epoch:.2f}: loss {total / max(1, seen):.4f}  val acc {val_acc:.4f}  "
                      f"lr {lr:.2e}  ({time.time() - t0:.0f} s)", flush=True)
                model.train()
                if val_acc > best[0]:
                    best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()},
                            round(epoch, 3))
                    checks_since_best = 0
                else:
                    checks_since_best += 1
                    if checks_since_best >= a.patience:
                        stop = True
                        break
        if step >= planned:
            stop = True
    if best[1] is None:
        raise SystemExit("no validation check ran: raise --max-train-s")
    model.load_state_dict(best[1])
    model.eval()

    val_logits = logits_of(model, x_va)
    temperature = fit_temperature(val_logits, y_va)
    # The decision rule, also on the validation set: offsets of the three galaxy classes' logits
    # (the ones they confuse) that maximise the smallest per-class recall.
    bias, val_min_recall, val_bias_accuracy = fit_decision_bias(
        val_logits, y_va, temperature, classes=GALAXY_CLASSES)
    training_time_s = time.time() - t0

    # Model, temperature and bias are now fixed; only now is the test set read.
    raw_te, y_te, snr_te, _ = load_cutout_set(a.test)
    x_te = normalise_batch(raw_te, NORM)
    test_logits = logits_of(model, x_te)
    report = classification_report(softmax(test_logits, temperature, bias), y_te, snr_te,
                                   CLASS_NAMES)
    report_nobias = classification_report(softmax(test_logits, temperature), y_te, snr_te,
                                          CLASS_NAMES)
    report_uncal = classification_report(softmax(test_logits, 1.0), y_te, snr_te, CLASS_NAMES)
    print(f"test accuracy {report['accuracy']:.4f}  ECE {report['ece']:.4f} "
          f"(without bias {report_nobias['accuracy']:.4f}; uncalibrated ECE "
          f"{report_uncal['ece']:.4f})  T = {temperature:.3f}  bias {bias.tolist()}", flush=True)

    os.makedirs(a.out, exist_ok=True)
    onnx_path = os.path.join(a.out, "model.onnx")
    export_onnx(model, onnx_path, 1, SIZE, SIZE)

    # Reference pair: the first test stamps, one with its top rows blanked (edge padding).
    raw_ref = raw_te[:8].copy()
    raw_ref[1, :10, :] = np.nan
    x_ref = normalise_batch(raw_ref, NORM)
    with torch.no_grad():
        y_ref = model(torch.from_numpy(x_ref)).numpy()
    write_reference(a.out, raw_ref, x_ref, y_ref)

    seeds = [int(s) for s in a.data_seeds.split(",")] if a.data_seeds else []
    metrics = {
        "test": report,
        "test_uncalibrated": {k: report_uncal[k] for k in ("accuracy", "ece")},
        "test_without_bias": {k: report_nobias[k] for k in ("accuracy", "ece", "recall")},
        "validation": {"accuracy": best[0], "best_epoch": best[2], "temperature": temperature,
                       "logit_bias": bias.tolist(), "min_recall_with_bias": val_min_recall,
                       "accuracy_with_bias": val_bias_accuracy},
        "history": history,
        "parameters": n_params,
        "training_time_s": training_time_s,
        "data_seeds": dict(zip(["train", "val", "test"], seeds)),
        "torch_seed": a.seed,
        "sizes": {"train": len(x_tr), "val": len(x_va), "test": len(x_te)},
    }
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")

    test_metrics = {"count": report["count"], "accuracy": round(report["accuracy"], 5),
                    "ece": round(report["ece"], 5)}
    for c in CLASS_NAMES:
        test_metrics[f"recall_{c}"] = round(report["recall"][c], 5)
    card = {
        "name": "classify",
        "task": "classification",
        "version": a.version,
        "file": "model.onnx",
        "sha256": sha256_file(onnx_path),
        "opset": OPSET,
        "input": {"shape": [-1, 1, SIZE, SIZE], "bands": ["any"],
                  "pixel_scale_arcsec": PIXEL_SCALE, "psf_fwhm_arcsec": psf_range},
        "normalisation": NORM,
        "output": {"semantics": "logits", "class_names": CLASS_NAMES,
                   "temperature": round(temperature, 6),
                   "logit_bias": [round(float(v), 4) for v in bias]},
        "training": {
            "recipe": a.recipe,
            "seeds": {"train": seeds[0] if seeds else 0, "val": seeds[1] if seeds else 0,
                      "test": seeds[2] if seeds else 0, "torch": a.seed},
            "time_s": round(training_time_s, 1),
            "parameters": n_params,
            "widths": [int(v) for v in a.widths.split(",")],
            "epochs_run": round(step / steps_per_epoch, 3),
            "steps": step,
            "batch": a.batch,
            "max_lr": a.lr,
            "best_epoch": best[2],
            "sizes": {"train": len(x_tr), "val": len(x_va), "test": len(x_te)},
        },
        "test_metrics": test_metrics,
    }
    write_card(os.path.join(a.out, "model.yaml"), card)
    print(f"wrote {a.out}: {n_params} parameters, {training_time_s:.0f} s", flush=True)


if __name__ == "__main__":
    main()
