"""``hostfit probe --variants``: the machine's variant properties as PEP 850 static providers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from proxy.cli import main
from proxy.cli.probe import render_variants
from proxy.core.variant_fit import label_fit, static_properties
from proxy.core.variants import parse_variant_metadata
from proxy.probe.host import probe
from tests.edge.test_probe_cmd import H100
from tests.support.variant_wheels import variant_document


def test_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--variants"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == static_properties(probe().profile)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "probe", "--variants"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == printed


def test_an_h100_host_as_the_providers_would_see_it() -> None:
    found = probe(H100)
    providers = json.loads(render_variants(found))
    nvidia = providers["nvidia"]["static-properties"]
    assert nvidia["cuda_version_lower_bound"][0] == "12.4"
    assert nvidia["cuda_version_upper_bound"][-1] == "12.5"
    assert nvidia["sm_arch"] == ["90_real", "90_virtual"]
    assert providers["x86_64"]["static-properties"]["level"] == ["v4", "v3", "v2", "v1"]
    # Every property the file lists fits the host it was taken from, as hostfit judges it.
    for namespace, entry in providers.items():
        for feature, values in entry["static-properties"].items():
            for value in values:
                doc = variant_document({"x": {namespace: {feature: [value]}}}, (namespace,))
                meta = parse_variant_metadata(json.dumps(doc).encode(), "t")
                assert label_fit(meta.variants["x"], found.profile) is True, (feature, value)
