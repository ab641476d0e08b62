"""The operator's policies applied to one project's files: which files the rules hide, and why.

Pure: the time is an argument. Each hidden file gets every ``rule`` reason that
applies, each naming the file and entry of the rule, so explain can show them.
Quarantine is the only policy that changes with time; `PolicyOutcome.until` says
when the next quarantined file comes out, so callers can cache the outcome until then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from packaging.utils import (
    InvalidWheelFilename,
    parse_wheel_filename,
)

from proxy.core.decide import Reason
from proxy.core.models import File
from proxy.core.rules import Rules
from proxy.core.variants import split_label
from proxy.core.versions import file_version


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    hidden: Mapping[str, tuple[Reason, ...]]  # filename -> reasons
    until: datetime | None = None  # when quarantine next lets a file out


def listed(rules: Rules, project: str) -> bool:
    """Whether a project appears on ``/simple/`` at all."""
    if any(d.match.project == project and d.match.versions is None for d in rules.deny):
        return False
    return not rules.allow or any(a.match.project == project for a in rules.allow)


def apply_policies(
    rules: Rules, project: str, files: Sequence[File], now: datetime
) -> PolicyOutcome:
    hidden: dict[str, tuple[Reason, ...]] = {}
    until: datetime | None = None
    allows = [a for a in rules.allow if a.match.project == project]
    pins = [p for p in rules.pins if p.match.project == project]
    denies = [d for d in rules.deny if d.match.project == project]
    quarantine = rules.quarantine
    if quarantine is not None and project in quarantine.exempt:
        quarantine = None
    for f in files:
        version = file_version(f.filename)
        reasons: list[Reason] = []
        for deny in denies:
            why = f": {deny.reason}" if deny.reason else ""
            if deny.match.covers(project, version):
                reasons.append(_reason(deny.where, f"{deny.match.describe()} is denied{why}"))
            elif version is None and deny.match.versions is not None:
                # As pin and allow do: a file whose version cannot be read may be a denied
                # one, and an installer may still take it (an egg, a misnamed archive).
                what = f"{deny.match.describe()} is denied{why}"
                reasons.append(_reason(deny.where, f"{what}; this file's version is unknown"))
        if rules.allow and not any(a.match.covers(project, version) for a in allows):
            where = allows[0].where if allows else _files_of(r.where for r in rules.allow)
            what = f"{project} {version}" if allows else project
            reasons.append(_reason(where, f"{what} is not on the allow list"))
        for pin in pins:
            if not pin.match.covers(project, version):
                pinned = f"{version} set aside" if version else "a file of unknown version"
                reasons.append(_reason(pin.where, f"pinned to {pin.match.versions}: {pinned}"))
        if rules.yanked == "hide" and f.yanked:
            reasons.append(_reason(rules.yanked_where, "yanked files are hidden"))
        if quarantine is not None:
            uploaded = _upload_time(f.upload_time)
            where = quarantine.where
            if uploaded is None:
                if quarantine.missing_upload_time == "hide":
                    reasons.append(_reason(where, "no upload time, so quarantine cannot clear it"))
            else:
                release = _released(uploaded, quarantine.min_age)
                if release is None or release > now:
                    age = _age(now - uploaded)
                    reasons.append(
                        _reason(
                            where,
                            f"uploaded {age} ago, quarantined until {quarantine.min_age_text} old",
                        )
                    )
                    if release is not None:
                        until = release if until is None else min(until, release)
        if rules.platforms is not None:
            platforms = _platforms(f.filename)
            spec = rules.platforms
            if spec.allow is not None and not any(
                fnmatchcase(p, pattern) for p in platforms for pattern in spec.allow
            ):
                reasons.append(_reason(spec.where, f"platform {_joined(platforms)} not allowed"))
            elif spec.deny and all(
                any(fnmatchcase(p, pattern) for pattern in spec.deny) for p in platforms
            ):
                reasons.append(_reason(spec.where, f"platform {_joined(platforms)} denied"))
        if reasons:
            hidden[f.filename] = tuple(reasons)
    return PolicyOutcome(hidden, until)


def _reason(where: str, message: str) -> Reason:
    return Reason("rule", f"rule {where}: {message}")


def _files_of(wheres: Iterable[str]) -> str:
    """``a.toml: allow[0]``, ``b.toml: allow[1]`` -> ``a.toml, b.toml: allow``."""
    names = dict.fromkeys(w.rsplit(": ", 1)[0] for w in wheres)
    return f"{', '.join(names)}: allow"


def _platforms(filename: str) -> list[str]:
    if not filename.endswith(".whl"):
        return ["any"]
    try:
        tags = parse_wheel_filename(split_label(filename)[0])[3]
    except InvalidWheelFilename:
        return ["any"]
    return sorted({t.platform for t in tags})


def _joined(platforms: list[str]) -> str:
    return "/".join(platforms)


def _released(uploaded: datetime, min_age: float) -> datetime | None:
    """When quarantine clears a file, or None past the calendar's end (an upstream may say
    a file was uploaded in the year 9999): such a file stays quarantined."""
    try:
        return uploaded + timedelta(seconds=min_age)
    except OverflowError:
        return None


def _upload_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return None  # PEP 700 times are UTC with an explicit offset; anything else is a guess
    return value


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
