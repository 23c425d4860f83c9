"""What the package asks of its environment: the protobuf runtime its
generated code checks for, and a clear error when that code is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import sessionlog
from sessionlog.v1 import sessionlog_pb2


def test_the_protobuf_requirement_is_the_generated_codes_check() -> None:
    generated = Path(sessionlog_pb2.__file__).read_text(encoding="utf-8")
    found = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*[\w.]+,\s*(\d+),\s*(\d+),\s*(\d+),", generated
    )
    assert found, "the generated module checks no protobuf version"
    major, minor, patch = (int(part) for part in found.groups())
    (protobuf,) = [
        Requirement(r) for r in requires("sessionlog") or [] if Requirement(r).name == "protobuf"
    ]
    assert protobuf.specifier == SpecifierSet(f">={major}.{minor}.{patch},<{major + 1}")


def test_importing_the_source_without_its_generated_code_says_how_to_install(
    tmp_path: Path,
) -> None:
    source = Path(sessionlog.__file__).resolve().parent
    shutil.copytree(source, tmp_path / "sessionlog", ignore=shutil.ignore_patterns("v1"))
    process = subprocess.run(
        [sys.executable, "-c", "import sessionlog"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert process.returncode != 0
    assert "ImportError: sessionlog: its protobuf code (sessionlog.v1) is missing" in process.stderr
    assert "pip install ./clients/python" in process.stderr
