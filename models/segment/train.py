#!/usr/bin/python3
"""Trains the segmentation U-Net and writes model.onnx, model.yaml, metrics.json and the reference
pair, from simulated fields written by `astroflow simulate field` (train.sh and fields.txt give
the seeds, depths, densities, PSFs and irregular densities).

Input (the same as the `segment` stage computes in C++): x = (image - background) / rms with the
planes of the C++ `background` stage (train.sh runs it on every field), NaN -> 0, then the card's
stretch asinh(x / SCALE).

Targets, from the simulator's truth:
  * class per pixel: <name>.truthclass.fits (0 background, 1 spheroid, 2 disk, 3 irregular,
    4 point_source: the truth class of the truth-segmentation source at that pixel);
  * a normalised inner distance per pixel: the city-block distance to the nearest pixel outside
    the pixel's own truth segment, divided by the largest such distance in that segment (1 at
    the segment's centre, falling to the border; 0 on the background). Between two touching
    sources it dips to its minimum, which is where the stage's marker watershed splits blends.

Network: a 4-level U-Net (12/24/48/96 channels by default, --widths; conv + batch-norm + ReLU pairs, max pooling,
ConvTranspose up-sampling, skip connections) with two 1x1 heads; the exported graph returns one
N x 6 x H x W tensor: 5 class logits, then sigmoid(distance logit).

Early stopping uses the validation fields only; the test fields are read after the model is
fixed, only to report metrics.
"""
import argparse
import json
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
from common.preprocess import normalise_batch  # noqa: E402

TILE = 256      # the exported (card) input size; the stage blends overlapping tiles of this size
OVERLAP = 32    # the stage's default overlap
SCALE = 2.0     # asinh softening, in units of the background rms
CLASSES = ["background", "spheroid", "disk", "irregular", "point_source"]
NORM = {"method": "asinh", "background": "none", "scale": SCALE}


# ------------------------------------------------------------------------------------------
# Data
def read2d(path):
    return read_primary_image(path)[1][0]


def inner_distance(seg):
    """Normalised city-block distance to the nearest pixel of another label (see docstring)."""
    d = np.zeros(seg.shape, dtype=np.float32)
    inside = seg > 0
    cur = inside.copy()
    step = 0
    while cur.any():
        step += 1
        d[cur] = step
        p = np.pad(seg, 1, mode="edge")
        same = ((p[1:-1, :-2] == seg) & (p[1:-1, 2:] == seg) & (p[:-2, 1:-1] == seg) &
                (p[2:, 1:-1] == seg))
        pc = np.pad(cur, 1)
        cur = cur & same & pc[1:-1, :-2] & pc[1:-1, 2:] & pc[:-2, 1:-1] & pc[2:, 1:-1]
    peak = np.zeros(int(seg.max()) + 1, dtype=np.float32)
    np.maximum.at(peak, seg[inside], d[inside])
    out = np.zeros_like(d)
    out[inside] = d[inside] / peak[seg[inside]]
    return out


def stretch(x):
    return np.arcsinh(np.nan_to_num(x, nan=0.0) / SCALE).astype(np.float32)


def load_field(data, split, name):
    img = read2d(os.path.join(data, split, name + ".fits"))
    bkg = read2d(os.path.join(data, "bkg", split, name + ".background.fits"))
    rms = read2d(os.path.join(data, "bkg", split, name + ".rms.fits"))
    ok = np.isfinite(img) & np.isfinite(bkg) & np.isfinite(rms) & (rms > 0)
    norm = np.where(ok, (img - bkg) / np.where(ok, rms, 1.0), 0.0).astype(np.float32)
    cls = read2d(os.path.join(data, split, name + ".truthclass.fits")).astype(np.int64)
    seg = read2d(os.path.join(data, split, name + ".truthseg.fits")).astype(np.int64)
    return {"name": name, "norm": norm, "x": stretch(norm), "cls": cls, "seg": seg}


