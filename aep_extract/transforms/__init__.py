"""Per-file transforms: turn each source file into other objects on the way to the sink.

The interface (:class:`Transform`, :class:`Outputs`, :func:`run_transform`) needs
nothing beyond the core. The built-in Parquet transforms (``project``, ``filter``,
``jsonl``, ``parquet``) need the ``parquet`` extra and import pyarrow only when a
spec names them (:func:`open_transform`). See :doc:`/transforms`.
"""

from __future__ import annotations

from ..models import TransformOutput
from .base import (
    Outputs,
    Transform,
    TransformContext,
    output_key,
    output_keys,
)
from .reader import CountingReader, run_transform
from .spec import TransformSpec, open_transform, parse_spec, transform_class

__all__ = [
    "CountingReader",
    "Outputs",
    "Transform",
    "TransformContext",
    "TransformOutput",
    "TransformSpec",
    "open_transform",
    "output_key",
    "output_keys",
    "parse_spec",
    "run_transform",
    "transform_class",
]
