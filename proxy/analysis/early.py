"""A wheel's report before its CUDA fat binaries are read: every fact but its GPU code.

A CUDA library is mostly ``.nv_fatbin``, and its GPU architectures are listed only in
the headers of the entries spread through it. Inside a deflated member no entry can be
reached without inflating all that comes before it (nothing says where deflate blocks
begin or how much each yields), so listing them costs most of the wheel's bytes by URL:
80 to 97% of nvidia-cusparse, nvidia-cudnn and torch's CUDA wheels. Everything else the
report holds (the glibc, libstdc++ and CUDA runtime a wheel needs, its executable
stack and x86-64 level, its native files) comes from each library's two ends, for 1 to
18% of those wheels.

So analysis answers twice: first this, once every member's ends are read, then the
report. Each fact here is the report's own, which makes it good for hiding a wheel that
will not load on a host before the report exists (as `proxy.core.cheap_facts` are);
never for vouching for one: the GPU code it leaves out may be what decides. That is
why it is a type of its own and not a `Report`: it cannot be stored as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.report import Report


@dataclass(frozen=True, slots=True)
class EarlyReport:
    report: Report  # the report to come, with every GPU architecture left out
    unread: tuple[str, ...]  # the members whose fat binaries are still to be read

    def to_json(self) -> dict[str, Any]:
        return {"report": self.report.to_json(), "unread": list(self.unread)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarlyReport:
        return cls(Report.from_json(data["report"]), tuple(data["unread"]))
