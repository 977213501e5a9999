"""`changeseg serve --backend onnx`: the service runs an exported model without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from fastapi.testclient import TestClient
    from changeseg.cli.serve import load_predictor
    from changeseg.io.images import encode_png
    from changeseg.service.app import create_app, describe_predictor

    predictor = load_predictor(sys.argv[1], "onnx")
    app = create_app(predictor, model_info=describe_predictor(predictor, backend="onnx"))
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:40, 12:44] = 255 - comparison[10:40, 12:44]
    with TestClient(app) as client:
        response = client.post("/v1/detect", data={"return": "mask"},
                               files={"reference": ("r.png", encode_png(reference)),
                                      "comparison": ("c.png", encode_png(comparison))})
        models = client.get("/v1/models").json()
    print(json.dumps({"status": response.status_code, "body": response.json(), "models": models,
                      "torch_imported": "torch" in sys.modules}))
""")


def test_onnx_backend_serves_without_torch(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from changeseg.inference.export import export_onnx
    from changeseg.inference.predictor import ChangeDetector

    onnx_dir = tmp_path / "tiny-onnx"
    export_onnx(tiny_checkpoint, onnx_dir)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["torch_imported"] is False
    assert report["status"] == 200, report["body"]
    assert report["models"]["models"][0]["backend"] == "onnx"
    assert report["models"]["models"][0]["name"] == "tiny-onnx"
    assert "mask" in report["body"]["images"]

    # About the same answer as the PyTorch checkpoint it was exported from (exact parity is tested
    # with the exporter).
    import numpy as np

    rng = np.random.default_rng(3)
    reference = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:40, 12:44] = 255 - comparison[10:40, 12:44]
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    expected = detector.predict(reference, comparison)
    assert abs(report["body"]["changed_pixels"] - int(expected.mask.sum())) <= 0.01 * expected.mask.size
