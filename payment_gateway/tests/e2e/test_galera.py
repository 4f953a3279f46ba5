"""The gateway on a 3-node MariaDB Galera cluster: one replica per node, the real bank simulator.

Galera replicates rows synchronously but locks nothing across nodes: a row lock, SKIP LOCKED
and GET_LOCK are local to the node that takes them, and two nodes writing one row at once is
settled at COMMIT by certification (the loser gets a deadlock error, 1213). What keeps the
gateway right there is what keeps it right on one server: unique keys and guarded updates
(docs/design.md, Operations, Scaling out; README.md, Running on a Galera cluster).

The cluster is started once for the module (about 5 s) and the replicas once for the tests
that share them; the migration test has a database and replicas of its own, and the node
killed under load is the last test, which brings its node back.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from galera_cluster import ClusterUnavailable, GaleraCluster, Node, missing_requirements
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.migrate import alembic_config, migrate

from .conftest import (
    Service,
    bank_deposit,
    bank_env,
    deposits_logged,
    free_port,
    gateway_env,
    post_concurrently,
    start_service,
)

pytestmark = [pytest.mark.e2e, pytest.mark.galera]

IN_CI = os.environ.get("CI", "").lower() == "true"
MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
CARD = {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2042, "cvv": "123"}
PENDING_CARD = CARD | {"number": "4000000000009995"}
DATABASE = "pgw_galera"


def _unavailable(reason: str) -> None:
    message = f"no Galera cluster: {reason}"
    if IN_CI:
        pytest.fail(message)  # CI must run these tests, never skip them
    pytest.skip(message)


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    reason = missing_requirements()
    if reason is not None:
        _unavailable(reason)
    galera = GaleraCluster.create()
    try:
        galera.start()
    except ClusterUnavailable as exc:
        _unavailable(str(exc))
    print(f"Galera cluster of 3 started in {galera.start_seconds:.1f} s")
    try:
        yield galera
    finally:
        galera.stop()


@dataclass
class GaleraStack:
    cluster: GaleraCluster
    bank: Service
    gateways: list[Service]  # gateways[i] talks to cluster.nodes[i] only
    workdir: Path
    metrics_ports: dict[str, int]  # each gateway's Prometheus port, by name

    def payments_counted(self, status: str) -> int:
        """``gateway_payments_total{status}`` added up over the replicas: one per change."""
        total = 0
        for gateway in self.gateways:
            port = self.metrics_ports[gateway.name]
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            line = f'gateway_payments_total{{status="{status}"}} '
            total += sum(
                int(float(row.removeprefix(line)))
                for row in text.splitlines()
                if row.startswith(line)
            )
        return total


def run_migrate(workdir: Path, url: str) -> subprocess.CompletedProcess[str]:
    """``python -m payment_gateway migrate``, as the migration Job runs it."""
    env = os.environ | gateway_env(workdir, "http://127.0.0.1:9", DATABASE_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "payment_gateway", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def start_gateways(
    workdir: Path,
    bank: Service,
    urls: dict[str, str],
    metrics_ports: dict[str, int] | None = None,
    **env: str,
) -> tuple[list[Service], list[str]]:
    """Start a gateway per named database URL, all at once (as replicas roll out together).

    Returns the gateways that started, in the order of ``urls``, and why the others did not.
    """
    started: dict[str, Service] = {}
    failures: list[str] = []

    def start(name: str, url: str) -> None:
        settings = gateway_env(workdir, bank.url, DATABASE_URL=url, **env)
        if metrics_ports is not None:
            settings["METRICS_PORT"] = str(metrics_ports[name])
        try:
            started[name] = start_service(
                name, "payment_gateway.main:app", free_port(), workdir, settings
            )
        except RuntimeError as exc:
            failures.append(str(exc))

    starters = [threading.Thread(target=start, args=item) for item in urls.items()]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    return [started[name] for name in urls if name in started], failures


def stop_all(services: list[Service]) -> None:
    for service in services:
        service.stop()


async def _migrate(url: str, *, at_start: bool = False) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        # What `python -m payment_gateway migrate` runs; at_start: what AUTO_MIGRATE runs.
        await migrate(engine, at_start=at_start)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("galera-bank")
    service = start_service("bank", "bank_simulator.main:app", free_port(), workdir, bank_env())
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def stack(
    cluster: GaleraCluster, bank: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GaleraStack]:
    workdir = tmp_path_factory.mktemp("galera")
    cluster.create_database(DATABASE)
    asyncio.run(_migrate(cluster.nodes[0].url(DATABASE)))
    urls = {f"gateway-node{node.index}": node.url(DATABASE) for node in cluster.nodes}
    ports = {name: free_port() for name in urls}
    gateways, failures = start_gateways(workdir, bank, urls, ports, AUTO_MIGRATE="false")
    try:
        assert not failures, failures
        yield GaleraStack(cluster, bank, gateways, workdir, ports)
    finally:
        stop_all(gateways)


def pay(gateway: Service, card: dict[str, object], **headers: str) -> httpx.Response:
    body = {"card": card, "amount": 100, "currency": "EUR"}
    return httpx.post(
        f"{gateway.url}/api/v1/payments", json=body, headers=MERCHANT | headers, timeout=30
    )


def read(gateway: Service, payment_id: str) -> dict[str, object]:
    response = httpx.get(f"{gateway.url}/api/v1/payments/{payment_id}", headers=MERCHANT)
    assert response.status_code == 200, response.text
    payment: dict[str, object] = response.json()
    return payment


def settled(gateway: Service, refund_id: str, timeout: float = 30) -> object:
    """The refund's status once it is no longer pending (or pending after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{gateway.url}/api/v1/refunds/{refund_id}", headers=MERCHANT)
        assert response.status_code == 200, response.text
        status = response.json()["status"]
        if status != "pending" or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def status_events(gateways: list[Service]) -> list[dict[str, object]]:
    """Every committed status change, from every replica's JSON log lines."""
    events = []
    for gateway in gateways:
        for line in gateway.log().splitlines():
            if line.startswith("{") and '"payment_status_changed"' in line:
                events.append(json.loads(line) | {"replica": gateway.name})
    return events


