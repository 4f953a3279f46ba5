"""docker-compose.yaml and .env.example: validated against the Compose Specification JSON
schema (vendored by check-jsonschema, so offline) and checked for what `docker compose up -d`
needs to work: start order, health, secrets present, nothing internal published.
"""

from __future__ import annotations

import json
import re
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from bank_simulator.config import Settings as BankSettings
from cryptography.fernet import Fernet, MultiFernet
from payment_gateway.config import Settings as GatewaySettings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; `$$` is a literal $.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.safe_load(stream)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    """.env.example parsed as compose reads env files: KEY=VALUE lines, # comments."""
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example:{number}: not KEY=VALUE"
        assert re.fullmatch(r"[A-Za-z_]\w*", key), f".env.example:{number}: bad name {key!r}"
        assert key not in values, f".env.example:{number}: {key} set twice"
        values[key] = value
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"]
        value = env.get(name)
        if op in {":-", "-"} and (value is None or (op == ":-" and value == "")):
            return arg
        assert value is not None, f"${{{name}}} is not set by .env.example"
        if op == ":?":
            assert value, f"${{{name}}} is empty in .env.example"
        return value

    return _INTERPOLATION.sub(replace, text)


def _variables(text: str) -> set[str]:
    return {m["braced"] or m["bare"] for m in _INTERPOLATION.finditer(text) if not m["escaped"]}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _env_files(service: dict[str, Any]) -> list[str]:
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str) else entries
    return [e if isinstance(e, str) else e["path"] for e in entries]


