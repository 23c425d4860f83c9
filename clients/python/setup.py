"""Builds the package with its protobuf code generated from the repository's proto/.

The generated module is `sessionlog.v1.sessionlog_pb2` (with its `.pyi`), the
path protoc gives `proto/sessionlog/v1/sessionlog.proto`, so it lands inside
this package. It is made at every build from ../../proto and never committed,
so an installed package always matches the proto it was built from. The
version is the server crate's (../../Cargo.toml), and the protobuf runtime
requirement is the one the generated code checks for when it is imported
(`ValidateProtobufRuntimeVersion`): at least that version, below the next
major. An editable install (`pip install -e`) generates into src/ instead.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
PROTO_ROOT = REPOSITORY / "proto"
PROTO_FILE = "sessionlog/v1/sessionlog.proto"


def missing_checkout() -> SetupError:
    return SetupError(
        f"sessionlog: {PROTO_ROOT / PROTO_FILE} not found. The client's protobuf code is "
        "generated from the repository's proto/ at build time, so build it from a "
        "checkout of the repository: `pip install ./clients/python` from its root."
    )


def crate_version() -> str:
    """The `version` of Cargo.toml's [package] table."""
    try:
        text = (REPOSITORY / "Cargo.toml").read_text(encoding="utf-8")
    except OSError as error:
        raise missing_checkout() from error
    package = text.split("[package]", 1)[-1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if not found:
        raise SetupError(f"sessionlog: no [package] version in {REPOSITORY / 'Cargo.toml'}")
    return found.group(1)


# The generated module's check of the protobuf runtime it runs on:
# ValidateProtobufRuntimeVersion(Domain.PUBLIC, major, minor, patch, ...).
RUNTIME_CHECK = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*[\w.]+,\s*(\d+),\s*(\d+),\s*(\d+),"
)


def generate(out: Path) -> Path:
    """protoc on ../../proto into `out` (sessionlog/v1/ with an __init__.py);
    the path of the generated module."""
    if not (PROTO_ROOT / PROTO_FILE).is_file():
        raise missing_checkout()
    try:
        from grpc_tools import protoc
        import grpc_tools
    except ImportError as error:
        raise SetupError(
            "sessionlog: the build needs grpcio-tools (a build requirement: "
            "`pip install ./clients/python` installs it, unless --no-build-isolation)"
        ) from error

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    generated = out / "sessionlog" / "v1"
    generated.mkdir(parents=True, exist_ok=True)
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        str(PROTO_ROOT / PROTO_FILE),
    ]
    if protoc.main(arguments) != 0:
        raise SetupError(f"sessionlog: protoc failed on {PROTO_ROOT / PROTO_FILE}")
    (generated / "__init__.py").write_text(
        '"""Generated from proto/sessionlog/v1/sessionlog.proto at build time."""\n',
        encoding="utf-8",
    )
    return generated / "sessionlog_pb2.py"


def runtime_requirements() -> list[str]:
    """grpcio, and the protobuf runtime the generated code checks for at
    import: at least the version it names, below the next major."""
    with tempfile.TemporaryDirectory() as scratch:
        module = generate(Path(scratch)).read_text(encoding="utf-8")
    found = RUNTIME_CHECK.search(module)
    if not found:
        raise SetupError("sessionlog: the generated code names no protobuf runtime version")
    major, minor, patch = (int(part) for part in found.groups())
    return ["grpcio>=1.85", f"protobuf>={major}.{minor}.{patch},<{major + 1}"]


class BuildWithProto(build_py):
    """build_py, then protoc on ../../proto into the build directory; for an
    editable install (`pip install -e`), into src/ (ignored by git), which
    is where the installed package is then read from."""

    def run(self) -> None:
        if not (PROTO_ROOT / PROTO_FILE).is_file():
            raise missing_checkout()
        if getattr(self, "editable_mode", False):
            super().run()
            generate(HERE / "src")
            return
        out = Path(self.build_lib)
        # Nothing from an earlier build (a module since removed, code
        # generated from an older proto) may survive into this one.
        shutil.rmtree(out / "sessionlog", ignore_errors=True)
        super().run()
        generate(out)


setup(
    version=crate_version(),
    install_requires=runtime_requirements(),
    cmdclass={"build_py": BuildWithProto},
)