def conflicts(galera: GaleraCluster) -> int:
    """Certification failures plus brute-force aborts, summed over the running nodes."""
    total = 0
    for node in galera.nodes:
        if node.running:
            rows = galera.sql(
                "SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
                node,
            )
            total += sum(int(line.split("\t")[1]) for line in rows.splitlines())
    return total


# -- migrations (their own database and replicas: they must find it empty) ---------------------


def test_auto_migrate_is_refused_on_a_cluster_and_the_migrate_command_is_not(
    cluster: GaleraCluster, bank: Service, tmp_path: Path
) -> None:
    # The hazard: the migrations' GET_LOCK is granted on two nodes at once.
    one, two = cluster.nodes[0], cluster.nodes[1]
    lock = "SELECT GET_LOCK('payment_gateway_migrations', 0), SLEEP(2);"
    holder = subprocess.Popen(
        ["mariadb", "--no-defaults", f"--socket={one.socket_path}", "-uroot", "-N", "-B"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None
    holder.stdin.write(lock.encode())
    holder.stdin.close()
    time.sleep(0.5)  # node 1 holds the lock now, for two seconds
    assert cluster.sql("SELECT GET_LOCK('payment_gateway_migrations', 0)", two) == "1"
    assert holder.stdout is not None
    out = holder.stdout.read()
    holder.wait(timeout=10)
    assert out.decode().split("\t")[0] == "1"  # both "held" it: GET_LOCK is node-local

    # So two replicas starting together on two nodes refuse to migrate, and say what to do.
    database = "pgw_galera_migrate"
    cluster.create_database(database)
    urls = {f"gateway-{node.index}": node.url(database) for node in (one, two)}
    replicas: list[Service] = []
    try:
        replicas, failures = start_gateways(tmp_path, bank, urls)
        assert len(failures) == 2, failures
        for failure in failures:
            assert "AUTO_MIGRATE refused" in failure
            assert "python -m payment_gateway migrate" in failure
        assert cluster.sql(f"SHOW TABLES FROM {database}") == ""  # nobody migrated

        # The one-shot command (the Kubernetes Job) migrates; then AUTO_MIGRATE on either
        # node finds nothing to do and lets its replica start.
        migrated = run_migrate(tmp_path, two.url(database))
        assert migrated.returncode == 0, migrated.stderr
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert cluster.sql(f"SELECT version_num FROM {database}.alembic_version") == head  # noqa: S608
        for node in (one, two):
            asyncio.run(_migrate(node.url(database), at_start=True))
    finally:
        stop_all(replicas)
        cluster.sql(f"DROP DATABASE IF EXISTS {database}")


# -- exactly once across nodes ----------------------------------------------------------------


def test_forty_duplicates_over_three_nodes_make_one_payment_and_one_deposit(
    stack: GaleraStack,
) -> None:
    key = "galera-one-key"

    responses = post_concurrently(
        [f"{stack.gateways[i % 3].url}/api/v1/payments" for i in range(40)],
        {"card": CARD, "amount": 4000, "currency": "EUR", "reference": key},
        MERCHANT | {"Idempotency-Key": key},
    )
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1, ids
    (payment_id,) = ids
    assert deposits_logged(stack.bank, payment_id) == [payment_id]
    deposit = bank_deposit(stack.bank, payment_id)
    assert (deposit["status"], deposit["captured_amount"]) == ("succeeded", 4000)
    for node in stack.cluster.nodes:  # one row, on every node
        count = stack.cluster.sql(
            f"SELECT COUNT(*) FROM {DATABASE}.payments WHERE idempotency_key = '{key}'",  # noqa: S608
            node,
        )
        assert count == "1"
    for gateway in stack.gateways:
        assert read(gateway, payment_id)["status"] == "succeeded"


def test_reconcilers_on_every_node_resolve_each_pending_payment_once(stack: GaleraStack) -> None:
    # The bank holds these pending for 1 s; every replica's reconciler looks every 0.3 s, and
    # each node's SKIP LOCKED skips only its own locks: all three see the same due rows.
    succeeded_before = stack.payments_counted("succeeded")
    created = [pay(stack.gateways[i % 3], PENDING_CARD) for i in range(30)]
    assert {r.status_code for r in created} == {201}
    ids = {r.json()["id"] for r in created}
    assert {r.json()["status"] for r in created} == {"processing"}

    deadline = time.monotonic() + 60
    settled: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline and len(settled) < len(ids):
        for payment_id in ids - settled.keys():
            payment = read(stack.gateways[len(settled) % 3], payment_id)
            if payment["status"] != "processing":
                settled[payment_id] = payment
        time.sleep(0.3)
    assert {p["status"] for p in settled.values()} == {"succeeded"}
    assert settled.keys() == ids

    # Resolved once each: thirty committed moves to "succeeded" over the three replicas (each
    # counts a change once its commit is done), and by the reconcilers (their log lines).
    # A replica counts just after its commit, which another node may show first: wait for it.
    deadline = time.monotonic() + 10
    while stack.payments_counted("succeeded") - succeeded_before < len(ids):
        assert time.monotonic() < deadline, "fewer resolutions counted than payments resolved"
        time.sleep(0.2)
    resolved = [
        e
        for e in status_events(stack.gateways)
        if e["payment_id"] in ids and e["status"] == "succeeded"
    ]
    assert {e["by"] for e in resolved} == {"reconciler"}
    assert max(Counter(str(e["payment_id"]) for e in resolved).values()) == 1
    by_replica = Counter(str(e["replica"]) for e in resolved)
    for gateway in stack.gateways:
        # Their conflicts were passes lost to another node's claim, not failures.
        assert "reconciliation_pass_failed" not in gateway.log()

    # And a terminal status never changes: every node reads the same, a while later.
    time.sleep(1.5)
    for gateway in stack.gateways:
        for payment_id, first in settled.items():
            now = read(gateway, payment_id)
            assert (now["status"], now["updated_at"]) == (first["status"], first["updated_at"])
    assert stack.payments_counted("succeeded") - succeeded_before == len(ids)  # none twice
    print(f"resolved per replica: {dict(by_replica)}")


def test_fifty_refunds_racing_over_three_nodes_refund_exactly_what_was_captured(
    stack: GaleraStack,
) -> None:
    paid = pay(stack.gateways[0], CARD)
    payment_id = paid.json()["id"]
    assert paid.json()["amount_captured"] == 100
    conflicts_before = conflicts(stack.cluster)

    responses = post_concurrently(
        [f"{stack.gateways[i % 3].url}/api/v1/payments/{payment_id}/refunds" for i in range(50)],
        {"amount": 30},
        MERCHANT,
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 422: 47}, statuses  # no 500, no 503: conflicts were retried
    for refused in (r for r in responses if r.status_code == 422):
        assert [e["field"] for e in refused.json()["errors"]] == ["amount"]
    # A refund whose outcome could not be written (its transaction lost certification races
    # until its retries ran out) answers 201 `pending`, as it must: the bank may have acted.
    # The reconciler asks the bank and settles it (every 0.3 s here).
    created = [r.json() for r in responses if r.status_code == 201]
    assert {refund["status"] for refund in created} <= {"succeeded", "pending"}
    assert [settled(stack.gateways[0], refund["id"]) for refund in created] == ["succeeded"] * 3
    assert bank_deposit(stack.bank, payment_id)["refunded_amount"] == 90  # the bank saw three
    for gateway in stack.gateways:
        assert read(gateway, payment_id)["amount_refunded"] == 90
    # The race did cross nodes: certification (or brute-force aborts) rolled some back.
    assert conflicts(stack.cluster) > conflicts_before


# -- a node killed under load (last: it changes the cluster) ------------------------------------


def test_a_node_killed_under_load_takes_only_its_replica_down_until_it_rejoins(
    stack: GaleraStack,
) -> None:
    galera, gateways = stack.cluster, stack.gateways
    victim = galera.nodes[2]
    answers: dict[str, list[int]] = {g.name: [] for g in gateways}
    created: list[str] = []
    errors: list[str] = []  # what each unanswered request met, for the failure message
    stop = threading.Event()

    def load(gateway: Service) -> None:
        while not stop.is_set():
            try:
                response = pay(gateway, CARD)
            except httpx.HTTPError as error:
                answers[gateway.name].append(0)
                errors.append(f"{gateway.name}: {error!r}")
                continue
            answers[gateway.name].append(response.status_code)
            if response.status_code == 201:
                created.append(response.json()["id"])

    workers = [threading.Thread(target=load, args=(g,)) for g in gateways for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        galera.kill_node(victim)
        galera.wait_for_size(2)
        time.sleep(2)  # the survivors carry on as a 2-node primary component
        survivors_before = [len(answers[g.name]) for g in gateways[:2]]
        time.sleep(2)
        assert [len(answers[g.name]) for g in gateways[:2]] > survivors_before
        assert httpx.get(f"{gateways[2].url}/readyz").status_code == 503
        down = pay(gateways[2], CARD)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/problem+json")

        began = time.monotonic()
        galera.start_node(victim)  # a full state transfer: it was killed, not stopped
        galera.wait_for_size(3)
        rejoin_seconds = time.monotonic() - began
        deadline = time.monotonic() + 15
        while httpx.get(f"{gateways[2].url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the replica never became ready again"
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join()

    for gateway in gateways[:2]:
        assert set(answers[gateway.name]) == {201}, (Counter(answers[gateway.name]), errors)
    assert set(answers[gateways[2].name]) <= {201, 503}, Counter(answers[gateways[2].name])
    assert answers[gateways[2].name][-1] == 201  # recovered
    assert pay(gateways[2], CARD).status_code == 201
    # Nothing written while it was away is missing from the node that came back: it holds
    # every payment answered 201, each as a surviving node has it. The reads are causal, as
    # the gateway's own sessions are (the node first applies what the cluster committed).
    # Not "all succeeded": a 201 may say processing when the bank was slow under the load
    # (CI once counted one short so); such a payment may settle between the two reads.
    listed = ",".join(f"'{payment_id}'" for payment_id in created)

    def payments_on(node: Node) -> str:
        return galera.sql(
            "SET SESSION wsrep_sync_wait = 1;"  # noqa: S608 - our own ids and database name
            f" SELECT id, status FROM {DATABASE}.payments WHERE id IN ({listed}) ORDER BY id",
            node,
        )

    deadline = time.monotonic() + 10
    while (in_rejoined := payments_on(victim)) != payments_on(galera.nodes[0]):
        assert time.monotonic() < deadline, "the rejoined node differs from a survivor"
        time.sleep(0.5)
    assert len(in_rejoined.splitlines()) == len(created)
    for payment_id in created[-5:]:
        assert read(gateways[2], payment_id)["status"] == "succeeded"
    print(
        f"node 3 rejoined in {rejoin_seconds:.1f} s; answers: "
        + ", ".join(f"{name}: {dict(Counter(codes))}" for name, codes in answers.items())
    )
