# The two README commands: `make demo` and `make test`.
# Both create .venv with the project installed when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DATA ?= data/demo
DEMO_CFG ?= configs/demo/ssdlite_shapes.py
DEMO_WORK_DIR ?= work_dirs/ssdlite_shapes
CLS_CFG := configs/demo/mobilenetv2_shapes.py
CLS_WORK_DIR := work_dirs/mobilenetv2_shapes
SEG_CFG := configs/demo/deeplabv3_shapes.py
SEG_WORK_DIR := work_dirs/deeplabv3_shapes
MT_CFG := configs/demo/multitask_shapes.py
MT_WORK_DIR := work_dirs/multitask_shapes

.PHONY: install demo demo-deploy demo-phone demo-classification demo-segmentation demo-multitask test test-slow test-all lint bench clean

install: $(VENV)/.installed

# Re-install when the dependency list changes. torch/torchvision are pinned in
# pyproject.toml to the builds that lie on local disk on the project machines.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DEMO_DATA)/dataset_info.json: | $(VENV)/.installed
	$(PY) tools/make_demo_data.py --out $(DEMO_DATA) --seed 0 --num-train 3000 --num-val 300

# The main demo: SSDLite detection on the synthetic COCO-layout shapes. eval.py
# prints the COCO table, writes the COCO-format results json and draws the
# predicted boxes of a few validation images into $(DEMO_WORK_DIR)/val_predictions/.
demo: $(VENV)/.installed $(DEMO_DATA)/dataset_info.json
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/eval.py $(DEMO_CFG) $(DEMO_WORK_DIR)/last.pth --work-dir $(DEMO_WORK_DIR) \
		--out $(DEMO_WORK_DIR)/val_results.json --show-dir $(DEMO_WORK_DIR)/val_predictions --show-limit 8
	$(MAKE) demo-deploy
	@echo "demo done: COCO results in $(DEMO_WORK_DIR)/val_results.json, pictures in $(DEMO_WORK_DIR)/val_predictions/,"
	@echo "  the deployed detector in $(DEMO_WORK_DIR)/ssdlite_shapes.onnx (.int8.onnx) and .tflite (.int8.tflite),"
	@echo "  its predictions in $(DEMO_WORK_DIR)/predict/ (onnxruntime) and predict_mediapipe/ (MediaPipe Tasks)"

# Ship the trained demo detector: one ONNX file with NMS inside, checked against torch;
# int8 calibrated on 200 training images; both evaluated as the checkpoint was; the
# int8 file predicts on a few val images (pictures + JSON).
demo-deploy: $(VENV)/.installed
	$(PY) tools/export_onnx.py $(DEMO_CFG) $(DEMO_WORK_DIR)/last.pth --out $(DEMO_WORK_DIR)/ssdlite_shapes.onnx
	$(PY) tools/quantize.py $(DEMO_CFG) $(DEMO_WORK_DIR)/ssdlite_shapes.onnx --out $(DEMO_WORK_DIR)/ssdlite_shapes.int8.onnx \
		--calib 200 --cfg-options test_dataloader.dataset.ann_file=annotations/instances_train2017.json \
		test_dataloader.dataset.data_prefix.img=train2017/
	$(PY) tools/eval.py $(DEMO_CFG) $(DEMO_WORK_DIR)/ssdlite_shapes.onnx --work-dir $(DEMO_WORK_DIR)/eval_onnx
	$(PY) tools/eval.py $(DEMO_CFG) $(DEMO_WORK_DIR)/ssdlite_shapes.int8.onnx --work-dir $(DEMO_WORK_DIR)/eval_int8
	$(PY) tools/predict.py $(DEMO_CFG) - "$(DEMO_DATA)/coco/val2017/*_00000[0-5].jpg" --out-dir $(DEMO_WORK_DIR)/predict \
		--backend onnxruntime --model $(DEMO_WORK_DIR)/ssdlite_shapes.int8.onnx
	$(MAKE) demo-phone

