"""The payload converter agents' clients and workers use: pydantic's, built once.

The SDK makes a new payload converter for every workflow activation it decodes
and for every completion it encodes. Each ``PydanticPayloadConverter`` starts
with an empty cache of pydantic type adapters, so every activation rebuilt the
validation schema of each type it decoded (a step's outcome, a run's carry), and
each construction made that cache anew. Instances of ``SharedPydanticConverter``
share one set of encoders, and with it one cache: making one copies a dict.
"""

from __future__ import annotations

from typing import ClassVar

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import EncodingPayloadConverter

__all__ = ["SharedPydanticConverter"]


class SharedPydanticConverter(PydanticPayloadConverter):
    """``PydanticPayloadConverter`` whose instances share their encoders and type adapters.

    The encoders hold no state but the adapter cache, which is safe to share
    between threads: two threads building the same adapter at once both succeed.
    """

    _shared: ClassVar[dict[bytes, EncodingPayloadConverter] | None] = None

    def __init__(self) -> None:
        shared = SharedPydanticConverter._shared
        if shared is None:
            super().__init__()
            SharedPydanticConverter._shared = dict(self.converters)
        else:
            self._set_converters(*shared.values())