# ------------------------------------------------------------------------------------------
# Network
def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class SegUNet(nn.Module):
    def __init__(self, w=(16, 32, 64, 128), n_classes=len(CLASSES)):
        super().__init__()
        self.enc = nn.ModuleList([block(1, w[0]), block(w[0], w[1]), block(w[1], w[2])])
        self.mid = block(w[2], w[3])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[3], w[2], 2, stride=2),
                                 nn.ConvTranspose2d(w[2], w[1], 2, stride=2),
                                 nn.ConvTranspose2d(w[1], w[0], 2, stride=2)])
        self.dec = nn.ModuleList([block(2 * w[2], w[2]), block(2 * w[1], w[1]),
                                  block(2 * w[0], w[0])])
        self.cls_head = nn.Conv2d(w[0], n_classes, 1)
        self.dist_head = nn.Conv2d(w[0], 1, 1)

    def features(self, x):
        skips = []
        for e in self.enc:
            x = e(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return x

    def heads(self, x):
        f = self.features(x)
        return self.cls_head(f), self.dist_head(f)

    def forward(self, x):
        logits, dist = self.heads(x)
        return torch.cat([logits, torch.sigmoid(dist)], 1)


def losses(model, x, cls, dist, class_weights):
    logits, d = model.heads(x)
    ce = F.cross_entropy(logits, cls, weight=class_weights)
    fg = (cls > 0).float()
    # The distance head matters inside sources; background pixels get a small weight.
    wd = 0.1 + fg
    bce = (F.binary_cross_entropy_with_logits(d[:, 0], dist, reduction="none") * wd).sum() / wd.sum()
    return ce + bce, ce, bce


# ------------------------------------------------------------------------------------------
# Whole-field prediction: the same tiling and raised-cosine blend as the C++ stage
# (pipeline/include/astroflow/tile_blend.hpp).
def ramp(tile, overlap, low, high):
    w = np.ones(tile)
    t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    if low:
        w[:overlap] = t
    if high:
        w[-overlap:] = t[::-1]
    return w


def tile_starts(n, tile, overlap):
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, max(1, tile - overlap))) + [n - tile]
    return sorted(set(s))


def predict_field(model, x, tile=TILE, overlap=OVERLAP, batch=4):
    h, w = x.shape
    out = np.zeros((6, h, w))
    wsum = np.zeros((h, w))
    tiles = [(r, c) for r in tile_starts(h, tile, overlap) for c in tile_starts(w, tile, overlap)]
    with torch.no_grad():
        for i in range(0, len(tiles), batch):
            chunk = tiles[i:i + batch]
            inp = np.zeros((len(chunk), 1, tile, tile), dtype=np.float32)
            for k, (r, c) in enumerate(chunk):
                p = x[r:r + tile, c:c + tile]
                inp[k, 0, :p.shape[0], :p.shape[1]] = p
            y = model(torch.from_numpy(inp)).numpy()
            y[:, :5] = np.exp(y[:, :5] - y[:, :5].max(1, keepdims=True))
            y[:, :5] /= y[:, :5].sum(1, keepdims=True)
            for k, (r, c) in enumerate(chunk):
                ch, cw = min(tile, h - r), min(tile, w - c)
                wt = np.outer(ramp(tile, overlap, r > 0, r + tile < h),
                              ramp(tile, overlap, c > 0, c + tile < w))[:ch, :cw]
                out[:, r:r + ch, c:c + cw] += y[k, :, :ch, :cw] * wt
                wsum[r:r + ch, c:c + cw] += wt
    return (out / wsum).astype(np.float32)


