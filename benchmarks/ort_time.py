#!/usr/bin/env python3
"""Times models in onnxruntime CPU, 1 thread, interleaved, for the multi-pose benchmark.

    ort_time.py ROUNDS SIZE MODEL...

Every model gets the same fixed random input `[1, 3, SIZE, SIZE]` in [-1, 1]. Each round runs
every model once, rotating who goes first; a run is timed in CPU time of this process (as the
Rust benches time tract). Prints JSON: `{"version": ..., "runs": [[seconds per round] per model]}`.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    rounds, size, models = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sessions = [ort.InferenceSession(m, options, providers=["CPUExecutionProvider"]) for m in models]
    x = np.random.default_rng(0x1A6E).uniform(-1.0, 1.0, (1, 3, size, size)).astype(np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    for s, f in zip(sessions, feeds):
        s.run(None, f)  # warm-up
    runs = [[] for _ in models]
    for r in range(rounds):
        for i in range(len(models)):
            who = (r + i) % len(models)
            start = time.process_time()
            sessions[who].run(None, feeds[who])
            runs[who].append(time.process_time() - start)
    print(json.dumps({"version": ort.__version__, "runs": runs}))


if __name__ == "__main__":
    main()
