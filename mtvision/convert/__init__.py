"""Reading other frameworks' weight files into mtvision.

- ``tflite_graph``: a ``.tflite`` file's ops and dequantised tensors;
- ``tflite_mobilenet_graph``: its MobileNetV2 / DeepLabv3 / DeepLabv3+ layers;
- ``tflite_conversion``: those layers loaded into mtvision models (``tools/convert_weights.py``);
- ``published_weights``: Google's published files by name (``create_model(name,
  weights=NAME)``, ``init_cfg=dict(type="Pretrained", checkpoint="mtvision://NAME")``),
  fetched into torch's hub cache, sha256-checked and converted on first use.

Reading ``.tflite`` files needs the optional ``tflite`` package
(``pip install 'mtvision[tflite]'``); nothing here imports it until a file is read.
"""
