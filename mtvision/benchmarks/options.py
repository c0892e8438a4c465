"""What one benchmark run measures: the settings of ``tools/benchmark.py`` as a value."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchmarkOptions:
    """Settings of :func:`mtvision.benchmarks.run_benchmarks`.

    ``task``: ``None`` for the network comparisons
    (:func:`mtvision.benchmarks.networks.run_networks`), else one of
    :data:`mtvision.benchmarks.end_to_end.TASKS` (``cls``, ``det``, ``seg``,
    ``seg-ade``, ``multitask``: :func:`mtvision.benchmarks.end_to_end.run_task`).
    ``runs`` / ``warmup``: timed and untimed runs per contender. ``threads``: intra-op
    threads of torch, onnxruntime, OpenVINO and TFLite; one table per value.
    ``size``: input height and width in pixels. ``multitask_size`` /
    ``multitask_output_stride``: the network comparisons' multi-task row (``None``: the
    model's stride, 16). ``topk_images``: score vectors of the metric row. ``device``
    (``"cpu"`` or ``"cuda"``), ``batch`` (images per forward) and ``train`` (add a
    training step) apply to the network comparisons only. ``calib``: images that
    calibrate int8 (the first is the timed image); ``det_candidates``: (anchor, class)
    pairs per image that reach NMS; ``block``: timed calls per run and contender whose
    median is the run's time; ``phone_formats``: the phone formats whose float and int8
    files join the ONNX rows (``"tflite"``, ``"executorch"``: those whose extra imports;
    empty: ONNX only) (the end-to-end tasks only).

    The values are not checked here; ``tools/benchmark.py`` refuses bad ones with a
    one-line usage error.
    """

    task: str | None = None
    runs: int = 50
    warmup: int = 10
    threads: tuple[int, ...] = field(default=(1,))
    size: int = 224
    multitask_size: int = 320
    multitask_output_stride: int | None = None
    topk_images: int = 5000
    device: str = "cpu"
    batch: int = 1
    train: bool = False
    calib: int = 16
    det_candidates: int = 300
    block: int = 3
    phone_formats: tuple[str, ...] = ("tflite", "executorch")