# Ship it to phones: the detector as a LiteRT .tflite (MediaPipe metadata inside), int8
# with ai-edge-quantizer on the same 200 training images, evaluated in LiteRT, then run
# once through MediaPipe Tasks' ObjectDetector (the API Android/iOS apps call) on one
# validation image, whose boxes are printed.
demo-phone: $(VENV)/.installed
	$(PY) tools/export.py $(DEMO_CFG) $(DEMO_WORK_DIR)/last.pth --out $(DEMO_WORK_DIR)/ssdlite_shapes.tflite
	$(PY) tools/quantize.py $(DEMO_CFG) $(DEMO_WORK_DIR)/ssdlite_shapes.tflite --out $(DEMO_WORK_DIR)/ssdlite_shapes.int8.tflite \
		--calib 200 --cfg-options test_dataloader.dataset.ann_file=annotations/instances_train2017.json \
		test_dataloader.dataset.data_prefix.img=train2017/
	$(PY) tools/eval.py $(DEMO_CFG) $(DEMO_WORK_DIR)/ssdlite_shapes.int8.tflite --work-dir $(DEMO_WORK_DIR)/eval_int8_tflite
	$(PY) tools/predict.py $(DEMO_CFG) - "$(DEMO_DATA)/coco/val2017/*_000000.jpg" --out-dir $(DEMO_WORK_DIR)/predict_mediapipe \
		--backend mediapipe --model $(DEMO_WORK_DIR)/ssdlite_shapes.int8.tflite --no-progress
	@echo "MediaPipe ObjectDetector on $(DEMO_WORK_DIR)/ssdlite_shapes.int8.tflite:"
	@cat $(DEMO_WORK_DIR)/predict_mediapipe/*.json

demo-classification: $(VENV)/.installed $(DEMO_DATA)/dataset_info.json
	$(PY) tools/train.py $(CLS_CFG) --work-dir $(CLS_WORK_DIR)
	$(PY) tools/eval.py $(CLS_CFG) $(CLS_WORK_DIR)/last.pth --work-dir $(CLS_WORK_DIR) --out $(CLS_WORK_DIR)/eval_metrics.json
	$(PY) tools/visualize.py $(CLS_CFG) $(CLS_WORK_DIR)/last.pth --out $(CLS_WORK_DIR)/val_predictions.png

demo-segmentation: $(VENV)/.installed $(DEMO_DATA)/dataset_info.json
	$(PY) tools/train.py $(SEG_CFG) --work-dir $(SEG_WORK_DIR)
	$(PY) tools/eval.py $(SEG_CFG) $(SEG_WORK_DIR)/last.pth --work-dir $(SEG_WORK_DIR) \
		--out $(SEG_WORK_DIR)/eval_metrics.json --show-dir $(SEG_WORK_DIR)/val_predictions --show-limit 8

# One MobileNetV2 trained jointly for the three tasks on the joined layouts of the same
# images: eval.py prints one table (classification/top1, coco/bbox_mAP*, voc/mIoU),
# writes the COCO results and draws mask, boxes and top-5 on each picture;
# plot_curves.py draws the losses per task and the metrics of each validation.
demo-multitask: $(VENV)/.installed $(DEMO_DATA)/dataset_info.json
	$(PY) tools/train.py $(MT_CFG) --work-dir $(MT_WORK_DIR)
	$(PY) tools/eval.py $(MT_CFG) $(MT_WORK_DIR)/last.pth --work-dir $(MT_WORK_DIR) \
		--out $(MT_WORK_DIR)/val_results.json --show-dir $(MT_WORK_DIR)/val_predictions --show-limit 8
	$(PY) tools/plot_curves.py $(MT_WORK_DIR) --out $(MT_WORK_DIR)/curves.png
	@echo "demo-multitask done: pictures in $(MT_WORK_DIR)/val_predictions/, curves in $(MT_WORK_DIR)/curves.png"

# Default suite: everything but the `slow` learning runs (well under 15 min on 2 cores).
test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -q

# pytest exits 5 when no test is selected; that is not a failure here.
test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow -q || [ $$? -eq 5 ]

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check mtvision tools tests configs

bench: $(VENV)/.installed
	$(PY) tools/benchmark.py

clean:
	rm -rf work_dirs $(DEMO_DATA)
