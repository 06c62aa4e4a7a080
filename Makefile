# Two commands do all set-up on a fresh machine:
#   make demo   # installs into .venv, then runs the main job on the embedded default
#   make test   # installs into .venv, then runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo train-default train-dgiqa-distilled train-v1 export-default clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-worker.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

demo: $(STAMP)
	$(VENV)/bin/stream-iqa demo

# The commands that produced the shipped stream_iqa/weights/dgiqa-lite checkpoint, model v2 (see models/README.md):
# stage 1 tunes the trunk and the lean quality head on native fragments of every CLIVE photo, stage 2 trains the
# whole-view flag path on that frozen trunk, then its ONNX graph and every card figure of it.
train-default: $(STAMP)
	$(VENV)/bin/stream-iqa train-quality-view --recipe configs/train-quality-view.yaml --final --out runs/v2-quality/model.safetensors
	$(VENV)/bin/stream-iqa train --recipe configs/train-v2-flags.yaml --final --out stream_iqa/weights/dgiqa-lite/model.safetensors
	$(MAKE) export-default
	$(VENV)/bin/stream-iqa report --checkpoint stream_iqa/weights/dgiqa-lite/model.safetensors --json runs/dgiqa-lite-report.json

# Both stages with the official DGIQA as the quality view's teacher (configs/train-quality-dgiqa.yaml), into runs/:
#   make train-dgiqa-distilled DGIQA=/path/to/DGIQA_Koniq10k.pth
# Check runs/v2-dgiqa's report against the shipped one before copying it into stream_iqa/weights/dgiqa-lite.
train-dgiqa-distilled: $(STAMP)
	@test -n "$(DGIQA)" || { echo "set DGIQA=/path/to/DGIQA_Koniq10k.pth (the official checkpoint)"; exit 2; }
	$(VENV)/bin/stream-iqa train-quality-view --recipe configs/train-quality-dgiqa.yaml --final --set "teacher='dgiqa:$(DGIQA)'" --out runs/v2-quality-dgiqa/model.safetensors
	$(VENV)/bin/stream-iqa train --recipe configs/train-v2-flags.yaml --final --init-from runs/v2-quality-dgiqa/model.safetensors --run-dir runs/v2-dgiqa/state --out runs/v2-dgiqa/model.safetensors
	$(VENV)/bin/stream-iqa report --checkpoint runs/v2-dgiqa/model.safetensors --json runs/v2-dgiqa/report.json

# Model v1, the default until 2026-12-03 (single view: the whole frame at 192x192), for comparison: the base model
# on every CLIVE photo, then the local flare branch grown onto it with everything else frozen.
train-v1: $(STAMP)
	$(VENV)/bin/stream-iqa train --recipe configs/train-default.yaml --final --out runs/dgiqa-lite-base/model.safetensors
	$(VENV)/bin/stream-iqa train --recipe configs/train-flare-branch.yaml --out runs/v1/model.safetensors

# The shipped model's ONNX graph, which `model.backend: auto` runs on CPU; re-run after every retrain (a stale graph is
# refused by its weights hash).
export-default: $(STAMP)
	$(VENV)/bin/stream-iqa export --onnx stream_iqa/weights/dgiqa-lite/model.onnx

clean:
	rm -rf $(VENV) .pytest_cache
