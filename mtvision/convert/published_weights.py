"""Google's published MobileNetV2 / DeepLabv3 TFLite weights by name, as torchvision's
``weights=`` and timm's ``pretrained=`` give theirs.

    mtvision.create_model("deeplabv3_mobilenet_v2", weights="deeplabv3_mnv2_pascal_quant")
    model = dict(backbone=dict(init_cfg=dict(
        type="Pretrained", checkpoint="mtvision://mobilenet_v2_1.0_224_quant")))

A name is the file's own name at its source (:data:`PUBLISHED_WEIGHTS`, all from
the google-coral/test_data repository at one fixed commit). On first use the file
is fetched into torch's hub cache (``torch.hub.get_dir()/checkpoints/mtvision/``,
i.e. ``$TORCH_HOME/hub/...``), its sha256 checked, converted with
:func:`~mtvision.convert.tflite_conversion.convert_tflite` (needs
``pip install 'mtvision[tflite]'``) and the converted mtvision checkpoint cached
beside it (``NAME-SHA8.pth``); later uses read only that checkpoint. The log says
what was fetched from where and what was converted.

Nothing downloads unless a name is asked for. Without network, place the file (from
its URL, or a copy) at the cache path the error names; a mirror of the source
folder (an ``https://`` or ``file://`` URL) replaces the source with
``MTVISION_WEIGHTS_MIRROR``.

Errors (:class:`~mtvision.errors.CheckpointError`, one line): an unknown name (the
known ones listed), a failed download (the URL and the path to place the file at),
a file whose sha256 differs (a download is deleted, a file placed by hand is named).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

from mmengine.logging import print_log

from mtvision.errors import CheckpointError

__all__ = [
    "MIRROR_ENV",
    "PUBLISHED_WEIGHTS",
    "SCHEME",
    "PublishedWeights",
    "list_published_weights",
    "published_checkpoint",
    "published_weights",
]

#: ``init_cfg=dict(type="Pretrained", checkpoint=SCHEME + name)`` loads published weights.
SCHEME = "mtvision://"
#: Environment variable: a base URL (``https://...`` or ``file:///...``) holding the
#: same files as :data:`SOURCE_URL`, used instead of it.
MIRROR_ENV = "MTVISION_WEIGHTS_MIRROR"
#: google-coral/test_data at the commit the project's real-data checks were made with.
SOURCE_COMMIT = "104342d2d3480b3e66203073dac24f4e2dbb4c41"
SOURCE_URL = f"https://github.com/google-coral/test_data/raw/{SOURCE_COMMIT}/"


@dataclass(frozen=True)
class PublishedWeights:
    """One published file and the mtvision model it converts into.

    Attributes:
        name: the file's name at the source without ``.tflite``; the name users pass.
        model: the ``create_model`` name the converted weights are for (its keyword
            arguments, e.g. the width, are recorded in the converted checkpoint).
        sha256: of the ``.tflite`` file.
        num_classes: the converted head's classes (1000 drops the ImageNet
            classifier's "background" row 0, as torchvision's weights have), or
            ``None`` to keep the file's.
        imagenet_names: name the 1000 classes with torchvision's ImageNet categories
            (the same sorted-synset order).
        description: what the weights are, for :func:`list_published_weights` users.
    """

    name: str
    model: str
    sha256: str
    num_classes: int | None
    imagenet_names: bool
    description: str

    @property
    def file_name(self) -> str:
        return f"{self.name}.tflite"

    @property
    def url(self) -> str:
        """Where the file is fetched from (``MTVISION_WEIGHTS_MIRROR`` replaces the source)."""
        base = os.environ.get(MIRROR_ENV) or SOURCE_URL
        return base.rstrip("/") + "/" + self.file_name


PUBLISHED_WEIGHTS: dict[str, PublishedWeights] = {
    entry.name: entry
    for entry in (
        PublishedWeights(
            "mobilenet_v2_1.0_224_quant",
            "mobilenet_v2",
            "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
            1000,
            True,
            "MobileNetV2 1.0 ImageNet classifier, 224x224, uint8 quantisation-aware (TF1)",
        ),
        PublishedWeights(
            "tf2_mobilenet_v2_1.0_224_ptq",
            "mobilenet_v2",
            "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
            1000,
            True,
            "MobileNetV2 1.0 ImageNet classifier, 224x224, int8 post-training quantised (TF2)",
        ),
        PublishedWeights(
            "deeplabv3_mnv2_pascal_quant",
            "deeplabv3_mobilenet_v2",
            "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398",
            None,
            False,
            "DeepLabv3 on-device head on MobileNetV2 1.0, PASCAL VOC 21 classes, 513x513",
        ),
        PublishedWeights(
            "deeplabv3_mnv2_dm05_pascal_quant",
            "deeplabv3_mobilenet_v2",
            "0470d2a782aa54eeeb99d32e7b6b3fb7722905c7c4f5d26bd957ec861366d48b",
            None,
            False,
            "DeepLabv3 on-device head on MobileNetV2 0.5, PASCAL VOC 21 classes, 513x513",
        ),
    )
}


def list_published_weights(model: str | None = None) -> list[str]:
    """Names of the published weights (for ``create_model(model, weights=NAME)`` when
    ``model`` is given), sorted."""
    return sorted(n for n, e in PUBLISHED_WEIGHTS.items() if model in (None, e.model))


def published_weights(name: str) -> PublishedWeights:
    """The entry called ``name`` (``mtvision://`` in front is accepted).

    Raises:
        CheckpointError: no such name; the message lists the names there are.
    """
    key = name[len(SCHEME) :] if name.startswith(SCHEME) else name
    if key not in PUBLISHED_WEIGHTS:
        raise CheckpointError(
            f"{SCHEME}{key}: no published weights of that name; available: "
            f"{list_published_weights()}"
        )
    return PUBLISHED_WEIGHTS[key]


def cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints/mtvision`` (follows ``TORCH_HOME``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / "mtvision"


def published_checkpoint(name: str) -> str:
    """The converted mtvision checkpoint of the published weights ``name``: fetched,
    checked and converted on first use, read from torch's hub cache afterwards.

    Returns:
        The checkpoint's path (``cache_dir()/NAME-SHA8.pth``), in mmengine's layout
        (``state_dict`` + ``meta``; ``meta["model"]`` names the builder and its
        keyword arguments, ``meta["published"]`` the name, URL and sha256).

    Raises:
        CheckpointError: unknown name, failed download, wrong sha256, or the
            ``tflite`` package missing for the first conversion (one line each).
    """
    entry = published_weights(name)
    converted = cache_dir() / f"{entry.name}-{entry.sha256[:8]}.pth"
    if converted.is_file():
        return str(converted)
    source = _fetched(entry)
    _convert(entry, source, converted)
    return str(converted)


def _fetched(entry: PublishedWeights) -> Path:
    """The ``.tflite`` file in the cache with the right sha256, downloaded if absent."""
    path = cache_dir() / entry.file_name
    if path.is_file():
        digest = _sha256(path)
        if digest != entry.sha256:
            raise CheckpointError(
                f"{SCHEME}{entry.name}: {path} has sha256 {digest}, expected {entry.sha256}; "
                f"delete it (it is fetched again from {entry.url}) or replace it with that file"
            )
        return path
    from torch.hub import download_url_to_file

    url = entry.url
    path.parent.mkdir(parents=True, exist_ok=True)
    download = path.with_name(f"{path.name}.{os.getpid()}.download")
    print_log(f"{SCHEME}{entry.name}: downloading {url} to {path}", logger="current")
    try:
        download_url_to_file(url, str(download), progress=False)
    except (URLError, OSError, ValueError) as error:
        download.unlink(missing_ok=True)
        reason = " ".join(str(getattr(error, "reason", None) or error).split())
        raise CheckpointError(
            f"{SCHEME}{entry.name}: cannot download {url} ({type(error).__name__}: {reason}); "
            f"offline, place that file (sha256 {entry.sha256}) at {path}"
        ) from error
    digest = _sha256(download)
    if digest != entry.sha256:
        download.unlink()
        raise CheckpointError(
            f"{SCHEME}{entry.name}: {url} gave a file with sha256 {digest}, expected "
            f"{entry.sha256}; not kept (a changed source or a broken mirror)"
        )
    os.replace(download, path)
    print_log(
        f"{SCHEME}{entry.name}: fetched {url} ({path.stat().st_size} bytes, sha256 "
        f"{digest[:12]}... checked) into {path}",
        logger="current",
    )
    return path


def _convert(entry: PublishedWeights, source: Path, out: Path) -> None:
    """Convert ``source`` as ``tools/convert_weights.py`` does, into ``out``."""
    from mtvision.convert.tflite_conversion import convert_tflite, save_checkpoint
    from mtvision.convert.tflite_graph import require_tflite

    try:
        require_tflite()
    except ImportError as error:
        raise CheckpointError(
            f"{SCHEME}{entry.name}: converting {source} (fetched, sha256 checked) needs the "
            "'tflite' package: pip install 'mtvision[tflite]'"
        ) from error
    model, meta = convert_tflite(source, num_classes=entry.num_classes)
    if meta["model"]["name"] != entry.model:
        raise CheckpointError(
            f"{SCHEME}{entry.name}: {source} converts into create_model("
            f"{meta['model']['name']!r}), not {entry.model!r}"
        )
    if entry.imagenet_names:
        from torchvision.models import MobileNet_V2_Weights

        meta["dataset_meta"] = {
            "classes": list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
        }
    meta["published"] = {"name": entry.name, "url": entry.url, "sha256": entry.sha256}
    save_checkpoint(model, meta, out)
    print_log(f"{SCHEME}{entry.name}: converted {source} into {out}", logger="current")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
