"""A directory of images as a repair's data, and the preprocessing a model's inputs need.

A model file does not say how its inputs were scaled (MobileNetV2 wants [-1, 1], ResNet50
caffe-style BGR, EfficientNet raw pixels), so the directory comes with ``--preprocess
MODULE:FUNCTION`` (e.g. ``keras.applications.mobilenet_v2:preprocess_input``), applied to each
batch of float32 pixels 0-255, or ``--preprocess none`` for the pixels as they are.

Images are found in the directory and its subdirectories (class folders, as Keras's
``image_dataset_from_directory`` reads them), in sorted order, read one batch at a time with
Pillow and resized (bilinear) to the model's input height and width; RGB for 3 channels,
grayscale for 1. The checks that need no image decoding run first."""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..errors import BackendUnavailableError, DataError, ProbeConfigError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
NO_PREPROCESSING = "none"
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageFolder:
    """The images of a directory (found, not yet read)."""

    path: str
    files: Tuple[str, ...]  # relative to ``path``, sorted

    def batch_count(self, batch_size: int, max_batches: Optional[int] = None) -> int:
        count = -(-len(self.files) // batch_size)
        return count if max_batches is None else min(count, max_batches)

    def batches(self, batch_size: int, shape: Optional[Sequence[Optional[int]]],
                max_batches: Optional[int] = None) -> Iterator[np.ndarray]:
        """Batches of float32 pixels 0-255, each image resized to ``shape`` (the model's input,
        ``(None, height, width, channels)``)."""
        height, width, channels = _size(self.path, shape)
        image_module = _pillow()
        for number, start in enumerate(range(0, len(self.files), batch_size)):
            if max_batches is not None and number >= max_batches:
                return
            names = self.files[start:start + batch_size]
            batch = np.empty((len(names), height, width, channels), np.float32)
            for row, name in enumerate(names):
                batch[row] = _read(image_module, os.path.join(self.path, name), height, width,
                                   channels)
            yield batch


def open_images(path: str) -> ImageFolder:
    """The images under directory ``path``; DataError when there is none."""
    files = sorted(os.path.relpath(os.path.join(directory, name), path)
                   for directory, _, names in os.walk(path) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise DataError("data %s is a directory without images (%s)"
                        % (path, ", ".join(IMAGE_SUFFIXES)))
    return ImageFolder(path, tuple(files))


def check_preprocess(spec: Any) -> Optional[str]:
    """``spec`` checked: None, "none", or MODULE:FUNCTION (imported later, by
    :func:`load_preprocess`)."""
    if spec is None or spec == NO_PREPROCESSING:
        return spec
    if not isinstance(spec, str) or not _FUNCTION.match(spec):
        raise ProbeConfigError("--preprocess must be MODULE:FUNCTION (such as "
                               "keras.applications.mobilenet_v2:preprocess_input) or none, got "
                               "%r" % (spec,))
    return spec


def load_preprocess(spec: Optional[str]) -> Optional[Callable[[Any], Any]]:
    """The function ``spec`` names; None for no preprocessing."""
    if check_preprocess(spec) in (None, NO_PREPROCESSING):
        return None
    module_name, _, function_name = str(spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProbeConfigError("--preprocess %s: module %s cannot be imported (%s)"
                               % (spec, module_name, first_line(exc))) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ProbeConfigError("--preprocess %s: %s has no function %s"
                               % (spec, module_name, function_name))

    def preprocess(batch: Any) -> np.ndarray:
        try:
            return np.asarray(function(batch))
        except Exception as exc:  # the user's function, on this batch
            raise DataError("--preprocess %s failed on a batch of shape %s: %s"
                            % (spec, np.shape(batch), first_line(exc))) from None

    return preprocess


def _size(path: str, shape: Optional[Sequence[Optional[int]]]) -> Tuple[int, int, int]:
    if shape is None or len(shape) != 4 or None in tuple(shape)[1:] or \
            int(shape[3]) not in _MODES:
        raise DataError("data %s is a directory of images, but the model's input %s is not "
                        "(batch, height, width, 1, 3 or 4 channels) with a fixed size: resize "
                        "the images yourself and give a .npy" % (path, _text(shape)))
    return int(shape[1]), int(shape[2]), int(shape[3])


def _text(shape: Optional[Sequence[Optional[int]]]) -> str:
    if shape is None:
        return "shape (unknown)"
    return "shape (%s)" % ", ".join("?" if d is None else str(d) for d in shape)


def _pillow() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError:
        raise BackendUnavailableError("reading images needs Pillow: pip install pillow") \
            from None


def _read(image_module: Any, path: str, height: int, width: int, channels: int) -> np.ndarray:
    try:
        with image_module.open(path) as image:
            resized = image.convert(_MODES[channels]).resize((width, height),
                                                             image_module.BILINEAR)
            pixels = np.asarray(resized, np.float32)
    except (OSError, ValueError) as exc:
        raise DataError("data %s is not an image Pillow reads (%s)"
                        % (path, first_line(exc))) from None
    return pixels.reshape(height, width, channels)
