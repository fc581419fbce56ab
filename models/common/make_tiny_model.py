#!/usr/bin/python3
"""Writes a tiny, untrained classifier (model.onnx + model.yaml + reference pair) to a folder.

Used by tests/unit/onnx_model_test.cpp and model_card_test.cpp as a fixture, so the inference
layer can be tested without a trained model:
    /usr/bin/python3 models/common/make_tiny_model.py OUT_DIR [--size 16] [--seed 0]
Weights are seeded random values; batch-norm statistics are set to non-trivial values so the
folded Conv+BN path is exercised.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common.card import sha256_file, write_card, write_reference  # noqa: E402
from common.export import OPSET, export_onnx  # noqa: E402
from common.preprocess import normalise_batch  # noqa: E402

CLASSES = ["a", "b", "c"]
NORM = {"method": "asinh", "background": "median_clip", "scale": 3.0, "clip_sigma": 3.0,
        "clip_iterations": 5}


class Tiny(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    model = Tiny(len(CLASSES))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    onnx_path = os.path.join(a.out, "model.onnx")
    export_onnx(model, onnx_path, 1, a.size, a.size)

    raw = rng.normal(100.0, 5.0, size=(5, a.size, a.size)).astype(np.float32)
    yy, xx = np.mgrid[0:a.size, 0:a.size]
    raw[1] += (200.0 * np.exp(-((xx - a.size / 2) ** 2 + (yy - a.size / 2) ** 2) / 8.0)).astype(np.float32)
    raw[2, :3, :] = np.nan  # edge padding, filled with the background
    net_input = normalise_batch(raw, NORM)
    with torch.no_grad():
        out = model(torch.from_numpy(net_input)).numpy()
    write_reference(a.out, raw, net_input, out)

    card = {
        "name": "tiny", "task": "classification", "version": "0.0.1", "file": "model.onnx",
        "sha256": sha256_file(onnx_path), "opset": OPSET,
        "input": {"shape": [-1, 1, a.size, a.size], "bands": ["any"], "pixel_scale_arcsec": 0.06},
        "normalisation": NORM,
        "output": {"semantics": "logits", "class_names": CLASSES, "temperature": 1.5},
        "training": {"recipe": "/usr/bin/python3 models/common/make_tiny_model.py OUT_DIR",
                     "seeds": {"weights": a.seed}, "time_s": 0.0},
        "test_metrics": {"accuracy": 0.0},
    }
    write_card(os.path.join(a.out, "model.yaml"), card)


if __name__ == "__main__":
    main()