def pixel_metrics(pred, f):
    """Per-pixel class accuracy on truth-source pixels and on all pixels, foreground IoU,
    and the confusion matrix (rows truth, columns predicted)."""
    lab = pred[:5].argmax(0)
    t = f["cls"]
    fg = t > 0
    conf = np.zeros((5, 5), dtype=np.int64)
    np.add.at(conf, (t.ravel(), lab.ravel()), 1)
    pf = lab > 0
    return {"class_accuracy_source_pixels": float((lab[fg] == t[fg]).mean()),
            "class_accuracy_all_pixels": float((lab == t).mean()),
            "foreground_iou": float((pf & fg).sum() / max(1, (pf | fg).sum())),
            "confusion": conf.tolist()}


def save_cache(path, fields):
    """The network input (float16), the truth classes and the truth segmentation; the distance
    target is derived from the segmentation when the cache is loaded."""
    np.savez_compressed(path, names=np.array([f["name"] for f in fields]),
                        x=np.stack([f["x"] for f in fields]).astype(np.float16),
                        cls=np.stack([f["cls"] for f in fields]).astype(np.uint8),
                        seg=np.stack([f["seg"] for f in fields]).astype(np.int32))


def load_cache(path, device):
    z = np.load(path)
    dist = np.stack([inner_distance(s.astype(np.int64)) for s in z["seg"]])
    return (torch.from_numpy(z["x"].astype(np.float32)).to(device),
            torch.from_numpy(z["cls"].astype(np.int64)).to(device),
            torch.from_numpy(dist).to(device))


def crops(data, n, size, gen):
    """n random size x size crops with random rotation and flip, on the data's device."""
    x, c, d = data
    dev = x.device
    idx = torch.randint(0, x.shape[0], (n,), generator=gen).tolist()
    rs = torch.randint(0, x.shape[1] - size + 1, (n,), generator=gen).tolist()
    cs = torch.randint(0, x.shape[2] - size + 1, (n,), generator=gen).tolist()
    ks = torch.randint(0, 4, (n,), generator=gen).tolist()
    fl = torch.randint(0, 2, (n,), generator=gen).tolist()
    xs, cl, ds = [], [], []
    for i, r, q, k, f in zip(idx, rs, cs, ks, fl):
        parts = [t[i, r:r + size, q:q + size] for t in (x, c, d)]
        parts = [torch.rot90(p, k, (0, 1)) for p in parts]
        if f:
            parts = [torch.flip(p, (1,)) for p in parts]
        xs.append(parts[0])
        cl.append(parts[1])
        ds.append(parts[2])
    return torch.stack(xs)[:, None].to(dev), torch.stack(cl), torch.stack(ds)


def stage_prepare(a, split):
    """FITS fields -> compressed arrays (stretched input, class, quantised distance)."""
    os.makedirs(a.cache, exist_ok=True)
    for s in ("train", "val"):
        t0 = time.time()
        save_cache(os.path.join(a.cache, s + ".npz"), [load_field(a.data, s, n) for n in split[s]])
        print(f"prepared {s}: {len(split[s])} fields ({time.time() - t0:.0f} s)", flush=True)


