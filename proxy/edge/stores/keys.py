"""Every key of the state store, built here: one prefix per kind of record.

The prefixes are part of the deployment (Redis keys operators scan, records replicas
share, stores kept across upgrades), so each is written once, and two modules that
read the same record (metadata digests are written by the rewrites and read by the
metadata service) build its key the same way.
"""

from __future__ import annotations

from proxy.core.redact import redact

PAGE = "page:"  # a project's page from one upstream, with its validators
REPORT = "report:"  # a wheel's analysis report, by sha256; immutable
REPORT_LOCK = "report-lock:"  # the lease of the replica analysing a wheel
METADATA = "metadata:"  # a wheel's core metadata: sha256 of the bytes in the blob store
# Set once a metadata record exists for one of the project's wheels: a page whose project
# has none is not looked up wheel by wheel (10,000 keys on a big page).
METADATA_PROJECT = "metadata-project:"
REWRITE = "rewrite:"  # a rewrite made, by rewrite digest (for pages)
REWRITTEN = "rewritten:"  # the same record by project and served file name (for downloads)
URL_SHA = "urlsha:"  # the sha256 of a file its index gave none for, by URL
VARIANT = "variant:"  # a variant wheel's variant.json: sha256 of the bytes in the blob store
DOWNLOAD = "download:"  # the lease of the process downloading a file, by sha256
DOWNLOAD_FOLLOWED = "download-followed:"  # processes elsewhere still follow that download
DOWNLOAD_FAILED = "download-failed:"  # why it failed, for its followers (a few seconds)


def page(upstream: str, project: str) -> str:
    # Upstream URLs reach here without credentials; redacted anyway, keys are listed.
    return f"{PAGE}{redact(upstream)}:{project}"


def report(sha256: str) -> str:
    return REPORT + sha256


def report_lock(sha256: str) -> str:
    return REPORT_LOCK + sha256


def metadata(sha256: str) -> str:
    return METADATA + sha256


def metadata_project(project: str) -> str:
    return METADATA_PROJECT + project


def rewrite(digest: str) -> str:
    return REWRITE + digest


def rewritten(project: str, filename: str) -> str:
    return f"{REWRITTEN}{project}/{filename}"


def url_sha(url: str) -> str:
    return URL_SHA + url


def variant(sha256: str) -> str:
    return VARIANT + sha256


def download(sha256: str) -> str:
    return DOWNLOAD + sha256


def download_followed(sha256: str) -> str:
    return DOWNLOAD_FOLLOWED + sha256


def download_failed(sha256: str) -> str:
    return DOWNLOAD_FAILED + sha256
