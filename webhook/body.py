"""Reading a request body without ever holding more than the configured limit in memory."""

from __future__ import annotations

from typing import IO

READ_CHUNK_BYTES = 64 * 1024


class BodyTooLarge(ValueError):
    def __init__(self, limit: int, seen: int | None) -> None:
        size = f"{seen} bytes" if seen is not None else "more"
        super().__init__(f"request body is {size}, larger than the {limit}-byte limit")
        self.limit = limit


def read_limited(stream: IO[bytes], declared_length: int | None, limit: int) -> bytes:
    """The whole body, or BodyTooLarge.

    Content-Length is checked first (cheap refusal without reading), and the limit is enforced
    again while reading, because a chunked body has no Content-Length and a client may lie.
    """
    if declared_length is not None and declared_length > limit:
        raise BodyTooLarge(limit, declared_length)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(READ_CHUNK_BYTES, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit, None)
        chunks.append(chunk)
