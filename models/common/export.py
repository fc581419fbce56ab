"""ONNX export that OpenCV 4.6 dnn imports (see ONNX-NOTES.md): opset 13, dynamic batch."""
import torch

OPSET = 13


def export_onnx(model, path, channels, height, width):
    model.eval()
    dummy = torch.zeros(2, channels, height, width)
    torch.onnx.export(
        model, dummy, path, opset_version=OPSET, input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, do_constant_folding=True)
