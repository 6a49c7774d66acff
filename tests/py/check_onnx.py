"""Runs an ONNX file zoo wrote in ONNX Runtime (and OpenVINO when asked), on inputs zoo saved.

Usage: check_onnx.py MODEL.onnx INPUT.npy OUT_DIR [--openvino]
       check_onnx.py --serve (the same for each JSON list of those arguments on a line of stdin,
       answering each with a JSON line: {"ok": true} or {"error": the traceback}; see
       tests/common/mod.rs's run_python_served)
Checks the file with onnx.checker (full check, shapes inferred), then runs the whole batch in
INPUT.npy and its first image alone from the same file (the batch dimension is dynamic), and
writes OUT_DIR/{ort_batch.npy, ort_first.npy[, openvino_batch.npy]} and OUT_DIR/info.json
(inputs, outputs, opset, metadata_props) for the Rust test to compare with zoo's outputs.
"""
import json
import os
import sys
import traceback

import numpy as np
import onnx
import onnxruntime as ort


def main(argv):
    path, input_path, out_dir = argv[:3]
    with_openvino = "--openvino" in argv[3:]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    x = np.load(input_path).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    np.save(os.path.join(out_dir, "ort_batch.npy"), sess.run(None, {name: x})[0])
    np.save(os.path.join(out_dir, "ort_first.npy"), sess.run(None, {name: x[:1]})[0])
    if with_openvino:
        import openvino as ov

        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        np.save(os.path.join(out_dir, "openvino_batch.npy"), compiled(x)[compiled.output(0)])

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    info = {
        "inputs": {v.name: shape(v) for v in model.graph.input},
        "outputs": {v.name: shape(v) for v in model.graph.output},
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0],
        "metadata": {p.key: p.value for p in model.metadata_props},
        "initializers": [t.name for t in model.graph.initializer],
        "ops": sorted({n.op_type for n in model.graph.node}),
    }
    with open(os.path.join(out_dir, "info.json"), "w") as f:
        json.dump(info, f)


def serve():
    """Runs `main` for each request on stdin. Answers go to the stdout the caller reads (fd 1 as
    started); anything the engines print goes to stderr, so it cannot corrupt an answer."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            main(json.loads(line))
            answer = {"ok": True}
        except Exception:  # the caller's test fails with the traceback; the worker goes on
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:])
