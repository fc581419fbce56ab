"""Writing a model card (model.yaml) and a reference input/output pair."""
import hashlib
import json
import os

import numpy as np
import yaml


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_card(path, card):
    """Writes the card dict as block YAML, keys in the given order."""
    class Dumper(yaml.SafeDumper):
        pass

    def flow_list(dumper, data):
        flow = all(not isinstance(v, (dict, list)) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, flow_list)
    with open(path, "w") as f:
        f.write("# Model card: the contract between model.onnx and the stage that runs it.\n")
        f.write("# Regenerate with the command in training.recipe; see docs/models.md.\n")
        yaml.dump(card, f, Dumper=Dumper, sort_keys=False, default_flow_style=False)


def write_raw(folder, stem, array):
    """Little-endian float32 raw file; returns the JSON entry describing it."""
    a = np.ascontiguousarray(array, dtype="<f4")
    a.tofile(os.path.join(folder, stem + ".f32"))
    return {"file": stem + ".f32", "shape": list(a.shape), "dtype": "float32"}


def write_reference(folder, raw, net_input, net_output, tolerance=1e-4):
    """reference.json + raw float32 files, read by tests/unit/model_reference_test.cpp.

    raw: the stamps before normalisation (N, H, W), NaN allowed; net_input: what the network
    saw (N, C, H, W); net_output: torch's output for it (N, ...).
    """
    ref = {
        "raw": write_raw(folder, "reference_raw", raw),
        "input": write_raw(folder, "reference_input", net_input),
        "output": write_raw(folder, "reference_output", net_output),
        "tolerance": tolerance,
    }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
