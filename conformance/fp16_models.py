#!/usr/bin/env python3
"""Adds the float16 variants to the conformance matrix (issue 13).

Run by run.sh after `conformance_models` has written MODELS_DIR (and its manifest.json), with the
conformance venv (onnxconverter-common is pinned in requirements.txt):

    python conformance/fp16_models.py MODELS_DIR --posefix target/debug/onnx-posefix

For each variant in VARIANTS, the original float32 model of an existing manifest entry is converted
the way GPU users convert PoseNet models, with onnxconverter-common's
`float16.convert_float_to_float16(model, keep_io_types=...)`, written as NAME.orig.onnx, then
rewritten by the onnx-posefix binary itself (as a user runs it: the flags of the variant) into
NAME.posefix.onnx. The entry appended to manifest.json is the source entry's (heads, grid, batch,
input shapes, the multi-pose settings) with the names and heads read back from the rewritten
model's provenance (`posefix.*` metadata), plus:

- `fp16`: {"keep_io_types": bool, "converter": "onnxconverter-common X"};
- `input_type`: the original's image input type, "float16" or "float" (check.py feeds that type);
- `output_type`: "float16" for `--output-type float16`, else "float" (the type check.py expects
  of `keypoints`, `poses` and `pose_scores`).

A converter or rewrite failure stops the suite: these variants are part of the matrix.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

REAL = "posenet-mobilenet075-257"

# (name, source manifest entry, keep_io_types, extra onnx-posefix flags)
VARIANTS = [
    # The real model as GPU users convert it: float16 in, float16 heads out.
    (f"{REAL}_fp16", REAL, False, []),
    (f"{REAL}_fp16_multi-pose-n5", REAL, False, ["--poses", "5"]),
    # keypoints, poses and pose_scores in float16 as well (Barracuda 1.0.4's profile, part of
    # `portable`, takes float32 graph outputs only: docs/float16.md's example target).
    (f"{REAL}_fp16_multi-pose-n5_output-float16", REAL, False,
     ["--poses", "5", "--output-type", "float16", "--target", "tensorrt-8.4"]),
    # NHWC image and heads, float16 throughout.
    ("nhwc_logits_op15_b1_257x257_input-nhwc_fp16", "nhwc_logits_op15_b1_257x257_input-nhwc", False, []),
    # keep_io_types=True: float32 image and heads around a float16 body (the heads are Cast outputs).
    ("nchw_sigmoid_op12_b1_257x257_fp16-keep-io", "nchw_sigmoid_op12_b1_257x257", True, []),
]


def elem_name(elem):
    import onnx

    return {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.FLOAT16: "float16"}.get(elem, str(elem))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models_dir", type=Path)
    ap.add_argument("--posefix", type=Path, required=True, help="the onnx-posefix binary")
    args = ap.parse_args()

    import onnx
    from onnxconverter_common import float16

    converter = f"onnxconverter-common {version('onnxconverter-common')}"
    manifest_path = args.models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    by_name = {e["name"]: e for e in manifest["models"]}
    converted = {}
    added = []
    for name, source, keep_io, flags in VARIANTS:
        if source not in by_name:
            sys.exit(f"fp16_models: no manifest entry {source} (the source of {name})")
        src = by_name[source]
        key = (source, keep_io)
        if key not in converted:
            model = onnx.load(str(args.models_dir / src["orig"]))
            with warnings.catch_warnings():
                # "the float32 number ... will be truncated to 1e-07": weights below float16's range.
                warnings.simplefilter("ignore", UserWarning)
                model16 = float16.convert_float_to_float16(model, keep_io_types=keep_io)
            onnx.checker.check_model(model16, full_check=True)
            converted[key] = (f"{name}.orig.onnx", model16)
            onnx.save(model16, str(args.models_dir / f"{name}.orig.onnx"))
        orig_file, model16 = converted[key]
        posefix_file = f"{name}.posefix.onnx"
        cmd = [str(args.posefix), str(args.models_dir / orig_file), str(args.models_dir / posefix_file), *flags]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"fp16_models: {' '.join(cmd[1:])} failed ({proc.returncode}): {proc.stderr.strip()}")
        for line in proc.stderr.strip().splitlines():  # the rewrite's notes (the runtimes portable left out)
            print(f"fp16_models: {name}: {line}")
        rewritten = onnx.load(str(args.models_dir / posefix_file), load_external_data=False)
        meta = {p.key[len("posefix."):]: p.value for p in rewritten.metadata_props if p.key.startswith("posefix.")}
        image = next(i for i in model16.graph.input if i.name == src["input"])
        outputs = {o.name: elem_name(o.type.tensor_type.elem_type) for o in rewritten.graph.output}
        entry = {
            **src,
            "name": name,
            "orig": orig_file,
            "posefix": posefix_file,
            "heatmaps": meta["heatmaps"],
            "offsets": meta["offsets"],
            "output": meta["output"],
            "layout": meta["layout"],
            "stride": int(meta["stride"]),
            "scores": meta["scores"],
            "multi_pose": None,
            "fp16": {"keep_io_types": keep_io, "converter": converter},
            "input_type": elem_name(image.type.tensor_type.elem_type),
            "output_type": outputs[meta["output"]],
            "flags": flags,
        }
        if "poses.max" in meta:
            entry["multi_pose"] = {
                "max_poses": int(meta["poses.max"]),
                "score_threshold": float(meta["poses.score_threshold"]),
                "nms_radius": float(meta["poses.nms_radius"]),
                "poses": meta["poses.output"],
                "pose_scores": meta["poses.scores_output"],
                "heatmaps": meta["heatmaps"],
                "offsets": meta["offsets"],
                "displacement_fwd": meta["poses.displacement_fwd"],
                "displacement_bwd": meta["poses.displacement_bwd"],
            }
        added.append(entry)
        print(f"fp16_models: {name}: keep_io_types={keep_io}, input {entry['input_type']}, "
              f"{entry['output']} {entry['output_type']}" + (f" ({' '.join(flags)})" if flags else ""))
    manifest["models"] += added
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"fp16_models: {len(added)} float16 variants added to {manifest_path} ({converter})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
