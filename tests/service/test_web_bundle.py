"""The on-device page's plumbing: the pinned runtime, `export --web`, and the server's on-device routes.

What runs in the browser is tested in real Chromium (test_browser_ondevice.py); here: finding and
refusing runtimes, the static folder `changeseg export --web` writes, its manifest, the routes
`changeseg serve` adds (with and without API keys) and bad input on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from changeseg.cli.main import main as changeseg_main
from changeseg.errors import InputError
from changeseg.inference.export_cache import ONNX_FILE
from changeseg.io.checkpoints import read_config
from changeseg.io.digest import file_sha256
from changeseg.service.app import create_app
from changeseg.service.ondevice import OnDeviceModel, on_device_for
from changeseg.service.web_bundle import (
    ISOLATION_HEADERS,
    ORT_WEB_VERSION,
    RUNTIME_ENV,
    RUNTIME_FILES,
    STATIC_MODE_MARK,
    WebRuntimeError,
    export_web,
    find_web_runtime,
    page_html,
    runtime_sizes,
    web_manifest,
)
from tests.conftest import PROJECT_ROOT
from tests.service.conftest import DifferencePredictor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
KEY = "ondevice-key-" + "k" * 20


def require_runtime() -> Path:
    """The installed onnxruntime-web files; FAIL under CI=true (make installs them), skip elsewhere."""
    try:
        return find_web_runtime()
    except WebRuntimeError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def runtime() -> Path:
    return require_runtime()


def fake_dist(folder: Path, version: str) -> Path:
    """A folder laid out like onnxruntime-web's dist/, with placeholder files, claiming `version`."""
    dist = folder / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in RUNTIME_FILES:
        (dist / name).write_text("placeholder")
    (dist.parent / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": version}))
    return dist


# ------------------------------------------------------------------ the runtime


def test_the_pinned_version_is_the_one_in_package_json_and_the_lock_file():
    package = json.loads((PROJECT_ROOT / "web" / "package.json").read_text())
    lock = json.loads((PROJECT_ROOT / "web" / "package-lock.json").read_text())
    assert package["dependencies"] == {"onnxruntime-web": ORT_WEB_VERSION}  # exact, no range
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == ORT_WEB_VERSION
    assert lock["packages"]["node_modules/onnxruntime-web"]["integrity"].startswith("sha512-")
    ignored = subprocess.run(["git", "check-ignore", "-q", "web/node_modules/onnxruntime-web/dist/x.wasm"],
                             cwd=PROJECT_ROOT)
    assert ignored.returncode == 0  # installed by make, never committed
    for committed in ("web/package.json", "web/package-lock.json",
                      "src/changeseg/service/static/ondevice.js"):
        assert subprocess.run(["git", "check-ignore", "-q", committed], cwd=PROJECT_ROOT).returncode == 1


def test_the_installed_runtime_is_found_and_has_the_documented_size(runtime):
    assert runtime == (PROJECT_ROOT / "web/node_modules/onnxruntime-web/dist") or os.environ.get(RUNTIME_ENV)
    sizes = runtime_sizes(runtime)
    # docs/deploy.md: about 14.3 MB for the WebAssembly build, 26.9 MB for the WebGPU build
    assert 13.5e6 < sizes["wasm"] < 15e6 and 26e6 < sizes["webgpu"] < 28e6
    assert sizes["all"] == sizes["wasm"] + sizes["webgpu"]


def test_a_missing_or_foreign_runtime_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(RUNTIME_ENV, str(tmp_path / "nothing"))
    with pytest.raises(WebRuntimeError, match="not installed at .*nothing .from \\$CHANGESEG_ORT_WEB.*make"):
        find_web_runtime()
    dist = fake_dist(tmp_path / "old", "1.17.3")
    monkeypatch.setenv(RUNTIME_ENV, str(dist))
    with pytest.raises(WebRuntimeError, match=f"1.17.3 found .* needs exactly {ORT_WEB_VERSION}"):
        find_web_runtime()
    (dist / RUNTIME_FILES[2]).unlink()
    with pytest.raises(WebRuntimeError, match=f"lacks {RUNTIME_FILES[2]}"):
        find_web_runtime()


def test_export_web_without_the_runtime_is_one_error_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(RUNTIME_ENV, str(tmp_path / "no-runtime"))
    monkeypatch.setenv("CHANGESEG_CACHE", str(tmp_path / "cache"))
    code = changeseg_main(["export", "--model", "default", "--web", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: the onnxruntime-web runtime for on-device mode is not installed")
    assert err.count("\n") == 1 and "npm ci --prefix web" in err
    assert not (tmp_path / "site").exists() and not (tmp_path / "cache").exists()  # checked before exporting


@pytest.mark.parametrize("args, message", [
    ([], "give --onnx OUTDIR, --web OUTDIR, or both"),
    (["--web", "site", "--no-check"], "--web always checks the export"),
    (["--web", "site", "--tile-size", "-5"], "--tile-size"),
])
def test_bad_export_options_are_usage_errors(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert changeseg_main(["export", "--model", "default", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "site").exists()


# ------------------------------------------------------------------ the static folder


def test_export_web_writes_a_self_contained_folder(runtime, onnx_folder, tmp_path, capsys):
    site = tmp_path / "site"
    code = changeseg_main(["export", "--model", str(onnx_folder), "--web", str(site), "--tile-size", "512"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"wrote the on-device page for {onnx_folder} to {site} (model")
    assert out.count("\n") == 1
    assert sorted(p.name for p in site.iterdir()) == ["README.txt", "_headers", "index.html", "model", "ort",
                                                      "static"]
    assert sorted(p.name for p in (site / "ort").iterdir()) == sorted(RUNTIME_FILES)
    for name in RUNTIME_FILES:
        assert (site / "ort" / name).read_bytes() == (runtime / name).read_bytes()
    assert sorted(p.name for p in (site / "static").iterdir()) == ["app.js", "ondevice.js", "style.css"]
    html = (site / "index.html").read_text()
    assert STATIC_MODE_MARK in html and 'src="static/ondevice.js"' in html
    assert "Cross-Origin-Embedder-Policy: require-corp" in (site / "_headers").read_text()
    assert (site / "model" / ONNX_FILE).read_bytes() == (onnx_folder / ONNX_FILE).read_bytes()

    manifest = json.loads((site / "model" / "model.json").read_text())
    config = read_config(onnx_folder)
    assert manifest["format"] == "changeseg-web-model" and manifest["model_url"] == "model/model.onnx"
    assert manifest["class_names"] == config.class_names == ["unchanged", "changed"]
    assert manifest["threshold"] == config.threshold and manifest["min_area"] == 0
    assert manifest["tiling"] == {"tile_size": 512, "overlap": 128, "weight_floor": 0.05}
    assert manifest["model_bytes"] == (site / "model" / ONNX_FILE).stat().st_size
    assert manifest["model_sha256"] == file_sha256(onnx_folder / ONNX_FILE)
    assert manifest["runtime"] == {"package": "onnxruntime-web", "version": ORT_WEB_VERSION}
    assert manifest["in_channels"] == 3 and manifest["normalization"]["inside_graph"] is True
    assert not list(tmp_path.glob(".site*"))  # built beside it and renamed: nothing left over

    # a second export replaces the first as a whole
    (site / "stray.txt").write_text("left from before")
    assert changeseg_main(["export", "--model", str(onnx_folder), "--web", str(site)]) == 0
    assert not (site / "stray.txt").exists()
    assert json.loads((site / "model" / "model.json").read_text())["tiling"]["tile_size"] == 1024
    assert not list(tmp_path.glob(".site*"))


def test_export_web_refuses_a_folder_it_did_not_write_and_bad_tiling(runtime, onnx_folder, tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(Exception, match="not an earlier `changeseg export --web` folder"):
        export_web(onnx_folder, foreign)
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"
    with pytest.raises(Exception, match="tile overlap \\(300\\) must be at most half"):
        export_web(onnx_folder, tmp_path / "site", tile_size=512, tile_overlap=300)
    assert not (tmp_path / "site").exists()


def test_page_modes():
    assert 'data-mode="server"' in page_html("server")
    assert STATIC_MODE_MARK in page_html("static") and 'data-mode="server"' not in page_html("static")
    with pytest.raises(Exception, match="unknown page mode"):
        page_html("other")


def test_manifest_records_the_models_own_minimum_area_and_default_overlap(onnx_folder, tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / ONNX_FILE).write_bytes((onnx_folder / ONNX_FILE).read_bytes())
    config = json.loads((onnx_folder / "config.json").read_text())
    config["metadata"]["min_area"] = 200
    (folder / "config.json").write_text(json.dumps(config))
    manifest = web_manifest(folder, "pcb-like", "model.onnx", tile_size=256)
    assert manifest["min_area"] == 200 and manifest["tiling"]["overlap"] == 64
    assert manifest["name"] == "pcb-like" and manifest["domains"] == {}
    # a domain calibration travels with its numbers only (the page applies them as domains.py does)
    config["metadata"]["domains"] = {"fixed-camera": {"temperature": 0.7, "no_change_bias": -1.9,
                                                      "pairs": 32, "data": [{"spec": "sbi2015:/somewhere"}]}}
    (folder / "config.json").write_text(json.dumps(config))
    manifest = web_manifest(folder, "pcb-like", "model.onnx")
    assert manifest["domains"] == {"fixed-camera": {"temperature": 0.7, "no_change_bias": -1.9}}
    config["metadata"]["domains"] = {"broken": {"temperature": -1, "no_change_bias": 0}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="--domain broken"):
        web_manifest(folder, "pcb-like", "model.onnx")
    del config["metadata"]["domains"]
    config["metadata"]["scales"] = [2]  # a model trained on enlarged pairs: the page cannot run it right
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="runs at scales 2 .*scale 1 only"):
        web_manifest(folder, "enlarged", "model.onnx")


# ------------------------------------------------------------------ the server's routes


@pytest.fixture
def on_device(runtime, onnx_folder) -> OnDeviceModel:
    return OnDeviceModel("tiny", lambda: onnx_folder, runtime)


def test_routes_serve_manifest_model_and_runtime_behind_the_key(on_device, onnx_folder, runtime):
    app = create_app(DifferencePredictor(), api_keys=[KEY], on_device=on_device)
    bearer = {"Authorization": f"Bearer {KEY}"}
    with TestClient(app) as client:
        for path in ("/v1/ondevice/manifest.json", "/v1/ondevice/model.onnx"):
            assert client.get(path).status_code == 401, path  # the model is not handed to strangers
        model_info = client.get("/v1/models", headers=bearer).json()["models"][0]
        assert model_info["on_device"] == {"available": True, "manifest": "v1/ondevice/manifest.json"}
        manifest = client.get("/v1/ondevice/manifest.json", headers=bearer).json()
        assert manifest["model_url"] == "v1/ondevice/model.onnx" and manifest["name"] == "tiny"
        model = client.get("/v1/ondevice/model.onnx", headers=bearer)
        assert model.status_code == 200 and model.content == (onnx_folder / ONNX_FILE).read_bytes()
        assert manifest["model_sha256"] == file_sha256(onnx_folder / ONNX_FILE)

        page = client.get("/")
        for header, value in ISOLATION_HEADERS.items():  # cross-origin isolated: WebAssembly threads
            assert page.headers[header] == value
        wasm = client.get("/ort/ort-wasm-simd-threaded.wasm")  # a public library: no key needed
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert wasm.content == (runtime / "ort-wasm-simd-threaded.wasm").read_bytes()
        assert wasm.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert client.get("/ort/ort.wasm.min.mjs").headers["content-type"].startswith("text/javascript")
        for other in ("ort.all.min.mjs", "package.json", "..%2Fpackage.json"):
            assert client.get(f"/ort/{other}").status_code == 404, other
        assert client.get("/static/ondevice.js").status_code == 200


def test_routes_say_why_on_device_mode_is_off(onnx_folder):
    missing = OnDeviceModel("tiny", lambda: onnx_folder, None)
    with TestClient(create_app(DifferencePredictor(), on_device=missing)) as client:
        info = client.get("/v1/models").json()["models"][0]["on_device"]
        assert info["available"] is False and "onnxruntime-web runtime is not installed" in info["reason"]
        answer = client.get("/v1/ondevice/manifest.json")
        assert answer.status_code == 404 and "on-device mode is not available" in answer.json()["detail"]
    with TestClient(create_app(DifferencePredictor())) as client:
        assert client.get("/v1/models").json()["models"][0]["on_device"]["available"] is False
        assert client.get("/v1/ondevice/model.onnx").status_code == 404


def test_a_preset_cannot_go_on_device(runtime):
    model = on_device_for("c3po-mobilenetv2-fcn", "untrained")
    status = model.status()
    assert status["available"] is False and "preset is an untrained network" in status["reason"]


SCRIPT = textwrap.dedent("""
    import json, sys
    from fastapi.testclient import TestClient
    from changeseg.cli.serve import load_predictor
    from changeseg.service.app import create_app
    from changeseg.service.ondevice import on_device_for

    predictor = load_predictor(sys.argv[1], "onnx")
    app = create_app(predictor, on_device=on_device_for(sys.argv[1], "tiny-onnx"))
    with TestClient(app) as client:
        manifest = client.get("/v1/ondevice/manifest.json")
        model = client.get("/v1/ondevice/model.onnx")
    print(json.dumps({"manifest": manifest.status_code, "model_bytes": len(model.content),
                      "torch_imported": "torch" in sys.modules}))
""")


def test_the_onnx_backend_serves_its_own_file_without_torch(runtime, onnx_folder):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_folder)], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT_ROOT,
                          env={**os.environ, "CHANGESEG_CACHE": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"manifest": 200, "model_bytes": (onnx_folder / ONNX_FILE).stat().st_size,
                      "torch_imported": False}
