"""Builds the package with its protobuf code generated from the repository's proto/.

The generated module is `sessionlog.v1.sessionlog_pb2` (with its `.pyi`), the
path protoc gives `proto/sessionlog/v1/sessionlog.proto`, so it lands inside
this package. It is made at every build from ../../proto and never committed,
so an installed package always matches the proto it was built from. The
version is the server crate's (../../Cargo.toml), and the protobuf runtime
requirement is the one of the generator the build used: generated code
refuses to load on an older runtime.
"""

from __future__ import annotations

import re
import shutil
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


def runtime_requirements() -> list[str]:
    """grpcio, and the protobuf runtime the code generator asks for (its own
    dependency on protobuf is the range its generated code loads on)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        tools = requires("grpcio-tools") or []
    except PackageNotFoundError as error:
        raise SetupError("sessionlog: the build needs grpcio-tools") from error
    protobuf = [r.split(";")[0].strip() for r in tools if re.match(r"protobuf\b", r)]
    if not protobuf:
        raise SetupError(f"sessionlog: grpcio-tools names no protobuf runtime: {tools}")
    return ["grpcio>=1.85", *protobuf]


class BuildWithProto(build_py):
    """build_py, then protoc on ../../proto into the build directory."""

    def run(self) -> None:
        if not (PROTO_ROOT / PROTO_FILE).is_file():
            raise missing_checkout()
        out = Path(self.build_lib)
        # Nothing from an earlier build (a module since removed, code
        # generated from an older proto) may survive into this one.
        shutil.rmtree(out / "sessionlog", ignore_errors=True)
        super().run()
        from grpc_tools import protoc
        import grpc_tools

        well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
        generated = out / "sessionlog" / "v1"
        generated.mkdir(parents=True)
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


setup(
    version=crate_version(),
    install_requires=runtime_requirements(),
    cmdclass={"build_py": BuildWithProto},
)