def _effective_env(
    service: dict[str, Any], env_example: dict[str, str], shell: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's environment, with .env.example standing in for .env.

    `shell` is what the user exported: it wins over .env for ${...} interpolation, but never
    reaches a container through `env_file`.
    """
    env: dict[str, str] = {}
    for path in _env_files(service):
        assert path == ".env", f"unexpected env file {path}"
        env.update(env_example)
    # `environment` wins over `env_file`; values are interpolated from the shell, then .env.
    project_env = {**env_example, **(shell or {})}
    env.update({k: _interpolate(v, project_env) for k, v in _environment(service).items()})
    return env


# --------------------------------------------------------------------------- schema


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    # check-jsonschema (a pinned dev dependency) vendors the Compose Specification schema for its
    # `--builtin-schema vendor.compose-spec`; using the file directly keeps this offline.
    vendored = importlib_resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendored / "compose-spec.json").read_text("utf-8"))
    return schema


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    errors = sorted(_validator(compose_schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_schema_rejects_a_typo(compose: dict[str, Any], compose_schema: dict[str, Any]) -> None:
    """Guards the test above: the schema is strict about unknown service keys."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["depend_on"] = ["mysql"]
    assert list(_validator(compose_schema).iter_errors(broken))


# --------------------------------------------------------------------------- services


def test_mysql_is_8_or_newer_with_healthcheck_and_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    mysql = services["mysql"]
    repository, _, tag = mysql["image"].partition(":")
    assert repository in {"mysql", "docker.io/library/mysql"}
    assert tag, "pin the MySQL version"
    major = int(tag.split(".")[0])
    assert major >= 8, "MySQL 5.7 is end-of-life"
    assert not tag.startswith("5.7")

    test = mysql["healthcheck"]["test"]
    command = " ".join(test if isinstance(test, list) else [test])
    assert "mysqladmin ping" in command
    # Over TCP: the image's temporary init server (socket only) must not count as healthy.
    assert "127.0.0.1" in command

    data_mounts = [v for v in mysql["volumes"] if str(v).split(":")[1] == "/var/lib/mysql"]
    assert len(data_mounts) == 1
    volume = data_mounts[0].split(":")[0]
    assert volume in compose["volumes"], "the data volume must be a named volume"


def test_migrations_run_once_before_the_gateway(services: dict[str, dict[str, Any]]) -> None:
    migrate, gateway = services["migrate"], services["gateway"]
    assert migrate["command"] in (
        ["python", "-m", "payment_gateway", "migrate"],
        "python -m payment_gateway migrate",
    )
    assert migrate["depends_on"]["mysql"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no", "a one-shot service must not be restarted"
    assert migrate["image"] == gateway["image"]
    assert migrate["build"] == gateway["build"]

    assert gateway["depends_on"]["mysql"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_gateway_is_published_on_8080_without_auto_migrate(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], facts: Any
) -> None:
    gateway = services["gateway"]
    published = [str(p).rsplit(":", 1)[-1] for p in gateway["ports"]]
    assert str(facts.gateway_port) in published
    env = _effective_env(gateway, env_example)
    assert env["AUTO_MIGRATE"] == "false"
    assert env["BANK_URL"] == f"http://bank:{facts.bank_port}"


def test_bank_simulator_is_internal_only(services: dict[str, dict[str, Any]], facts: Any) -> None:
    bank = services["bank"]
    assert "ports" not in bank, "the bank simulator must not be published"
    assert str(facts.bank_port) in [str(p) for p in bank["expose"]]
    # The gateway reaches it over the compose network, not through a published port.
    condition = services["gateway"].get("depends_on", {}).get("bank", {}).get("condition")
    assert condition in {None, "service_started", "service_healthy"}
    assert set(_environment(bank)) <= facts.bank_settings


def test_builds_use_the_repository_root_and_existing_dockerfiles(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == {"migrate", "gateway", "bank"}
    for name, build in built.items():
        # The Dockerfiles COPY uv.lock and the root pyproject.toml.
        assert build["context"] == ".", name
        assert (REPO_ROOT / build["dockerfile"]).is_file(), name


# --------------------------------------------------------------------------- secrets


def test_env_example_defines_every_interpolated_variable(env_example: dict[str, str]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # Comments may mention ${...} too; they are harmless either way.
    missing = _variables(text) - env_example.keys()
    assert not missing, f"set in .env.example: {sorted(missing)}"
    _interpolate(text, env_example)  # raises on a required variable that is empty


def test_gateway_and_migration_get_every_secret(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], facts: Any
) -> None:
    for name in ("gateway", "migrate"):
        env = _effective_env(services[name], env_example)
        for secret in facts.gateway_secret_settings:
            assert env.get(secret), f"{name} gets no {secret}"
        unknown = (
            set(_environment(services[name])) - facts.gateway_settings - facts.uvicorn_settings
        )
        assert not unknown, f"{name}: not gateway settings: {sorted(unknown)}"


def test_database_url_points_at_the_mysql_service(
    services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    url = urlsplit(_effective_env(services["gateway"], env_example)["DATABASE_URL"])
    mysql_env = {
        k: _interpolate(v, env_example) for k, v in _environment(services["mysql"]).items()
    }
    assert url.scheme == "mysql+asyncmy"
    assert (url.hostname, url.port) == ("mysql", 3306)
    assert url.username == mysql_env["MYSQL_USER"]
    assert url.password == mysql_env["MYSQL_PASSWORD"]
    assert url.path.lstrip("/") == mysql_env["MYSQL_DATABASE"]
    # Interpolated into a URL: must not need percent-encoding.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", url.password or "")


def test_card_keys_never_reach_the_database_container(
    services: dict[str, dict[str, Any]], facts: Any
) -> None:
    mysql = services["mysql"]
    assert "env_file" not in mysql, "env_file would hand the card encryption keys to MySQL"
    assert not set(_environment(mysql)) & facts.gateway_secret_settings


def test_env_example_values_are_usable_and_marked_as_examples(
    env_example: dict[str, str],
) -> None:
    keys = env_example["CARD_ENCRYPTION_KEYS"].split(",")
    MultiFernet([Fernet(key) for key in keys])  # raises on a malformed key
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "Fernet.generate_key()" in text, "tell operators how to generate a key"
    for name in ("CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "BANK_API_KEY", "MYSQL_PASSWORD"):
        # The comment block right above each secret says it is an example.
        block = text.split(f"\n{name}=")[0].rsplit("\n\n", 1)[-1]
        assert "EXAMPLE" in block + env_example[name], name


def test_real_env_file_is_ignored_by_git() -> None:
    # (test_dockerfiles.py checks that .dockerignore keeps it out of the build context.)
    gitignore = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore


@pytest.mark.parametrize("name", ["gateway", "migrate"])
def test_the_gateway_settings_validate(
    services: dict[str, dict[str, Any]],
    env_example: dict[str, str],
    settings_from_environment: Any,
    name: str,
) -> None:
    """What the container builds at start-up, from its compose environment and .env.example."""
    settings = settings_from_environment(
        GatewaySettings, _effective_env(services[name], env_example)
    )
    assert settings.app_env == "development"
    assert settings.bank_api_key.get_secret_value() == env_example["BANK_API_KEY"]


async def test_the_bank_simulator_accepts_the_gateways_key(
    services: dict[str, dict[str, Any]],
    env_example: dict[str, str],
    settings_from_environment: Any,
    gateway_inquiry_at_the_bank: Any,
) -> None:
    gateway = settings_from_environment(
        GatewaySettings, _effective_env(services["gateway"], env_example)
    )
    bank = settings_from_environment(BankSettings, _effective_env(services["bank"], env_example))
    assert bank.bank_api_key is not None, "the bank would accept requests without a key"
    # 404 for the unknown deposit (None): past the bank's key check.
    assert await gateway_inquiry_at_the_bank(gateway, bank) is None


async def test_a_bank_api_key_exported_in_the_shell_reaches_both_sides(
    services: dict[str, dict[str, Any]],
    env_example: dict[str, str],
    settings_from_environment: Any,
    gateway_inquiry_at_the_bank: Any,
) -> None:
    """The bank gets the key by ${...} interpolation, where the shell beats .env; a gateway
    reading it only through env_file would then send the .env key and get 401s."""
    shell = {"BANK_API_KEY": "another-key-exported-in-the-shell"}
    gateway = settings_from_environment(
        GatewaySettings, _effective_env(services["gateway"], env_example, shell)
    )
    bank = settings_from_environment(
        BankSettings, _effective_env(services["bank"], env_example, shell)
    )
    assert gateway.bank_api_key.get_secret_value() == shell["BANK_API_KEY"]
    assert await gateway_inquiry_at_the_bank(gateway, bank) is None


# --------------------------------------------------------------------------- hardening


BYTES_PER_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _memory_bytes(value: str | int) -> int:
    """A compose byte value (`512M`, `1G`, `1024`) in bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(value).strip().lower())
    assert match, f"not a byte value: {value!r}"
    return int(match[1]) * BYTES_PER_UNIT[match[2]]


@pytest.mark.parametrize(
    "name", ["mysql", "migrate", "gateway", "bank", "redis", "prometheus", "grafana"]
)
def test_every_service_is_hardened(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert service.get("read_only") is True, "read-only root filesystem"
    assert service.get("cap_drop") == ["ALL"]
    assert "no-new-privileges:true" in service.get("security_opt", [])
    assert not service.get("cap_add")
    assert not service.get("privileged")
    limits = service["deploy"]["resources"]["limits"]
    assert 0 < float(limits["cpus"]) <= 2
    assert 0 < _memory_bytes(limits["memory"]) <= 2 * 1024**3
    # A read-only container still needs somewhere for temporary files.
    writable = {str(t).split(":")[0] for t in service.get("tmpfs", [])}
    writable |= {str(v).split(":")[1] for v in service.get("volumes", []) if ":" in str(v)}
    assert "/tmp" in writable or name == "redis", f"{name}: no writable /tmp"  # noqa: S108
    # Built images set their non-root USER; third-party images are told theirs here.
    if "build" not in service:
        uid = str(service["user"]).split(":")[0]
        assert uid.isdigit()
        assert int(uid) != 0


def test_hardening_check_rejects_a_writable_container(
    services: dict[str, dict[str, Any]],
) -> None:
    """Guards the test above: it fails on a service that lacks one of the settings."""
    softened = {**services["bank"], "read_only": False}
    with pytest.raises(AssertionError):
        test_every_service_is_hardened({"bank": softened}, "bank")


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        reference, _, digest = image.partition("@")
        tag = reference.rpartition(":")[2] if ":" in reference else ""
        assert re.search(r"\d", tag), f"{name}: pin a version tag, not {image!r}"
        assert tag != "latest"
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), name
    # The Docker Official Images are pinned by digest as well.
    for name in ("mysql", "redis"):
        assert "@sha256:" in services[name]["image"], name


def test_only_the_api_and_grafana_are_published_and_only_on_loopback(
    services: dict[str, dict[str, Any]], facts: Any
) -> None:
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"gateway", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not loopback-only"
    gateway_ports = [str(p).rsplit(":", 1)[-1] for p in published["gateway"]]
    assert gateway_ports == [str(facts.gateway_port)], "metrics must not be published"


def test_gateway_metrics_port_is_internal(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], facts: Any
) -> None:
    gateway = services["gateway"]
    assert str(facts.gateway_metrics_port) in [str(p) for p in gateway["expose"]]
    env = _effective_env(gateway, env_example)
    assert env["METRICS_PORT"] == str(facts.gateway_metrics_port)


def test_backend_network_is_internal_and_unpublished_services_use_only_it(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    networks = compose["networks"]
    assert networks["backend"]["internal"] is True
    for name, service in services.items():
        attached = set(service["networks"])
        assert "backend" in attached, name
        if not service.get("ports"):
            assert attached == {"backend"}, f"{name} needs no route off the host"
        for network in attached:
            assert network in networks, f"{name}: unknown network {network}"


# --------------------------------------------------------------------------- redis, monitoring


def test_redis_serves_the_gateway_and_keeps_nothing_on_disk(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], facts: Any
) -> None:
    redis = services["redis"]
    repository, _, tag = redis["image"].partition("@")[0].partition(":")
    assert repository in {"redis", "docker.io/library/redis"}
    assert tag.split(".")[0] == "7"
    assert "ports" not in redis
    url = urlsplit(_effective_env(services["gateway"], env_example)["REDIS_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "redis",
        "redis",
        facts.redis_port,
        "/0",
    )
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    command = redis["command"]
    assert command[command.index("--save") + 1] == "", "no RDB snapshots"
    assert command[command.index("--appendonly") + 1] == "no"
    assert "--maxmemory" in command, "bounded below the container's memory limit"


@pytest.fixture(scope="module")
def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (mount,) = [
        v for v in services["prometheus"]["volumes"] if ":/etc/prometheus/prometheus.yml" in v
    ]
    with (REPO_ROOT / mount.split(":")[0]).open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.safe_load(stream)
    return loaded


def test_prometheus_scrapes_both_services_on_their_metrics_ports(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]], facts: Any
) -> None:
    targets = {
        target
        for job in prometheus_config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"gateway:{facts.gateway_metrics_port}", f"bank:{facts.bank_port}"}
    for job in prometheus_config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
    # Each target is a service that exposes that port on the network Prometheus is on.
    for target in targets:
        host, port = target.split(":")
        assert port in [str(p) for p in services[host]["expose"]], target
        assert set(services[host]["networks"]) & set(services["prometheus"]["networks"])


def test_grafana_is_provisioned_from_the_repository(
    services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provisioning = REPO_ROOT / mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yaml").read_text("utf-8")
    )["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090" in [str(p) for p in services["prometheus"]["expose"]]
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "payment-gateway.yaml").read_text("utf-8")
    )["providers"]
    dashboards = REPO_ROOT / mounts[provider["options"]["path"]]
    assert list(dashboards.glob("*.json")), "the provider's folder holds the dashboards"
    for path in (mounts["/etc/grafana/provisioning"], mounts[provider["options"]["path"]]):
        assert any(v.endswith(":ro") for v in grafana["volumes"] if v.startswith(path))
    env = _effective_env(grafana, env_example)
    assert env["GF_SECURITY_ADMIN_PASSWORD"], "no default admin password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
