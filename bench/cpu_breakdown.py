"""Where a process's CPU per order goes, by component: py-spy samples of the thread holding the GIL, sorted.

The benchmarks measure a process's CPU per order (``/proc``); this splits it. py-spy (``requirements-dev.txt``)
samples the process from outside, with ``--gil`` (only the thread holding the GIL, so a sample is Python work
being done) and full file names, and each sample is put in the first component of :data:`COMPONENTS` whose
rule matches its stack. A component's share of the samples times the process's CPU per order is its CPU per
order. It is an estimate: CPU spent outside the GIL (SQLite's engine, system calls) counts where its Python
caller is, and the sampling rate (100/s) gives a few thousand samples per phase.

Sampling another process needs ptrace rights (root, or ``kernel.yama.ptrace_scope`` 0, or ``SYS_PTRACE`` in a
container); without them :class:`Sampler` says so and the phase's table has no breakdown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = f"{os.sep}site-packages{os.sep}"


def _project(*paths: str) -> Callable[[str], bool]:
    """Files of the project: a module (``.py``) or any file under a package."""
    prefixes = tuple(str(ROOT / path) + ("" if path.endswith(".py") else os.sep) for path in paths)
    return lambda file: file.startswith(prefixes)


def _library(*packages: str) -> Callable[[str], bool]:
    parts = tuple(f"{SITE}{package}{os.sep}" for package in packages)
    return lambda file: any(part in file for part in parts)


def _stdlib(*modules: str) -> Callable[[str], bool]:
    parts = tuple(f"{os.sep}{module}{os.sep}" for module in modules)
    return lambda file: SITE not in file and any(part in file for part in parts)


def _either(*tests: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda file: any(test(file) for test in tests)


_sending = _project("orders/adapters/servicebus_publishers.py", "orders/adapters/servicebus_batch_sender.py")
#: The function's own code; the bare consumer's handling of a message is its "function".
_function_body = _project("orders/service_layer", "function_app", "orders/bootstrap.py", "orders/validation.py",
                          "bench/bare_consumer.py")
_sql = _either(_library("sqlalchemy", "psycopg"), _project("orders/adapters/sql"), _stdlib("sqlite3"))
_logging = _either(_stdlib("logging"), _project("service_platform/logs.py"))
_redis = _either(_library("redis"), _project("orders/adapters/redis_submission_limits.py",
                                             "orders/adapters/redis_accepted_records.py"))
_telemetry = _library("opentelemetry", "azure/monitor")
_worker = _either(_library("azure_functions_runtime", "azure/functions"),
                  _project("local_functions_host/worker.py", "local_functions_host/invocation.py",
                           "local_functions_host/binding_data.py"))
_sdk = _library("azure/servicebus")
_http = _library("uvicorn", "starlette", "httptools", "h11")


@dataclass(frozen=True)
class Rule:
    component: str
    matches: Callable[[list[str]], bool]


def _within(context: Callable[[str], bool], inner: Callable[[str], bool]) -> Callable[[list[str]], bool]:
    """A stack (files, outermost first) that is in ``context`` and, deeper, in ``inner``."""
    def matches(files: list[str]) -> bool:
        for at, file in enumerate(files):
            if context(file):
                return any(inner(deeper) for deeper in files[at:])
        return False
    return matches


def _any(test: Callable[[str], bool]) -> Callable[[list[str]], bool]:
    return lambda files: any(test(file) for file in files)


#: In order: the first rule a sample's stack matches is its component.
COMPONENTS: tuple[Rule, ...] = (
    Rule("function body: Service Bus send (the order in intake, its status event in processing)", _any(_sending)),
    Rule("function body: SQL", _within(_function_body, _sql)),
    Rule("function body: Redis", _any(_redis)),
    Rule("function body: logging", _within(_function_body, _logging)),
    Rule("function body: telemetry (spans, metrics)", _within(_function_body, _telemetry)),
    Rule("function body: the rest", _any(_function_body)),
    Rule("telemetry: spans, metrics and their export", _any(_telemetry)),
    Rule("worker library: invocation and bindings", _any(_worker)),
    Rule("Service Bus SDK: receive, settle, sessions", _any(_sdk)),
    Rule("HTTP server", _any(_http)),
    Rule("host: logging", _any(_logging)),
    Rule("host: the rest (event loop, listeners)", lambda files: True),
)


def _files(stack: str) -> list[str]:
    """The file of each frame of a py-spy raw stack (``function (file:line);...``)."""
    files = []
    for frame in stack.split(";"):
        opening = frame.rfind(" (")
        files.append(frame[opening + 2:frame.rfind(":")] if opening >= 0 else frame)
    return files


def shares(raw_lines: Iterable[str]) -> dict[str, float]:
    """Each component's share of the samples in py-spy's raw output (one ``stack count`` per line)."""
    counts: Counter[str] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        files = _files(stack)
        component = next(rule.component for rule in COMPONENTS if rule.matches(files))
        counts[component] += int(count)
    total = sum(counts.values())
    return {rule.component: counts[rule.component] / total for rule in COMPONENTS} if total else {}


class Sampler:
    """``py-spy record`` on a process, from ``start()`` to ``stop()``, which returns the component shares."""

    RATE = 100

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.error: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._output: Path | None = None

    @staticmethod
    def executable() -> str | None:
        beside = Path(sys.executable).with_name("py-spy")
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        executable = self.executable()
        if executable is None:
            self.error = "py-spy is not installed (it is in requirements-dev.txt: scripts/test installs it)"
            return
        handle, name = tempfile.mkstemp(prefix="py-spy-", suffix=".txt")
        os.close(handle)
        self._output = Path(name)
        self._process = subprocess.Popen(
            [executable, "record", "--pid", str(self.pid), "--gil", "--nonblocking", "--full-filenames",
             "--rate", str(self.RATE), "--format", "raw", "--output", str(self._output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> dict[str, float]:
        if self._process is None or self._output is None:
            return {}
        self._process.send_signal(signal.SIGINT)  # py-spy writes what it sampled when interrupted
        try:
            _, stderr = self._process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            _, stderr = self._process.communicate()
        try:
            text = self._output.read_text(encoding="utf-8") if self._output.exists() else ""
        finally:
            self._output.unlink(missing_ok=True)
        result = shares(text.splitlines())
        if not result:
            detail = stderr.decode(errors="replace").strip().splitlines()
            self.error = (f"py-spy took no samples of process {self.pid}"
                          + (f": {detail[-1]}" if detail else "")
                          + " (sampling another process needs root or ptrace rights)")
        return result
