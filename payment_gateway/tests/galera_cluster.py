"""A 3-node MariaDB Galera cluster on loopback, for the Galera tests and ``make bench``.

``import galera_cluster``, like ``import mariadb_server``. Debian's ``galera-4`` provider
(``/usr/lib/galera/libgalera_smm.so``) with the ``mariadbd`` of the machine's MariaDB: each
node gets a data directory of its own under /tmp, owned by the ``mysql`` system user, and four
free loopback ports (SQL, group communication, incremental and full state transfer, the last
by rsync). Node 1 bootstraps the cluster (``--wsrep-new-cluster``), nodes 2 and 3 join it by
state transfer. The machine's own MariaDB on 3306 is never touched. ``stop()`` kills every
node and removes every directory.

Start-up takes a few seconds: one ``mariadb-install-db``, node 1 started once to make the
cluster's state, whose copies let nodes 2 and 3 join at once without a full state transfer.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = "mariadbd"
INSTALL_DB = "mariadb-install-db"
SYSTEM_USER = "mysql"
NODES = 3
START_TIMEOUT = 60.0


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started here (nothing installed, not root, a node failed)."""


class SqlFailed(subprocess.CalledProcessError):
    """A statement the ``mariadb`` client could not run; the message carries its error."""

    def __str__(self) -> str:
        error = self.stderr.decode(errors="replace").strip() if self.stderr else ""
        return f"{super().__str__()} {error}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing_requirements() -> str | None:
    """Why a cluster cannot start on this machine, or None when it can be tried."""
    for program in (MARIADBD, INSTALL_DB, "mariadb", "rsync"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            return f"{program} is not installed (apt-get install mariadb-server galera-4 rsync)"
    if not PROVIDER.exists():
        return f"{PROVIDER} is missing (apt-get install galera-4)"
    if os.geteuid() != 0:
        return "starting mariadbd as the mysql user needs root"
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return f"no {SYSTEM_USER} system user"
    return None


@dataclass
class Node:
    index: int  # 1-based
    datadir: Path
    port: int  # SQL, on 127.0.0.1
    gcomm_port: int
    ist_port: int
    sst_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.datadir.parent / f"node{self.index}.sock"

    @property
    def error_log(self) -> Path:
        return self.datadir.parent / f"node{self.index}.err"

    def url(self, database: str = "") -> str:
        """The SQLAlchemy URL of this node (the cluster's ``gateway`` user)."""
        return f"mysql+asyncmy://gateway:gateway@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class GaleraCluster:
    root: Path
    nodes: list[Node] = field(default_factory=list)
    start_seconds: float = 0.0  # how long start() took

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, nodes: int = NODES) -> GaleraCluster:
        root = Path(tempfile.mkdtemp(prefix="pgw-galera-"))
        root.chmod(0o755)  # mysql must reach its data directory and socket
        shutil.chown(root, SYSTEM_USER, SYSTEM_USER)  # and write its log, pid and socket there
        cluster = cls(root)
        for index in range(1, nodes + 1):
            cluster.nodes.append(
                Node(
                    index, root / f"node{index}", free_port(), free_port(), free_port(), free_port()
                )
            )
        return cluster

    def start(self) -> None:
        """Bootstrap node 1, join the others; raise ClusterUnavailable on failure."""
        began = time.monotonic()
        try:
            first, *others = self.nodes
            self._install(first)
            # Node 1 makes the cluster's first state (its uuid, the gateway user) and stops
            # cleanly; the joiners start from copies of that state, so they join with nothing
            # to transfer instead of a full rsync transfer each (about 5 s apiece, one at a
            # time). A node that rejoins later (kill_node, start_node) gets a real transfer.
            self.start_node(first, bootstrap=True)
            self._sql(first, _GATEWAY_USER)
            self._shutdown(first)
            for node in others:
                self._copy_state(first, node)
            self.start_node(first, bootstrap=True)
            for node in others:
                self.start_node(node, wait=False)
            for node in others:
                self.wait_for_sync(node)
            self.wait_for_size(len(self.nodes))
        except Exception as exc:
            self.stop()
            if isinstance(exc, ClusterUnavailable):
                raise
            raise ClusterUnavailable(f"the Galera cluster did not start: {exc}") from exc
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Kill every node and remove every directory (also after a failed start)."""
        for node in self.nodes:
            self.kill_node(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def kill_node(self, node: Node) -> None:
        """SIGKILL a node, as a machine crash would: the others go on as a 2-node primary."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        # Its rsync daemon, if it died mid-transfer, is in the node's process group.
        if node.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.process.pid, signal.SIGKILL)

    def start_node(self, node: Node, *, bootstrap: bool = False, wait: bool = True) -> None:
        """Start (or restart) one node and wait until it is synced with the cluster."""
        others = ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes)
        address = "gcomm://" if bootstrap else f"gcomm://{others}"
        provider_options = ";".join(
            (
                f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{node.ist_port}",
                "gcache.size=64M",
                # Loopback: notice a killed node in about 3 s, not the WAN-friendly 5-15 s.
                "evs.suspect_timeout=PT3S",
                "evs.inactive_timeout=PT5S",
                "evs.install_timeout=PT5S",
                "pc.wait_prim_timeout=PT10S",
                "evs.join_retrans_period=PT0.2S",
                "evs.keepalive_period=PT0.5S",
            )
        )
        command = [
            shutil.which(MARIADBD) or f"/usr/sbin/{MARIADBD}",
            "--no-defaults",
            f"--user={SYSTEM_USER}",
            f"--datadir={node.datadir}",
            f"--socket={node.socket_path}",
            f"--pid-file={node.datadir.parent}/node{node.index}.pid",
            f"--log-error={node.error_log}",
            f"--port={node.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-address={address}",
            "--wsrep-cluster-name=pgw-test",
            f"--wsrep-node-name=node{node.index}",
            f"--wsrep-node-address=127.0.0.1:{node.gcomm_port}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{node.sst_port}",
            "--wsrep-slave-threads=2",
            # What every Galera node needs (README.md, Running on a Galera cluster).
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--innodb-flush-log-at-trx-commit=2",  # durability comes from the other nodes
            *_SMALL_INNODB,
            "--max-connections=400",
            "--performance-schema=OFF",
        ]
        if bootstrap:
            command.append("--wsrep-new-cluster")
        node.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the SST scripts die with it
        )
        if wait:
            self.wait_for_sync(node)

    def wait_for_sync(self, node: Node) -> None:
        assert node.process is not None, "the node was never started"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise ClusterUnavailable(
                    f"node {node.index} exited at start:\n{node.log()[-4000:]}"
                )
            if self.node_state(node) == "Synced":
                return
            time.sleep(0.1)
        raise ClusterUnavailable(f"node {node.index} did not sync:\n{node.log()[-4000:]}")

    # -- state ------------------------------------------------------------------------------

    def node_state(self, node: Node) -> str | None:
        """``wsrep_local_state_comment`` (``Synced``, ``Joining``, ...), or None if it is down."""
        if not node.socket_path.exists():
            return None
        try:
            return self._sql(node, "SHOW STATUS LIKE 'wsrep_local_state_comment'").split("\t")[-1]
        except subprocess.CalledProcessError:
            return None

    def cluster_size(self, node: Node) -> int:
        return int(self._sql(node, "SHOW STATUS LIKE 'wsrep_cluster_size'").split("\t")[-1])

    def wait_for_size(self, size: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [n for n in self.nodes if n.running]
            with contextlib.suppress(subprocess.CalledProcessError, ValueError):
                if alive and all(self.cluster_size(n) == size for n in alive):
                    return
            time.sleep(0.1)
        raise ClusterUnavailable(f"the cluster did not reach {size} nodes")

    def sql(self, statement: str, node: Node | None = None) -> str:
        """Run SQL as root on a node (the first running one by default), tab-separated out."""
        return self._sql(node or next(n for n in self.nodes if n.running), statement)

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")

    # -- internals --------------------------------------------------------------------------

    def _install(self, node: Node) -> None:
        result = subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--user={SYSTEM_USER}",
                f"--datadir={node.datadir}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
                *_SMALL_INNODB,
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"{INSTALL_DB} failed: {result.stdout.decode()}{result.stderr.decode()}"
            )

    def _shutdown(self, node: Node) -> None:
        """Stop a node cleanly (SIGTERM): it records its last position in grastate.dat."""
        assert node.process is not None, "the node was never started"
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=START_TIMEOUT)

    @staticmethod
    def _copy_state(source: Node, node: Node) -> None:
        shutil.copytree(source.datadir, node.datadir, symlinks=True)
        (node.datadir / "gvwstate.dat").unlink(missing_ok=True)
        grastate = node.datadir / "grastate.dat"
        # Only node 1 may bootstrap; the copies must join it.
        grastate.write_text(
            grastate.read_text().replace("safe_to_bootstrap: 1", "safe_to_bootstrap: 0")
        )
        for path in (node.datadir, *node.datadir.rglob("*")):
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)

    def _sql(self, node: Node, statement: str) -> str:
        # As root over the node's socket (unix_socket authentication: we are root).
        result = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={node.socket_path}", "-uroot", "-N", "-B"],
            input=statement.encode(),
            capture_output=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise SqlFailed(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout.decode().strip()


# A small redo log and buffer pool: a fast install and state transfer, enough for the tests.
_SMALL_INNODB = ("--innodb-buffer-pool-size=128M", "--innodb-log-file-size=32M")

# The user the gateway and the tests connect as, over TCP (DDL is replicated to every node).
_GATEWAY_USER = (
    "CREATE USER 'gateway'@'127.0.0.1' IDENTIFIED BY 'gateway';"
    " GRANT ALL PRIVILEGES ON *.* TO 'gateway'@'127.0.0.1';"
)
