"""Classifies images with an ONNX file `zoo export` wrote, in ONNX Runtime, using the
preprocessing and class names stored in the file's metadata.

    python examples/serve/onnx_classify.py lite0.onnx assets/photos/coffee.png
"""
import json
import sys

import onnxruntime as ort

from preprocess import preprocess, top5

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["zoo"])
for path in sys.argv[2:]:
    (logits,) = session.run(None, {"input": preprocess(path, meta["preprocess"])})
    print(path, ", ".join(f"{name} {p:.2%}" for name, p in top5(logits[0], meta["classes"])))
