"""Limits that keep analysis of hostile wheels bounded in time and memory."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.errors import HostfitError

MiB = 1024 * 1024
GiB = 1024 * MiB


class Unanalysable(HostfitError):
    """The wheel's bytes cannot be analysed; the message is the report's reason.

    Raised for properties of the bytes themselves (never for network trouble), so the
    resulting report is as permanent as the bytes are.
    """

    status_code = 422


@dataclass(frozen=True, slots=True)
class Limits:
    max_members: int = 200_000
    max_central_directory: int = 64 * MiB
    # One ELF member may be a 2 GiB CUDA library; anything past this is refused.
    max_member_size: int = 4 * GiB
    # Bytes inflated across the whole wheel, re-inflation after backward seeks included.
    max_inflated_total: int = 24 * GiB
    # Deflate cannot exceed about 1032:1; real ELF members stay far below 100:1.
    max_compression_ratio: int = 250
    max_elf_members: int = 20_000
    # Native binaries of every format (ELF included), each a record in the report.
    max_native_members: int = 20_000


class Budget:
    """Counts inflated bytes against Limits.max_inflated_total."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise Unanalysable(f"inflating more than {self.limit} bytes in total")
