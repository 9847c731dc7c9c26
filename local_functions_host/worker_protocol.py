"""The Functions language worker protocol (``FunctionRpc.proto``) as protobuf message classes.

The Functions host and the Python worker library speak this protocol. It is published compiled to
descriptors inside the ``azure-functions-runtime-v1`` source distribution, which
``tools/worker-protocol/install.sh`` downloads (``scripts/run`` and ``scripts/test`` call it; nothing of it
is committed). The descriptors are read out of that archive without running its code, and the message
classes are built from them at start-up with protobuf's message factory, so no generated module exists
anywhere. :func:`load` returns a namespace shaped like a generated ``FunctionRpc_pb2`` module, which is
what the worker library expects as its ``protos``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import tarfile
from pathlib import Path
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from .errors import HostConfigurationError

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "tools" / "worker-protocol" / "install.sh"
ARCHIVE = ROOT / "tools" / "worker-protocol" / ".cache" / "azure_functions_runtime_v1-1.2.0.tar.gz"
# Where each compiled protocol file sits inside the archive, in dependency order.
MEMBERS = (
    "tests/protos/shared/NullableTypes_pb2.py",
    "tests/protos/identity/ClaimsIdentityRpc_pb2.py",
    "tests/protos/FunctionRpc_pb2.py",
)


class ProtocolUnavailable(HostConfigurationError):
    """The archive with the protocol is missing or changed; the message says what to do."""


def _serialized_descriptor(source: str, member: str, archive: Path) -> bytes:
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise ProtocolUnavailable(f"{member} in {archive.name} holds no serialized descriptor; the pinned package changed")


def descriptor_set(archive: Path = ARCHIVE) -> descriptor_pb2.FileDescriptorSet:
    """The protocol's files as a FileDescriptorSet, preceded by the well-known types they import."""
    if not archive.is_file():
        raise ProtocolUnavailable(
            f"The Functions worker protocol ({archive}) is missing: run "
            f"{INSTALL_SCRIPT.relative_to(ROOT)} (scripts/run and scripts/test do)."
        )
    protocol = []
    with tarfile.open(archive) as opened:
        prefix = opened.getnames()[0].split("/")[0]
        for member in MEMBERS:
            extracted = opened.extractfile(f"{prefix}/{member}")
            if extracted is None:
                raise ProtocolUnavailable(f"{member} is missing from {archive.name}; the pinned package changed")
            protocol.append(descriptor_pb2.FileDescriptorProto.FromString(
                _serialized_descriptor(extracted.read().decode(), member, archive)))
    files = descriptor_pb2.FileDescriptorSet()
    well_known = sorted({dep for f in protocol for dep in f.dependency if dep.startswith("google/protobuf/")})
    for dep in well_known:
        module = importlib.import_module(dep.removesuffix(".proto").replace("/", ".") + "_pb2")
        files.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
    files.file.extend(protocol)
    return files


@functools.cache
def load(archive: Path = ARCHIVE) -> SimpleNamespace:
    """Message classes and enums of ``FunctionRpc.proto`` by name (``protos.StreamingMessage``, ...)."""
    pool = descriptor_pool.DescriptorPool()
    names: dict[str, object] = {}
    for file in descriptor_set(archive).file:
        descriptor = pool.Add(file)
        if file.name.startswith("google/"):
            continue
        file_descriptor = pool.FindFileByName(file.name)
        for name, message in file_descriptor.message_types_by_name.items():
            names[name] = message_factory.GetMessageClass(message)
        for name, enum in file_descriptor.enum_types_by_name.items():
            names[name] = EnumTypeWrapper(enum)
            for value in enum.values:
                names[value.name] = value.number
        del descriptor
    if "StreamingMessage" not in names:
        raise ProtocolUnavailable(f"{archive.name} defines no StreamingMessage; the pinned package changed")
    return SimpleNamespace(**names)
