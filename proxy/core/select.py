"""Choices across a page's files, after each file has its own verdict and each version
its build (`proxy.core.families`: ``2.5.1+cu121``, ``2.5.1+cpu``, ...).

- No foreign fallback: a pure wheel whose only native code is for other systems or
  machines (a Windows DLL in a ``py3-none-any`` wheel) is hidden where its version
  also ships Linux platform wheels; it would install as the fallback for a host whose
  Linux wheel is hidden, and fail at import. Only for a host known to be Linux (it
  told its machine, libc or libstdc++): for any other, those binaries may be its own.
- No surprise builds: when every wheel of a version is hidden, hide that version's
  sdist too, so the installer takes an older version with a fitting wheel instead
  of compiling one. Only where there is one: with no older version's wheel fitting (a
  Python too new for any wheel yet), hiding the sdists would leave the installer an
  ancient sdist-only release, or nothing, where it would have built the newest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from packaging.version import Version

from proxy.core.decide import Reason, Verdict
from proxy.core.frontier import considered, is_linux_platform, is_pure
from proxy.core.models import File
from proxy.core.profile import HostProfile
from proxy.core.report import Report
from proxy.core.versions import file_version


def select(
    files: Iterable[File],
    verdicts: Mapping[str, Verdict],
    profile: HostProfile,
    *,
    reports: Mapping[str, Report] | None = None,
    hide_sdists_without_wheels: bool = True,
) -> dict[str, Verdict]:
    """Verdicts for every file, with the page-level choices applied.

    ``reports``: by sha256, for the pure wheels' native files.
    """
    files = list(files)
    result = dict(verdicts)
    if reports:
        for f in files:
            reason = foreign_only(f, reports.get(f.sha256 or ""), files, profile)
            if reason is not None:
                _add(result, f.filename, reason)
    if hide_sdists_without_wheels:
        _hide_orphan_sdists(files, result, profile)
    return result


def foreign_only(
    file: File, report: Report | None, files: Iterable[File], profile: HostProfile
) -> Reason | None:
    """A pure wheel that carries native code for other systems only, where its version
    also ships Linux platform wheels (which the host would have taken if they fitted)."""
    if report is None or report.status != "ok" or not report.native_files:
        return None
    if not is_pure(file.filename):
        return None
    if profile.arch is None and profile.libc is None and profile.glibcxx is None:
        # Not known to be Linux: for a Windows or macOS client (whose User-Agent names
        # its system, so hostfit takes no Linux fact from it) these binaries are the ones.
        return None
    arch = profile.arch.value if profile.arch is not None else None
    platforms = report.native_platforms()
    # A .NET assembly runs wherever a CLR does, whatever machine its header names.
    if any(
        os == "dotnet" or (os == "linux" and (arch is None or machine == arch))
        for os, machine in platforms
    ):
        return None
    version = file_version(file.filename)
    if not any(
        f.is_wheel and is_linux_platform(f.filename) and file_version(f.filename) == version
        for f in files
    ):
        return None
    shown = sorted(f"{os} {machine}" for os, machine in platforms)
    first = report.native_files[0].path
    return Reason(
        "native",
        f"native: carries binaries only for {', '.join(shown)} (e.g. {first}),"
        f" and {version} ships Linux wheels of its own",
    )


def _hide_orphan_sdists(
    files: list[File], verdicts: dict[str, Verdict], profile: HostProfile
) -> None:
    any_kept: dict[Version, bool] = {}  # by version with wheels: whether one is kept
    # The fallback must be one pip takes: not yanked, its Requires-Python this host's,
    # and a pre-release only where no final release fits.
    fitting: set[Version] = set()
    for f in files:
        version = file_version(f.filename)
        if not f.is_wheel or version is None:
            continue
        verdict = verdicts[f.filename]
        public, keep = Version(version.public), verdict.keep
        # A wheel hidden only on the libc its tags imply was never this host's to install
        # if it has another libc: it says nothing of whether a wheel of its version fits.
        assumed = not keep and all(r.assumed for r in verdict.reasons)
        any_kept[public] = any_kept.get(public, False) or keep or assumed
        if keep and considered(f, profile):
            fitting.add(public)
    finals = {v for v in fitting if not v.is_prerelease}
    if not fitting:
        return
    oldest_fit = min(finals or fitting)
    for f in files:
        if f.is_wheel:
            continue
        version = file_version(f.filename)
        if version is None:
            continue
        public = Version(version.public)
        if any_kept.get(public) is False and oldest_fit < public:
            message = (
                f"sdist: no wheel of {version.public} fits this host, and building "
                "from source is not offered in its place"
            )
            _add(verdicts, f.filename, Reason("sdist", message))


def _add(verdicts: dict[str, Verdict], filename: str, reason: Reason) -> None:
    verdict = verdicts[filename]
    verdicts[filename] = replace(verdict, reasons=(*verdict.reasons, reason))
