"""The rewrite a user would write without onnx-posefix: load the model, append the decoder, save.

usage: peer_rewrite.py MODEL DECODER OUT

DECODER is an ONNX file holding only the decoder (nodes, constants, the keypoints output and the
provenance metadata); the benchmark cuts it out of a model onnx-posefix rewrote, so both programs
append exactly the same nodes. Nothing here is tuned: this is the plain `onnx` API.
"""
import sys

import onnx


def main(model_path, decoder_path, out_path):
    model = onnx.load(model_path)
    decoder = onnx.load(decoder_path)
    model.graph.node.extend(decoder.graph.node)
    model.graph.initializer.extend(decoder.graph.initializer)
    model.graph.output.extend(decoder.graph.output)
    model.metadata_props.extend(decoder.metadata_props)
    onnx.save(model, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
