"""Write tiny_net.onnx, the small network pipelines/network.yaml uses as a feature (needs ``pip install onnx``).

It stands in for a network you export yourself (``torch.onnx.export``, see
the README): log of the two SAR bands (HH, HV), a 9 x 9 convolution (box
means of both, two edge filters of HV), ReLU, a 1 x 1 convolution to 3
channels.  Receptive-field radius 4 px: the spec's ``halo``.

    python pipelines/tiny_net.py [path]        # default: ./tiny_net.onnx
"""

from __future__ import annotations

import sys

import numpy as np


def tiny_sar_net(path: str = "tiny_net.onnx") -> str:
    """Save the network to ``path`` and return ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    box = np.full((9, 9), 1 / 81, np.float32)
    edge = np.outer(np.ones(9), np.linspace(-1, 1, 9)).astype(np.float32) / 45
    w1 = np.zeros((4, 2, 9, 9), np.float32)
    w1[0, 0], w1[1, 1], w1[2, 1], w1[3, 1] = box, box, edge, edge.T
    w2 = np.random.default_rng(0).normal(0, 0.5, (3, 4, 1, 1)).astype(np.float32)
    w2[0, :, 0, 0] = [0, 1, 0, 0]  # channel 0: the smoothed log HV itself
    nodes = [helper.make_node("Max", ["x", "eps"], ["positive"]),
             helper.make_node("Log", ["positive"], ["log"]),
             helper.make_node("Conv", ["log", "w1", "b1"], ["filtered"], pads=[4, 4, 4, 4]),
             helper.make_node("Relu", ["filtered"], ["relu"]),  # the bias of 8 keeps the log values positive
             helper.make_node("Conv", ["relu", "w2"], ["features"])]
    weights = [numpy_helper.from_array(np.array(1e-6, np.float32), "eps"), numpy_helper.from_array(w1, "w1"),
               numpy_helper.from_array(np.full(4, 8, np.float32), "b1"), numpy_helper.from_array(w2, "w2")]
    graph = helper.make_graph(
        nodes, "tiny_sar_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3, "h", "w"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


if __name__ == "__main__":
    print(tiny_sar_net(*sys.argv[1:2]))
