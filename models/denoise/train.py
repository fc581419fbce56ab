#!/usr/bin/python3
"""Trains the denoising U-Net and writes model.onnx, model.yaml, metrics.json and the reference
pair, from simulated 1024x1024 fields written by `astroflow simulate field` (see train.sh and
fields.txt for the seeds, depths, densities and PSFs).

Normalisation (the same as the `denoise` stage applies in C++): y = (x - background) / rms, with
background and rms maps from a SExtractor-like mesh estimate (64 px meshes, 3-sigma clipped,
mode = 2.5 median - 1.5 mean, 3x3 median filter of the mesh grid, bilinear interpolation). At
inference the `background` stage supplies the maps; its recipe is the same up to the
interpolation kernel (bicubic there), a difference far below the noise for a smooth sky.

Network: a 3-level U-Net (16/32/64 channels, ReLU, max pooling, ConvTranspose upsampling, skip
connections) that predicts the negative noise, so output = input + net(input): the clean image
in normalised units. Loss: Huber (delta 1 sigma) so that bright-star pixels, whose Poisson noise
is many background sigmas, do not dominate, plus a local-flux term (see objective) so that faint
sources keep their flux. The checkpoint kept is the one with the lowest validation loss.

Targets:
  --target truth  the noiseless <name>.model.fits divided by rms (the background of the clean
                  image is zero after subtraction);
  --target n2n    Noise2Noise: a second noisy realisation of the same scene (simulate
                  --noise-seed), normalised with the input's background and rms.

Early stopping and all choices use the validation fields; the test fields are read only after
the model is fixed, and only to report metrics.
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
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from common.card import sha256_file, write_card, write_raw  # noqa: E402
from common.export import OPSET  # noqa: E402
from common.fits_cube import read_primary_image  # noqa: E402

TILE = 256  # the exported input size; the stage blends overlapping tiles of this size
MESH = 64


# ------------------------------------------------------------------------------------------
# Background and rms maps (SExtractor-like mesh estimate)
def clipped_mode_std(v):
    v = v[np.isfinite(v)].astype(np.float64)
    if v.size < 8:
        return np.nan, np.nan
    for _ in range(100):
        med, std = np.median(v), v.std()
        keep = np.abs(v - med) <= 3.0 * std
        if keep.all() or keep.sum() < 8:
            break
        v = v[keep]
    med, mean, std = np.median(v), v.mean(), v.std()
    mode = med if std > 0 and abs(mean - med) / std > 0.3 else 2.5 * med - 1.5 * mean
    return mode, std


def median3(grid):
    p = np.pad(grid, 1, mode="edge")
    stack = [p[i:i + grid.shape[0], j:j + grid.shape[1]] for i in range(3) for j in range(3)]
    return np.median(np.stack(stack), axis=0)


def upsample(grid, h, w):
    """Bilinear through mesh centres (i + 0.5) * MESH - 0.5, linear extrapolation at edges."""
    cy = (np.arange(grid.shape[0]) + 0.5) * MESH - 0.5
    cx = (np.arange(grid.shape[1]) + 0.5) * MESH - 0.5
    y, x = np.arange(h), np.arange(w)

    def interp1(c, g, t, axis):
        i = np.clip(np.searchsorted(c, t) - 1, 0, len(c) - 2)
        f = (t - c[i]) / (c[i + 1] - c[i])
        a, b = np.take(g, i, axis=axis), np.take(g, i + 1, axis=axis)
        shape = [1, 1]
        shape[axis] = len(t)
        return a + (b - a) * f.reshape(shape)

    return interp1(cx, interp1(cy, grid, y, 0), x, 1).astype(np.float32)


def background_maps(img):
    h, w = img.shape
    ny, nx = (h + MESH - 1) // MESH, (w + MESH - 1) // MESH
    bk, sd = np.zeros((ny, nx)), np.zeros((ny, nx))
    for j in range(ny):
        for i in range(nx):
            bk[j, i], sd[j, i] = clipped_mode_std(img[j * MESH:(j + 1) * MESH,
                                                      i * MESH:(i + 1) * MESH])
    return upsample(median3(bk), h, w), upsample(median3(sd), h, w)


def load_field(folder, name, target, n2n_folder=None):
    _, img = read_primary_image(os.path.join(folder, name + ".fits"))
    img = img[0]
    bkg, rms = background_maps(img)
    x = (img - bkg) / rms
    if target == "truth":
        _, model = read_primary_image(os.path.join(folder, name + ".model.fits"))
        y = model[0] / rms
    else:
        _, img2 = read_primary_image(os.path.join(n2n_folder, name + ".fits"))
        y = (img2[0] - bkg) / rms
    return x.astype(np.float32), y.astype(np.float32)


# ------------------------------------------------------------------------------------------
def conv2(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, w=(16, 32, 64)):
        super().__init__()
        self.e1, self.e2, self.b = conv2(1, w[0]), conv2(w[0], w[1]), conv2(w[1], w[2])
        self.u2 = nn.ConvTranspose2d(w[2], w[1], 2, stride=2)
        self.d2 = conv2(2 * w[1], w[1])
        self.u1 = nn.ConvTranspose2d(w[1], w[0], 2, stride=2)
        self.d1 = conv2(2 * w[0], w[0])
        self.out = nn.Conv2d(w[0], 1, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(F.max_pool2d(e1, 2))
        b = self.b(F.max_pool2d(e2, 2))
        d2 = self.d2(torch.cat([self.u2(b), e2], 1))
        d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
        return x + self.out(d1)


def random_patches(fields, n, size, rng):
    xs, ys = [], []
    for _ in range(n):
        x, y = fields[rng.integers(len(fields))]
        r, c = rng.integers(0, x.shape[0] - size), rng.integers(0, x.shape[1] - size)
        px, py = x[r:r + size, c:c + size], y[r:r + size, c:c + size]
        k = rng.integers(4)
        px, py = np.rot90(px, k), np.rot90(py, k)
        if rng.integers(2):
            px, py = px[:, ::-1], py[:, ::-1]
        xs.append(px.copy())
        ys.append(py.copy())
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None])


def predict_field(model, x, tile=TILE, overlap=32):
    """Same tiling and raised-cosine blending as the C++ stage (plugins/denoise)."""
    h, w = x.shape
    step = tile - overlap
    out = np.zeros_like(x, dtype=np.float64)
    wsum = np.zeros_like(out)
    ramp = np.ones(tile)
    t = (np.arange(overlap) + 0.5) / overlap
    ramp[:overlap] = 0.5 - 0.5 * np.cos(np.pi * t)
    ramp[-overlap:] = ramp[:overlap][::-1]
    starts = lambda n: sorted(set(list(range(0, max(n - tile, 0) + 1, step)) + [max(n - tile, 0)]))
    with torch.no_grad():
        for r in starts(h):
            for c in starts(w):
                p = torch.from_numpy(np.ascontiguousarray(x[r:r + tile, c:c + tile]))[None, None]
                wy = ramp.copy()
                wx = ramp.copy()
                if r == 0:
                    wy[:overlap] = 1
                if r + tile >= h:
                    wy[-overlap:] = 1
                if c == 0:
                    wx[:overlap] = 1
                if c + tile >= w:
                    wx[-overlap:] = 1
                wgt = np.outer(wy, wx)
                out[r:r + tile, c:c + tile] += model(p)[0, 0].numpy() * wgt
                wsum[r:r + tile, c:c + tile] += wgt
    return (out / wsum).astype(np.float32)


def field_metrics(model, fields):
    """Per-field noise reduction in normalised units: RMS(pred - y) / RMS(x - y) where the
    target is faint (|y| < 0.5 sigma: background regions). For truth targets this is the
    effective noise reduction; for n2n targets it is only a proxy."""
    ratios = []
    for x, y in fields:
        p = predict_field(model, x)
        bg = np.abs(y) < 0.5
        ratios.append(float(np.sqrt(np.mean((x - y)[bg] ** 2)) /
                            np.sqrt(np.mean((p - y)[bg] ** 2))))
    return ratios


def objective(pred, y, flux_weight):
    """Huber on pixels (delta 1 sigma) plus the mean absolute error of the local flux: the
    residual averaged over 4x4 and 8x8 blocks (half-overlapping). The second term is zero only
    when the model keeps the flux of every small region, which pixel losses alone do not ask for:
    they let the net shrink faint sources towards the background."""
    r = pred - y
    flux = sum(F.avg_pool2d(r, k, stride=k // 2).abs().mean() for k in (4, 8))
    return F.huber_loss(pred, y, delta=1.0) + flux_weight * flux


def patch_loss(model, x, y, flux_weight):
    with torch.no_grad():
        p = torch.cat([model(x[i:i + 8]) for i in range(0, len(x), 8)])
    return float(objective(p, y, flux_weight))


def patch_ratio(model, x, y):
    """RMS(x - y) / RMS(pred - y) over the faint (|y| < 0.5 sigma) pixels of the patches."""
    with torch.no_grad():
        p = torch.cat([model(x[i:i + 8]) for i in range(0, len(x), 8)])
    bg = y.abs() < 0.5
    return float(((x - y)[bg].pow(2).mean() / (p - y)[bg].pow(2).mean()).sqrt())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with train/ val/ test/ fields")
    ap.add_argument("--n2n-data", default="", help="same scenes, other noise seeds")
    ap.add_argument("--target", choices=["truth", "n2n"], default="truth")
    ap.add_argument("--fields", default=os.path.join(HERE, "fields.txt"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps-per-epoch", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--max-minutes", type=float, default=12.0)
    ap.add_argument("--val-patches", type=int, default=64)
    ap.add_argument("--test-crop", type=int, default=512, help="centre crop of each test field")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--flux-weight", type=float, default=1.0,
                    help="weight of the local-flux term of the loss (see objective)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export", action="store_true", help="write model.onnx, card, reference")
    ap.add_argument("--recipe", default="models/denoise/train.sh")
    a = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    rows = [ln.split() for ln in open(a.fields) if ln.strip() and not ln.startswith("#")]
    split = {s: [r for r in rows if r[0] == s] for s in ("train", "val", "test")}

    def load(s, target):
        return [load_field(os.path.join(a.data, s), r[1], target,
                           os.path.join(a.n2n_data, s) if a.n2n_data else None) for r in split[s]]

    train = load("train", a.target)
    val = load("val", "truth")  # early stopping on the noiseless truth for both variants
    print(f"loaded {len(train)} train, {len(val)} val fields ({time.time() - t0:.0f} s)",
          flush=True)

    # Fixed validation patches (CPU time: whole fields cost minutes per epoch on shared cores).
    val_x, val_y = random_patches(val, a.val_patches, 128, np.random.default_rng(a.seed + 1))
    model = UNet()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    total_steps, step = a.epochs * a.steps_per_epoch, 0
    best, history = (math.inf, None, 0, 0.0), []
    for epoch in range(a.epochs):
        model.train()
        total = 0.0
        for _ in range(a.steps_per_epoch):
            x, y = random_patches(train, a.batch, a.patch, rng)
            opt.zero_grad()
            loss = objective(model(x), y, a.flux_weight)
            loss.backward()
            opt.step()
            step += 1
            # Cosine decay over steps or wall-clock time, whichever runs out first, so a run
            # cut by --max-minutes still ends annealed.
            progress = min(1.0, max(step / total_steps, (time.time() - t0) / (a.max_minutes * 60)))
            for g in opt.param_groups:
                g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * progress))
            total += loss.item()
        model.eval()
        val_ratio = patch_ratio(model, val_x, val_y)
        val_loss = patch_loss(model, val_x, val_y, a.flux_weight)
        history.append({"epoch": epoch + 1, "train_loss": total / a.steps_per_epoch,
                        "val_loss": val_loss, "val_noise_reduction": val_ratio})
        print(f"epoch {epoch + 1}: loss {total / a.steps_per_epoch:.4f}  val loss {val_loss:.4f}  "
              f"val noise reduction {val_ratio:.3f}x  ({time.time() - t0:.0f} s)", flush=True)
        # Selection on the training objective (pixels + local flux), not on background noise
        # alone: the noise-only criterion favours over-smoothed models that lose faint flux.
        if val_loss < best[0]:
            best = (val_loss, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1,
                    val_ratio)
        elif epoch + 1 - best[2] >= a.patience:
            break
        if time.time() - t0 > a.max_minutes * 60 or step >= total_steps:
            break
    model.load_state_dict(best[1])
    model.eval()
    training_time_s = time.time() - t0

    # The model is fixed; only now are the test fields read.
    test = load("test", "truth")
    c0 = lambda f: (f.shape[0] - a.test_crop) // 2
    test = [(x[c0(x):c0(x) + a.test_crop, c0(x):c0(x) + a.test_crop],
             y[c0(y):c0(y) + a.test_crop, c0(y):c0(y) + a.test_crop]) for x, y in test]
    test_ratios = field_metrics(model, test)
    print(f"test noise reduction per field: {[round(r, 3) for r in test_ratios]}", flush=True)
    tag = a.target
    os.makedirs(a.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(a.out, f"weights_{tag}.pt"))
    summary = {"target": tag, "parameters": n_params, "training_time_s": round(training_time_s, 1),
               "epochs_run": len(history), "best_epoch": best[2],
               "val_loss": round(best[0], 5), "val_noise_reduction": round(best[3], 4),
               "flux_weight": a.flux_weight,
               "test_noise_reduction_per_field": [round(r, 4) for r in test_ratios],
               "history": history}
    with open(os.path.join(a.out, f"train_{tag}.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if not a.export:
        return

    onnx_path = os.path.join(a.out, "model.onnx")
    dummy = torch.zeros(2, 1, TILE, TILE)
    torch.onnx.export(model, dummy, onnx_path, opset_version=OPSET, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      do_constant_folding=True)
    # Reference pair: one 256x256 tile of the first test field, normalised as in the stage.
    x_ref = np.ascontiguousarray(test[0][0][128:128 + TILE, 128:128 + TILE])[None, None]
    with torch.no_grad():
        y_ref = model(torch.from_numpy(x_ref)).numpy()
    ref = {"input": write_raw(a.out, "reference_input", x_ref),
           "output": write_raw(a.out, "reference_output", y_ref),
           "tolerance": 1e-4}
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
    seeds = {r[1]: int(r[2]) for r in rows}
    card = {
        "name": "denoise", "task": "denoising", "version": "1.0.0", "file": "model.onnx",
        "sha256": sha256_file(onnx_path), "opset": OPSET,
        "input": {"shape": [-1, 1, TILE, TILE], "bands": ["any"], "pixel_scale_arcsec": 0.06},
        # The stage normalises with the `background` stage's maps: y = (x - background) / rms.
        # The card's own estimator is therefore "none" (the network input is already
        # normalised when it reaches OnnxModel).
        "normalisation": {"method": "linear", "background": "none", "scale": 1.0},
        "output": {"semantics": "image"},
        "training": {"recipe": a.recipe, "target": tag,
                     "seeds": dict(seeds, torch=a.seed),
                     "time_s": round(training_time_s, 1), "parameters": n_params,
                     "epochs_run": len(history), "best_epoch": best[2],
                     "patch_pix": a.patch, "batch": a.batch,
                     "steps_per_epoch": a.steps_per_epoch, "flux_weight": a.flux_weight},
        "test_metrics": {"noise_reduction_mean": round(float(np.mean(test_ratios)), 4)},
    }
    write_card(os.path.join(a.out, "model.yaml"), card)
    print(f"wrote {onnx_path} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
