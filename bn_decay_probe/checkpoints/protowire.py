"""Protocol buffers read from their wire format, without a generated class or TensorFlow: the
few fields that tell what a ``.pb`` / ``.onnx`` file is (:mod:`.sniff`), and the nodes of a
tf_keras SavedModel's ``keras_metadata.pb`` (:mod:`.tf2_objects`).

A message is a sequence of (field number, wire type, value): varints (type 0), 8- and 4-byte
fixed values (types 1 and 5) and length-delimited bytes (type 2: strings, nested messages)."""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple, Union

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
Field = Tuple[int, int, Union[int, bytes]]


def varint(data: bytes, at: int) -> Tuple[int, int]:
    """(value, position after it) of the varint at ``at``."""
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise ValueError("cut varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def fields(data: bytes, cut: bool = False) -> Iterator[Field]:
    """Every (field number, wire type, value) of a serialized message; the value is an int for
    varints, bytes otherwise. ValueError where the bytes stop being a message; with ``cut``
    (the head of a file), a length-delimited field that runs past the end is the last, with
    the bytes there are."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if kind == VARINT:
            value, at = varint(data, at)
            yield number, kind, value
            continue
        if kind == LENGTH:
            size, at = varint(data, at)
        elif kind in (FIXED64, FIXED32):
            size = 8 if kind == FIXED64 else 4
        else:
            raise ValueError("wire type %d" % kind)
        if at + size > len(data):
            if cut and kind == LENGTH:
                yield number, kind, data[at:]
                return
            raise ValueError("cut field")
        yield number, kind, data[at:at + size]
        at += size


def leading_fields(data: bytes, limit: int = 32) -> Optional[List[Field]]:
    """The first ``limit`` fields of a message whose bytes may be cut short (the head of a
    file): the fields read before the cut; None when the bytes do not start as a message."""
    found: List[Field] = []
    try:
        for field in fields(data, cut=True):
            found.append(field)
            if len(found) == limit:
                break
    except ValueError:
        if not found:
            return None
    return found
