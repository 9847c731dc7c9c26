"""Regenerates the Functions language worker protocol messages (FunctionRpc.proto) with grpcio-tools.

The protocol comes from a package on the Python package index (tools/worker-protocol/install.sh downloads
it): its source distribution ships the protocol compiled to descriptors. They are read without importing
that code, gathered into a FileDescriptorSet and handed to protoc, which writes fresh Python modules.
"""

from __future__ import annotations

import ast
import importlib
import tarfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "tools" / "worker-protocol" / "install.sh"
ARCHIVE = ROOT / "tools" / "worker-protocol" / ".cache" / "azure_functions_runtime_v1-1.2.0.tar.gz"
# Path of each compiled protocol file inside the archive, in dependency order.
MEMBERS = (
    "tests/protos/shared/NullableTypes_pb2.py",
    "tests/protos/identity/ClaimsIdentityRpc_pb2.py",
    "tests/protos/FunctionRpc_pb2.py",
)


class ProtocolUnavailable(RuntimeError):
    """The archive with the protocol is missing; the message says how to get it."""


def _serialized_descriptor(source: str, member: str) -> bytes:
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise ProtocolUnavailable(f"{member} in {ARCHIVE.name} holds no serialized descriptor; the pinned package changed")


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The protocol's files as a FileDescriptorSet, with the well-known types they import."""
    if not ARCHIVE.is_file():
        raise ProtocolUnavailable(f"{ARCHIVE} is missing: run {INSTALL_SCRIPT.relative_to(ROOT)} (scripts/test does)")
    protocol = []
    with tarfile.open(ARCHIVE) as archive:
        prefix = archive.getnames()[0].split("/")[0]
        for member in MEMBERS:
            extracted = archive.extractfile(f"{prefix}/{member}")
            if extracted is None:
                raise ProtocolUnavailable(f"{member} is missing from {ARCHIVE.name}; the pinned package changed")
            protocol.append(descriptor_pb2.FileDescriptorProto.FromString(
                _serialized_descriptor(extracted.read().decode(), member)))
    files = descriptor_pb2.FileDescriptorSet()
    well_known = sorted({dep for f in protocol for dep in f.dependency if dep.startswith("google/protobuf/")})
    for dep in well_known:
        module = importlib.import_module(dep.removesuffix(".proto").replace("/", ".") + "_pb2")
        files.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
    files.file.extend(protocol)
    return files


def generate(out_dir: Path) -> Path:
    """Writes FunctionRpc_pb2.py (and its imports) under ``out_dir``; returns ``out_dir``."""
    files = descriptor_set()
    descriptors = out_dir / "protocol.binpb"
    descriptors.write_bytes(files.SerializeToString())
    names = [f.name for f in files.file if not f.name.startswith("google/")]
    status = protoc.main(["protoc", f"--descriptor_set_in={descriptors}", f"--python_out={out_dir}", *names])
    if status != 0:
        raise RuntimeError(f"protoc failed ({status}) generating {names}")
    if not (out_dir / "FunctionRpc_pb2.py").is_file():
        raise RuntimeError(f"protoc wrote no FunctionRpc_pb2.py into {out_dir}")
    return out_dir