def stage_fit(a):
    t0 = time.time()
    device = torch.device("cpu")  # the project trains on Debian's CPU torch only
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    train = load_cache(os.path.join(a.cache, "train.npz"), device)
    val = load_cache(os.path.join(a.cache, "val.npz"), device)
    # Class weights ~ 1/sqrt(frequency) over the training pixels, normalised to mean 1.
    counts = torch.bincount(train[1].flatten(), minlength=5).double().cpu().numpy()
    cw = 1.0 / np.sqrt(np.maximum(counts, 1) / counts.sum())
    cw = torch.tensor(cw / cw.mean(), dtype=torch.float32, device=device)
    val_b = crops(val, a.val_patches, a.patch, torch.Generator().manual_seed(a.seed + 1))

    widths = tuple(int(v) for v in a.widths.split(","))
    model = SegUNet(widths).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    best = (float("inf"), None, 0)
    history = []
    train_start = time.time()
    print(f"fit on {device}: {n_params} parameters", flush=True)
    for epoch in range(a.epochs):
        model.train()
        tot = 0.0
        for _ in range(a.steps_per_epoch):
            # Learning rate: cosine from lr to lr/20 over the wall-clock budget (the cores are
            # shared, so the budget is in seconds rather than steps).
            frac = min(1.0, (time.time() - train_start) / a.max_train_s)
            for g in opt.param_groups:
                g["lr"] = a.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
            x, c, d = crops(train, a.batch, a.patch, gen)
            opt.zero_grad()
            loss, _, _ = losses(model, x, c, d, cw)
            loss.backward()
            opt.step()
            tot += loss.item()
        model.eval()
        with torch.no_grad():
            vl, vce, vbce, acc = 0.0, 0.0, 0.0, []
            for i in range(0, a.val_patches, 16):
                vx, vc, vd = (t[i:i + 16] for t in val_b)
                l_, ce_, b_ = losses(model, vx, vc, vd, cw)
                k = len(vx) / a.val_patches
                vl, vce, vbce = vl + float(l_) * k, vce + float(ce_) * k, vbce + float(b_) * k
                acc.append((model.heads(vx)[0].argmax(1) == vc)[vc > 0].float().cpu())
            acc = float(torch.cat(acc).mean())
        history.append({"epoch": epoch + 1, "train_loss": tot / a.steps_per_epoch,
                        "val_loss": vl, "val_ce": vce, "val_dist_bce": vbce,
                        "val_class_accuracy_source_pixels": acc,
                        "elapsed_s": round(time.time() - t0, 1)})
        print(f"epoch {epoch + 1}: train {tot / a.steps_per_epoch:.4f} val {vl:.4f} "
              f"(ce {vce:.4f} dist {vbce:.4f}) acc {acc:.3f} ({time.time() - t0:.0f} s)",
              flush=True)
        if vl < best[0]:
            best = (vl, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    epoch + 1)
        elif epoch + 1 - best[2] >= a.patience:
            break
        if time.time() - train_start > a.max_train_s:
            break
    os.makedirs(a.cache, exist_ok=True)
    np.savez(os.path.join(a.cache, "weights.npz"), **{k: v.numpy() for k, v in best[1].items()})
    with open(os.path.join(a.cache, "fit.json"), "w") as fh:
        json.dump({"device": str(device), "torch": torch.__version__, "parameters": n_params,
                   "widths": list(widths), "threads": a.threads,
                   "fit_time_s": round(time.time() - t0, 1), "epochs_run": len(history),
                   "best_epoch": best[2], "class_weights": [round(float(v), 4) for v in cw],
                   "patch_pix": a.patch, "batch": a.batch, "steps_per_epoch": a.steps_per_epoch,
                   "history": history}, fh, indent=1)
    print(f"fit done: best epoch {best[2]} ({time.time() - t0:.0f} s)", flush=True)


