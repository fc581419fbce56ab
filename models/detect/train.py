#!/usr/bin/python3
"""Trains the CenterNet-style detector and writes model.onnx, model.yaml, metrics.json and the
reference pair, from simulated fields (`astroflow simulate field`, see train.sh and fields.txt
for the seeds, depths, densities and PSFs) and the C++ `background` stage's planes.

Normalisation (the same as the `detect` stage applies in C++): t = (x - background) / rms with
the `background` stage's planes "background" and "rms" (NaN pixels -> 0), then
y = asinh(t / SCALE). The card says method asinh, background none, scale SCALE: the stage does
the plane division first, and the card's asinh is applied to t.

Network: fully convolutional, input 1 x H x W (H, W multiples of 16), output 6 x H/2 x W/2:
  channels 0, 1  heatmaps (sigmoid) of the classes star, galaxy: a Gaussian peak at each source
                 centre; trained with CenterNet's penalty-reduced focal loss;
  channels 2, 3  log of the half extents (px) of the source's box along x and y;
  channels 4, 5  sub-cell offset of the centre in [0, 1): with 0-based pixel position p, the cell
                 is i = floor((p + 0.5) / 2) and the offset (p + 0.5) / 2 - i.
Blocks: conv + batch-norm + ReLU, strided convolutions down to 1/16, nearest up-sampling with
additive skips back to 1/2. Sources with truth S/N >= POS_SNR are positives; fainter ones with
S/N >= IGNORE_SNR are neither positive nor penalised (their neighbourhood is masked out of the
loss) so the net is not taught to call a 2-sigma blob noise.

The checkpoint kept is the one with the highest validation completeness (truth S/N >= 5, matched
within 2 px) at its operating point, the lowest score threshold whose validation purity is
>= 97% (the stage's target); the test fields are read once, after that choice, only for metrics.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from common.card import sha256_file, write_card, write_reference  # noqa: E402
from common.export import OPSET, export_onnx  # noqa: E402
from common.fits_cube import read_primary_image  # noqa: E402

TILE = 256  # the exported input size; the stage runs overlapping tiles of this size
STRIDE = 2  # output cell size in input pixels
SCALE = 1.0  # asinh softening in rms units
CLASSES = ["star", "galaxy"]
POS_SNR = 3.0
IGNORE_SNR = 1.5
BOX_K = 2.0  # box half extent = BOX_K x the source's profile radius (r_eff or PSF FWHM / 2)
CROP = 192
MULTIPLE = 16  # four stride-2 stages: H and W must be multiples of 16
BRIGHT_SNR = 50.0  # crops centred near such sources with probability BRIGHT_CROP_P
BRIGHT_CROP_P = 0.3
TORCH_SEED = 42
THRESHOLDS = (0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
PURITY = 0.97  # the operating point: the lowest threshold with validation purity >= PURITY


# ------------------------------------------------------------------------------------------
# Network
def cbr(cin, cout, k=3, s=1, d=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=d * (k // 2), dilation=d, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterNet(nn.Module):
    def __init__(self, c1=12, c2=24, c3=48, c4=64):
        super().__init__()
        self.stem = cbr(1, c1, k=5, s=2)          # 1/2
        self.down2 = cbr(c1, c2, s=2)             # 1/4
        self.mid2 = cbr(c2, c2)
        self.down3 = cbr(c2, c3, s=2)             # 1/8
        self.mid3 = cbr(c3, c3, d=2)
        self.down4 = cbr(c3, c4, s=2)             # 1/16: context for galaxies of r_eff ~15 px
        self.mid4 = cbr(c4, c4, d=2)
        self.lat4 = cbr(c4, c3, k=1)
        self.lat3 = cbr(c3, c2, k=1)
        self.up2 = cbr(c2, c2)
        self.lat2 = cbr(c2, c1, k=1)
        self.up1 = cbr(c1, c1)
        self.head = nn.Conv2d(c1, 6, 1)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[0:2].fill_(-4.0)  # CenterNet's prior: heatmaps start near 0.02

    def forward(self, x):
        s1 = self.stem(x)
        s2 = self.mid2(self.down2(s1))
        s3 = self.mid3(self.down3(s2))
        s4 = self.mid4(self.down4(s3))
        u3 = F.interpolate(self.lat4(s4), scale_factor=2.0, mode="nearest") + s3
        u2 = self.up2(F.interpolate(self.lat3(u3), scale_factor=2.0, mode="nearest") + s2)
        u1 = self.up1(F.interpolate(self.lat2(u2), scale_factor=2.0, mode="nearest") + s1)
        o = self.head(u1)
        return torch.cat([torch.sigmoid(o[:, 0:2]), o[:, 2:6]], dim=1)


# ------------------------------------------------------------------------------------------
# Data
def read_fits(path):
    header, data = read_primary_image(path)
    return header, data.reshape(data.shape[-2:]).astype(np.float32)


def load_field(data_dir, split, name):
    header, img = read_fits(os.path.join(data_dir, split, name + ".fits"))
    _, bkg = read_fits(os.path.join(data_dir, "bkg", split, name + ".background.fits"))
    _, rms = read_fits(os.path.join(data_dir, "bkg", split, name + ".rms.fits"))
    ok = np.isfinite(img) & np.isfinite(bkg) & np.isfinite(rms) & (rms > 0)
    t = np.where(ok, (img - bkg) / np.where(ok, rms, 1.0), 0.0).astype(np.float32)
    fwhm = float(header.get("PSFFWHM", 3.0))
    with open(os.path.join(data_dir, split, name + ".truth.csv")) as f:
        truth = list(csv.DictReader(f))
    return t, fwhm, truth


def normalise(t):
    return np.arcsinh(t / SCALE).astype(np.float32)


def source_radius(row, fwhm):
    """Profile radius (px) whose BOX_K multiple is the box half extent; (a, b, theta_rad)."""
    if row["TYPE"] == "star" or not math.isfinite(float(row["R_EFF"])):
        r = 0.5 * fwhm
        return r, r, 0.0
    reff = float(row["R_EFF"])
    q = float(row["AXIS_RATIO"])
    a = math.hypot(reff, 0.5 * fwhm)
    b = math.hypot(reff * q, 0.5 * fwhm)
    return a, b, math.radians(float(row["THETA"]))


def make_targets(shape, fwhm, truth):
    """Half-resolution target maps: heat (2), size (2), offset (2), pos mask, loss weight."""
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    heat = np.zeros((2, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    off = np.zeros((2, h, w), np.float32)
    pos = np.zeros((h, w), np.float32)
    weight = np.ones((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for row in truth:
        snr = float(row["SNR"])
        if snr < IGNORE_SNR:
            continue
        px = float(row["X_IMAGE"]) - 1.0
        py = float(row["Y_IMAGE"]) - 1.0
        cx = (px + 0.5) / STRIDE
        cy = (py + 0.5) / STRIDE
        ix, iy = int(math.floor(cx)), int(math.floor(cy))
        if not (0 <= ix < w and 0 <= iy < h):
            continue
        if snr < POS_SNR:
            weight[max(0, iy - 2):iy + 3, max(0, ix - 2):ix + 3] = 0.0
            continue
        a, b, th = source_radius(row, fwhm)
        c, s = math.cos(th), math.sin(th)
        hx = BOX_K * math.sqrt(a * a * c * c + b * b * s * s)
        hy = BOX_K * math.sqrt(a * a * s * s + b * b * c * c)
        sigma = float(np.clip(0.25 * b / STRIDE + 0.5, 0.7, 2.5))
        k = 0 if row["TYPE"] == "star" else 1
        r = int(math.ceil(3 * sigma))
        y0, y1, x0, x1 = max(0, iy - r), min(h, iy + r + 1), max(0, ix - r), min(w, ix + r + 1)
        g = np.exp(-((xx[y0:y1, x0:x1] - ix) ** 2 + (yy[y0:y1, x0:x1] - iy) ** 2) /
                   (2 * sigma * sigma))
        heat[k, y0:y1, x0:x1] = np.maximum(heat[k, y0:y1, x0:x1], g)
        # The brighter source keeps a shared cell.
        if pos[iy, ix] == 0 or snr > pos[iy, ix]:
            pos[iy, ix] = snr
            size[:, iy, ix] = (math.log(hx), math.log(hy))
            off[:, iy, ix] = (cx - ix, cy - iy)
    weight[pos > 0] = 1.0
    return np.concatenate([heat, size, off, (pos > 0)[None].astype(np.float32), weight[None]])


def augment(x, tgt, rng):
    """One of the 8 dihedral transforms, applied to input (1,H,W) and targets (8,h,w)."""
    x, tgt = x.copy(), tgt.copy()
    if rng.random() < 0.5:  # transpose: swap x and y channels
        x = x.transpose(0, 2, 1)
        tgt = tgt.transpose(0, 2, 1)[[0, 1, 3, 2, 5, 4, 6, 7]]
    for axis, ch in ((2, 4), (1, 5)):  # flip along x (offset channel 4) and y (5)
        if rng.random() < 0.5:
            x = np.flip(x, axis)
            tgt = np.flip(tgt, axis)
            tgt[ch] = np.where(tgt[6] > 0, 1.0 - tgt[ch], 0.0)
    return np.ascontiguousarray(x), np.ascontiguousarray(tgt)


# ------------------------------------------------------------------------------------------
# Loss and decoding
def centernet_loss(out, tgt):
    p = out[:, 0:2].clamp(1e-4, 1 - 1e-4)
    heat = tgt[:, 0:2]
    weight = tgt[:, 7:8]
    posk = (heat >= 0.999).float()
    n_pos = posk.sum().clamp(min=1.0)
    pos_l = -(torch.log(p) * (1 - p) ** 2 * posk)
    neg_l = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - posk) * weight)
    focal = (pos_l.sum() + neg_l.sum()) / n_pos
    m = tgt[:, 6:7]
    n_m = m.sum().clamp(min=1.0)
    size_l = (torch.abs(out[:, 2:4] - tgt[:, 2:4]) * m).sum() / n_m
    off_l = (torch.abs(out[:, 4:6] - tgt[:, 4:6]) * m).sum() / n_m
    return focal + 0.5 * size_l + off_l, focal.item(), size_l.item(), off_l.item()


def decode(out, threshold):
    """Peaks of max(heat) (3x3 local maxima) -> list of (x0, y0, score, p_star, hx, hy) 0-based."""
    heat = out[0:2]
    hmax = heat.max(axis=0)
    t = torch.from_numpy(hmax)[None, None]
    pooled = F.max_pool2d(t, 3, 1, 1)[0, 0].numpy()
    ys, xs = np.nonzero((hmax >= threshold) & (hmax == pooled))
    res = []
    for y, x in zip(ys, xs):
        px = STRIDE * (x + out[4, y, x]) - 0.5
        py = STRIDE * (y + out[5, y, x]) - 0.5
        ps = heat[0, y, x] / max(1e-6, heat[0, y, x] + heat[1, y, x])
        res.append((px, py, hmax[y, x], ps, math.exp(out[2, y, x]), math.exp(out[3, y, x])))
    return res


def run_full(model, t):
    h, w = t.shape
    hp, wp = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
    x = np.zeros((1, 1, hp, wp), np.float32)
    x[0, 0, :h, :w] = normalise(t)
    with torch.no_grad():
        return model(torch.from_numpy(x))[0].numpy()


def match(dets, truth, radius=2.0):
    """Greedy matching by distance. Returns (truth index -> det index, matched det set)."""
    tx = np.array([float(r["X_IMAGE"]) - 1 for r in truth])
    ty = np.array([float(r["Y_IMAGE"]) - 1 for r in truth])
    pairs = []
    for j, d in enumerate(dets):
        dd = np.hypot(tx - d[0], ty - d[1])
        for i in np.nonzero(dd <= radius)[0]:
            pairs.append((dd[i], i, j))
    pairs.sort()
    t2d, used = {}, set()
    for _, i, j in pairs:
        if i in t2d or j in used:
            continue
        t2d[i] = j
        used.add(j)
    return t2d, used


def evaluate(model, fields, thresholds):
    """{threshold: metrics} for each threshold, the network run once per field: completeness by
    magnitude and S/N, purity, star/galaxy accuracy at S/N > 20."""
    model.eval()
    outs = [run_full(model, t) for t, _, _ in fields]
    return {thr: metrics_at(outs, fields, thr) for thr in thresholds}


def metrics_at(outs, fields, threshold):
    mag_edges = [18, 20, 22, 23, 24, 25, 26, 27, 28]
    found = np.zeros(len(mag_edges) - 1)
    total = np.zeros(len(mag_edges) - 1)
    n_det = n_pure = 0
    c5 = n5 = 0
    sg_ok = sg_n = 0
    for out, (_, _, truth) in zip(outs, fields):
        dets = decode(out, threshold)
        t2d, used = match(dets, truth)
        n_det += len(dets)
        n_pure += len(used)
        for i, r in enumerate(truth):
            m = float(r["MAG"])
            snr = float(r["SNR"])
            b = np.searchsorted(mag_edges, m) - 1
            if 0 <= b < len(found):
                total[b] += 1
                found[b] += i in t2d
            if snr >= 5:
                n5 += 1
                c5 += i in t2d
            if snr > 20 and i in t2d:
                sg_n += 1
                sg_ok += (dets[t2d[i]][3] > 0.5) == (r["TYPE"] == "star")
    purity = n_pure / max(1, n_det)
    comp5 = c5 / max(1, n5)
    return {
        "threshold": float(threshold),
        "detections": int(n_det),
        "purity": float(purity),
        "completeness_snr5": float(comp5),
        "f1_snr5": float(2 * purity * comp5 / max(1e-9, purity + comp5)),
        "star_galaxy_accuracy_snr20": float(sg_ok / max(1, sg_n)),
        "mag_edges": mag_edges,
        "completeness_by_mag": [float(f / n) if n else None for f, n in zip(found, total)],
        "truth_by_mag": total.astype(int).tolist(),
    }


def operating_point(by_thr):
    """(threshold, score): the lowest threshold whose purity reaches PURITY; the score is its
    completeness at S/N >= 5, or purity - 1 (< 0) at the highest threshold when none does."""
    for thr in sorted(by_thr):
        if by_thr[thr]["purity"] >= PURITY:
            return thr, by_thr[thr]["completeness_snr5"]
    thr = max(by_thr)
    return thr, by_thr[thr]["purity"] - 1.0


# ------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--fields", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-train-s", type=float, default=2000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--recipe", default="models/detect/train.sh")
    ap.add_argument("--channels", default="12,24,48,64",
                    help="widths at 1/2, 1/4, 1/8 and 1/16 resolution")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(TORCH_SEED)
    rng = np.random.default_rng(TORCH_SEED)
    t_start = time.time()

    splits = {"train": [], "val": [], "test": []}
    seeds = {}
    with open(args.fields) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            split, name, seed = line.split()[:3]
            splits[split].append(name)
            seeds[name] = int(seed)
    train = []
    for name in splits["train"]:
        t, fwhm, truth = load_field(args.data, "train", name)
        bright = [(float(r["X_IMAGE"]) - 1, float(r["Y_IMAGE"]) - 1) for r in truth
                  if float(r["SNR"]) >= BRIGHT_SNR]
        train.append((normalise(t), make_targets(t.shape, fwhm, truth), bright))
    val = [load_field(args.data, "val", n) for n in splits["val"]]
    print(f"loaded {len(train)} train, {len(val)} val fields in {time.time() - t_start:.0f} s",
          flush=True)

    channels = [int(c) for c in args.channels.split(",")]
    model = CenterNet(*channels)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    train_start = time.time()
    best, best_state, best_step, step = -2.0, None, 0, 0
    history = []
    while True:
        elapsed = time.time() - train_start
        if elapsed > args.max_train_s:
            break
        # Cosine decay over the wall-clock budget: the cores are shared, steps/s varies.
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / args.max_train_s)))
        model.train()
        xs, ts = [], []
        for _ in range(args.batch):
            img, tgt, bright = train[rng.integers(len(train))]
            ny, nx = (img.shape[0] - CROP) // STRIDE, (img.shape[1] - CROP) // STRIDE
            if len(bright) and rng.random() < BRIGHT_CROP_P:
                # Bright sources are rare in a field's magnitude distribution: a share of the
                # crops is placed so that one of them lies somewhere in its inner two thirds.
                bx, by = bright[rng.integers(len(bright))]
                y0 = int(np.clip((by - CROP * rng.uniform(1 / 6, 5 / 6)) // STRIDE, 0, ny)) * STRIDE
                x0 = int(np.clip((bx - CROP * rng.uniform(1 / 6, 5 / 6)) // STRIDE, 0, nx)) * STRIDE
            else:
                y0 = int(rng.integers(0, ny + 1)) * STRIDE
                x0 = int(rng.integers(0, nx + 1)) * STRIDE
            x = img[None, y0:y0 + CROP, x0:x0 + CROP]
            tg = tgt[:, y0 // STRIDE:(y0 + CROP) // STRIDE, x0 // STRIDE:(x0 + CROP) // STRIDE]
            x, tg = augment(x, tg, rng)
            xs.append(x)
            ts.append(tg)
        out = model(torch.from_numpy(np.stack(xs)))
        loss, fl, sl, ol = centernet_loss(out, torch.from_numpy(np.stack(ts)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} t={time.time() - train_start:.0f}s loss {loss.item():.3f} "
                  f"(focal {fl:.3f} size {sl:.3f} off {ol:.3f})", flush=True)
        if step % args.eval_every == 0 or time.time() - train_start > args.max_train_s:
            by_thr = evaluate(model, val, THRESHOLDS)
            thr, score = operating_point(by_thr)
            m = by_thr[thr]
            history.append({"step": step, "time_s": round(time.time() - train_start, 1),
                            "score": round(score, 5), **m})
            print(f"  val step {step}: threshold {thr} purity {m['purity']:.3f} "
                  f"completeness(S/N>=5) {m['completeness_snr5']:.3f} "
                  f"S/G {m['star_galaxy_accuracy_snr20']:.3f}", flush=True)
            if score > best:
                best, best_step = score, step
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    train_time = time.time() - train_start
    model.load_state_dict(best_state)
    model.eval()

    # Threshold: the lowest that keeps validation purity >= PURITY (chosen on validation only);
    # tune_threshold.sh refines it with the C++ stage's own centres afterwards.
    val_by_thr = evaluate(model, val, THRESHOLDS)
    threshold, _ = operating_point(val_by_thr)
    print(f"threshold {threshold} (validation purity {val_by_thr[threshold]['purity']:.3f})")

    test = [load_field(args.data, "test", n) for n in splits["test"]]
    test_m = evaluate(model, test, [threshold])[threshold]
    print("test:", json.dumps(test_m), flush=True)

    out = args.out
    os.makedirs(out, exist_ok=True)
    onnx_path = os.path.join(out, "model.onnx")
    export_onnx(model, onnx_path, 1, TILE, TILE)
    # Reference pair: two 256 x 256 tiles of the first test field, t = (x - bkg) / rms.
    t = test[0][0]
    raw = np.stack([t[256:512, 256:512], t[600:856, 100:356]]).astype(np.float32)
    net_in = normalise(raw)[:, None]
    with torch.no_grad():
        net_out = model(torch.from_numpy(net_in)).numpy()
    write_reference(out, raw, net_in, net_out)

    card = {
        "name": "detect",
        "task": "detection",
        "version": "1.0.0",
        "file": "model.onnx",
        "sha256": sha256_file(onnx_path),
        "opset": OPSET,
        # Fully convolutional (downsampling by 16, three 2x upsamplings with skips): any H and
        # W that are multiples of 16 (tests/unit/model_reference_test.cpp checks it in OpenCV).
        "input": {"shape": [-1, 1, TILE, TILE], "bands": ["any"], "pixel_scale_arcsec": 0.06,
                  "size_multiple": MULTIPLE},
        "normalisation": {"method": "asinh", "background": "none", "scale": SCALE},
        # score_threshold: the stage's default `threshold` (chosen on validation, above).
        "output": {"semantics": "heatmap", "class_names": CLASSES, "score_threshold": threshold},
        "training": {
            "recipe": args.recipe,
            "seeds": {**{n: s for n, s in seeds.items()}, "torch": TORCH_SEED},
            "time_s": round(train_time, 1),
            "parameters": n_params,
            "channels": channels,
            "steps": step,
            "best_step": best_step,
            "batch": args.batch,
            "crop_pix": CROP,
            "bright_crop": {"snr": BRIGHT_SNR, "share": BRIGHT_CROP_P},
            "positive_snr": POS_SNR,
            "ignore_snr": IGNORE_SNR,
            "score_threshold": threshold,
        },
        "test_metrics": {
            "purity": round(float(test_m["purity"]), 4),
            "completeness_snr5": round(float(test_m["completeness_snr5"]), 4),
            "star_galaxy_accuracy_snr20": round(float(test_m["star_galaxy_accuracy_snr20"]), 4),
        },
    }
    write_card(os.path.join(out, "model.yaml"), card)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"note": "python decoding of full fields (not the C++ stage); match radius 2 px",
                   "score_threshold": threshold, "test": test_m,
                   "validation_by_threshold": {str(k): v for k, v in val_by_thr.items()},
                   "history": history, "training_time_s": round(train_time, 1),
                   "total_time_s": round(time.time() - t_start, 1)}, f, indent=1)
        f.write("\n")
    print(f"wrote {onnx_path} ({n_params} parameters, {train_time:.0f} s of training)")


if __name__ == "__main__":
    main()
