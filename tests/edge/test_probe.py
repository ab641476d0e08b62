"""hostfit probe against fake machines: /proc trees, nvidia-smi scripts and a fake libcuda
(tests/fixtures/probe). The real machine is tested in test_probe_machine.py."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.core.profile import parse_profile
from proxy.probe.host import Probe, ProbeEnv, probe, x86_64_level

FIXTURES = Path(__file__).parents[1] / "fixtures" / "probe"
ROOTS = FIXTURES / "roots"
BIN = FIXTURES / "bin"


def _env(root: str, **changes: object) -> ProbeEnv:
    """A machine with glibc 2.28, libstdc++ from this machine, and no GPU unless asked."""
    env = ProbeEnv(
        root=ROOTS / root,
        machine="x86_64",
        glibc=lambda: "glibc 2.28",
        nvml=None,
        nvidia_smi=None,
        libcuda=None,
    )
    return replace(env, **changes)  # type: ignore[arg-type]


def _facts(result: Probe) -> dict[str, str]:
    return result.profile.values()


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cc = shutil.which("cc")
    assert cc is not None, "a C compiler is needed to build the fake libcuda"
    out = tmp_path_factory.mktemp("libcuda")
    built = {}
    for name, flags in (("gpus", []), ("no-device", ["-DNO_DEVICE"])):
        target = out / f"libcuda-{name}.so.1"
        source = FIXTURES / "fake_libcuda.c"
        subprocess.run([cc, "-shared", "-fPIC", *flags, "-o", target, source], check=True)
        built[name] = target
    return built


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            _env("h100", nvidia_smi=str(BIN / "nvidia-smi-h100")),
            {"cuda": "12.4", "sm": "9.0", "isa": "x86-64-v4"},
        ),
        # the kernel module alone gives the driver; no GPU list without nvidia-smi
        (_env("h100"), {"cuda": "12.4", "isa": "x86-64-v4"}),
        (
            _env("bare-v2", nvidia_smi=str(BIN / "nvidia-smi-two-gpus")),
            {"cuda": "12.2", "sm": "8.0+8.6", "isa": "x86-64-v2"},
        ),
        # driver 470's nvidia-smi has no compute_cap: the driver still counts
        (
            _env("r470-v3", nvidia_smi=str(BIN / "nvidia-smi-r470")),
            {"cuda": "11.4", "isa": "x86-64-v3"},
        ),
        (_env("r470-v3"), {"cuda": "11.4", "isa": "x86-64-v3"}),
        # no trace of NVIDIA anywhere: the host says so
        (_env("bare-v2"), {"cuda": "none", "isa": "x86-64-v2"}),
        (
            _env("bare-v2", nvidia_smi=str(BIN / "no-such-nvidia-smi")),
            {"cuda": "none", "isa": "x86-64-v2"},
        ),
        # nvidia-smi present but failing: something NVIDIA is there, so not "none"
        (_env("bare-v2", nvidia_smi=str(BIN / "nvidia-smi-broken")), {"isa": "x86-64-v2"}),
        # a CPU the scheduler may pick lacks AVX-512: the lower level counts
        (_env("hybrid"), {"cuda": "none", "isa": "x86-64-v3"}),
        (_env("no-flags"), {"cuda": "none"}),
        (_env("no-such-root"), {"cuda": "none"}),
        # the CPU level is an x86-64 fact only
        (_env("h100", machine="aarch64"), {"cuda": "12.4"}),
    ],
)
def test_gpu_and_cpu(env: ProbeEnv, expected: dict[str, str]) -> None:
    facts = _facts(probe(env))
    assert {k: v for k, v in facts.items() if k in {"cuda", "sm", "isa"}} == expected


def test_libcuda_gives_cuda_and_gpus(fake_libcuda: dict[str, Path]) -> None:
    result = probe(_env("bare-v2", libcuda=str(fake_libcuda["gpus"])))
    assert _facts(result)["cuda"] == "12.4"
    assert _facts(result)["sm"] == "8.6+9.0"
    assert "cuDriverGetVersion" in result.found["cuda"]
    assert "cuDeviceGetAttribute" in result.found["sm"]


def test_libcuda_without_devices(fake_libcuda: dict[str, Path]) -> None:
    facts = _facts(probe(_env("bare-v2", libcuda=str(fake_libcuda["no-device"]))))
    assert facts["cuda"] == "12.4"
    assert "sm" not in facts


def test_libcuda_version_beats_the_driver_table(fake_libcuda: dict[str, Path]) -> None:
    # the R470 kernel module would map to 11.4; the driver's own answer wins
    env = _env("r470-v3", libcuda=str(fake_libcuda["gpus"]))
    assert _facts(probe(env))["cuda"] == "12.4"


def test_nvidia_smi_gpus_beat_libcuda_gpus(fake_libcuda: dict[str, Path]) -> None:
    env = _env("h100", nvidia_smi=str(BIN / "nvidia-smi-h100"), libcuda=str(fake_libcuda["gpus"]))
    assert _facts(probe(env))["sm"] == "9.0"


def test_not_loadable_libcuda_is_no_evidence() -> None:
    assert _facts(probe(_env("bare-v2", libcuda="libcuda-not-here.so.1")))["cuda"] == "none"


@pytest.mark.parametrize(
    ("changes", "libc"),
    [
        ({}, "glibc-2.28"),
        ({"glibc": lambda: "glibc 2.41.9000"}, "glibc-2.41"),
        ({"glibc": lambda: None, "musl_loader": BIN / "ld-musl-x86_64.so.1"}, "musl-1.2"),
        ({"glibc": lambda: None, "musl_loader": BIN / "ld-musl-garbled"}, None),
        ({"glibc": lambda: None, "musl_loader": BIN / "no-such-loader"}, None),
        # this machine's python asks for glibc's loader, not musl's
        ({"glibc": lambda: None}, None),
        ({"glibc": lambda: None, "executable": FIXTURES / "fake_libcuda.c"}, None),
    ],
)
def test_libc(changes: dict[str, object], libc: str | None) -> None:
    result = probe(_env("bare-v2", **changes))
    assert _facts(result).get("libc") == libc
    assert result.found["libc"]


def test_musl_loader_found_through_the_interpreter(tmp_path: Path) -> None:
    # An executable whose PT_INTERP names a musl loader, as Python's does on Alpine.
    loader = tmp_path / "ld-musl-x86_64.so.1"
    shutil.copy(BIN / "ld-musl-x86_64.so.1", loader)
    executable = tmp_path / "python"
    cc = shutil.which("cc")
    assert cc is not None
    subprocess.run(
        [cc, "-x", "c", "-", "-o", executable, f"-Wl,--dynamic-linker={loader}"],
        input=b"int main(void) { return 0; }\n",
        check=True,
    )
    result = probe(_env("bare-v2", glibc=lambda: None, executable=executable))
    assert _facts(result)["libc"] == "musl-1.2"
    assert str(loader) in result.found["libc"]


def test_glibcxx_from_a_given_library_that_is_not_elf() -> None:
    result = probe(_env("bare-v2", libstdcxx=FIXTURES / "fake_libcuda.c"))
    assert "glibcxx" not in _facts(result)
    assert "not an ELF file" in result.found["glibcxx"]


def test_glibcxx_from_a_library_without_glibcxx(fake_libcuda: dict[str, Path]) -> None:
    result = probe(_env("bare-v2", libstdcxx=fake_libcuda["gpus"]))
    assert "glibcxx" not in _facts(result)


def test_glibcxx_not_found_without_proc(tmp_path: Path) -> None:
    # the loaded library is looked up in <root>/proc/self/maps
    result = probe(_env("no-such-root"))
    assert "glibcxx" not in _facts(result)
    assert result.found["glibcxx"] == "libstdc++.so.6 does not load"


def test_probe_profile_is_a_valid_profile() -> None:
    result = probe(_env("h100", nvidia_smi=str(BIN / "nvidia-smi-h100")))
    text = result.profile.to_string()
    assert parse_profile(text, "url").to_string() == text
    assert "python" not in result.profile.values()
    assert "impl" not in result.profile.values()


V2 = "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"
V3 = V2 + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("", 1),
        ("cmov cx8 fpu fxsr mmx syscall sse sse2", 1),
        # Core 2: SSSE3 but no SSE4.1 or POPCNT
        ("cmov cx8 fpu fxsr mmx syscall sse sse2 pni ssse3 cx16 lahf_lm", 1),
        (V2, 2),
        (V2 + " avx avx2 bmi1 bmi2 f16c fma movbe xsave", 2),  # no LZCNT ("abm")
        (V3, 3),
        (V3 + " avx512f avx512bw avx512cd avx512dq", 3),  # no AVX512VL
        (V3 + " avx512f avx512bw avx512cd avx512dq avx512vl", 4),
        # AVX-512 without the v3 set (never seen, but levels are cumulative)
        ("avx512f avx512bw avx512cd avx512dq avx512vl", 1),
    ],
)
def test_x86_64_level(flags: str, level: int) -> None:
    assert x86_64_level(frozenset(flags.split())) == level


def test_a_mac_is_told_no_linux_machine(tmp_path: Path) -> None:
    """On an Apple-silicon Mac platform.machine() says arm64, which a profile reads as
    Linux aarch64: with a libc from the server's default, its /p/ URL hid every macOS
    wheel. Off Linux the probe tells no machine (nor an x86-64 level)."""
    not_elf = tmp_path / "python"
    not_elf.write_bytes(b"\xcf\xfa\xed\xfe" + bytes(60))  # a Mach-O header
    for machine in ("arm64", "x86_64"):
        result = probe(
            _env(
                "bare-v2",
                machine=machine,
                system="Darwin",
                glibc=lambda: None,
                executable=not_elf,
                libstdcxx=not_elf,
            )
        )
        assert "arch" not in _facts(result) and "isa" not in _facts(result)
        assert "not Linux" in result.found["arch"]
