"""ONNX export that OpenCV 4.6 dnn imports (see ONNX-NOTES.md): opset 13, dynamic batch."""
import torch

OPSET = 13


def export_onnx(model, path, channels, height, width, dynamic_hw=False):
    """dynamic_hw: also leave H and W symbolic (fully convolutional models; the card still
    states the tile size the stage feeds)."""
    model.eval()
    dummy = torch.zeros(2, channels, height, width)
    axes = {0: "N", 2: "H", 3: "W"} if dynamic_hw else {0: "N"}
    torch.onnx.export(
        model, dummy, path, opset_version=OPSET, input_names=["input"], output_names=["output"],
        dynamic_axes={"input": axes, "output": axes}, do_constant_folding=True)