def stage_finish(a, rows, split):
    """Test metrics (fields read only now), ONNX export, reference pair, card, metrics.json."""
    t0 = time.time()
    torch.set_num_threads(a.threads)
    fit = json.load(open(os.path.join(a.cache, "fit.json")))
    z = np.load(os.path.join(a.cache, "weights.npz"))
    model = SegUNet(tuple(fit["widths"]))
    model.load_state_dict({k: torch.from_numpy(np.array(z[k])) for k in z.files})
    model.eval()

    test_metrics = {}
    for name in split["test"]:
        f = load_field(a.data, "test", name)
        test_metrics[name] = pixel_metrics(predict_field(model, f["x"]), f)
        print(f"test {name}: " + json.dumps({k: v for k, v in test_metrics[name].items()
                                               if k != "confusion"}), flush=True)

    os.makedirs(a.out, exist_ok=True)
    onnx_path = os.path.join(a.out, "model.onnx")
    export_onnx(model, onnx_path, 1, TILE, TILE, dynamic_hw=True)

    # Reference pair: one TILE x TILE crop of a validation field (normalised units, with a
    # blank corner), the stretched network input and torch's output.
    f = load_field(a.data, "val", split["val"][0])
    raw = f["norm"][:TILE, :TILE].copy()[None]
    raw[0, :20, :30] = np.nan
    net_input = normalise_batch(raw, NORM)
    with torch.no_grad():
        net_output = model(torch.from_numpy(net_input)).numpy()
    write_reference(a.out, raw, net_input, net_output)

    seeds = {r[1]: int(r[2]) for r in rows}
    mean = lambda k: round(float(np.mean([m[k] for m in test_metrics.values()])), 4)
    card = {
        "name": "segment", "task": "segmentation", "version": "1.0.0", "file": "model.onnx",
        "sha256": sha256_file(onnx_path), "opset": OPSET,
        # Fully convolutional (three 2x poolings, ConvTranspose back up, skips): any H and W that
        # are multiples of 8 (tests/unit/model_reference_test.cpp checks it in OpenCV).
        "input": {"shape": [-1, 1, TILE, TILE], "bands": ["any"], "pixel_scale_arcsec": 0.06,
                  "size_multiple": 8},
        # The stage first normalises with the `background` stage's planes, x = (image -
        # background) / rms; the card's own estimator is therefore "none" and the card's
        # stretch is asinh(x / scale).
        "normalisation": NORM,
        "output": {"semantics": "mask", "class_names": CLASSES,
                   "channels": CLASSES + ["inner_distance"],
                   "layout": "N x 6 x H x W: 5 class logits, then sigmoid inner distance"},
        "training": {"recipe": a.recipe, "seeds": dict(seeds, torch=a.seed),
                     "time_s": fit["fit_time_s"], "device": fit["device"],
                     "torch": fit["torch"], "threads": fit["threads"],
                     "parameters": fit["parameters"], "widths": fit["widths"],
                     "epochs_run": fit["epochs_run"], "best_epoch": fit["best_epoch"],
                     "patch_pix": fit["patch_pix"], "batch": fit["batch"],
                     "steps_per_epoch": fit["steps_per_epoch"],
                     "class_weights": fit["class_weights"]},
        "test_metrics": {"class_accuracy_source_pixels": mean("class_accuracy_source_pixels"),
                         "class_accuracy_all_pixels": mean("class_accuracy_all_pixels"),
                         "foreground_iou": mean("foreground_iou")},
    }
    write_card(os.path.join(a.out, "model.yaml"), card)
    with open(os.path.join(a.out, "metrics.json"), "w") as fh:
        json.dump({"python_test_fields": test_metrics, "fit": fit}, fh, indent=1)
        fh.write("\n")
    print(f"wrote {onnx_path} ({time.time() - t0:.0f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=["prepare", "fit", "finish", "all"], default="all")
    ap.add_argument("--data", default="", help="folder with train/ val/ test/ and bkg/")
    ap.add_argument("--cache", required=True, help="prepared arrays, weights and fit log")
    ap.add_argument("--fields", default=os.path.join(HERE, "fields.txt"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--patch", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10000)
    ap.add_argument("--patience", type=int, default=100000,
                    help="epochs without a better validation loss before stopping; the default "
                    "lets the wall-clock budget end the fit")
    ap.add_argument("--max-train-s", type=float, default=400.0)
    ap.add_argument("--val-patches", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="12,24,48,96",
                    help="channels of the four U-Net levels (comma-separated)")
    ap.add_argument("--recipe", default="models/segment/train.sh")
    a = ap.parse_args()
    rows = [ln.split() for ln in open(a.fields) if ln.strip() and not ln.startswith("#")]
    split = {s: [r[1] for r in rows if r[0] == s] for s in ("train", "val", "test")}
    if a.stage in ("prepare", "all"):
        stage_prepare(a, split)
    if a.stage in ("fit", "all"):
        stage_fit(a)
    if a.stage in ("finish", "all"):
        stage_finish(a, rows, split)


if __name__ == "__main__":
    main()
