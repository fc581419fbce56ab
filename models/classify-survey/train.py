#!/usr/bin/env python3
"""models/classify-survey's training step: models/classify/train.py, writing into this folder.

models/classify-survey/train.sh runs the whole recipe (simulation with the field's galaxy
shapes, then this training); the network, loss and schedule are models/classify's.
"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    if "--out" not in sys.argv:
        sys.argv[1:1] = ["--out", HERE]
    sys.argv[0] = os.path.join(HERE, "..", "classify", "train.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
