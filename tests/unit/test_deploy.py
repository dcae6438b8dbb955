"""The container files: compose.yaml is a valid Compose file (`docker compose config` where
Docker Compose is installed, else the Compose Specification's JSON schema, vendored in
deploy/compose-spec.json) describing the production shape, and the Dockerfile builds a slim,
non-root image with a health check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
RIDEFLOW = {"migrate", "api-1", "api-2", "dispatcher-1", "dispatcher-2", "jobs", "recorder"}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    # The specification's schema is draft 7 (its `$schema` omits the `#` jsonschema looks for).
    spec = jsonschema.Draft7Validator(
        json.loads((ROOT / "deploy" / "compose-spec.json").read_text())
    )
    spec.validate(compose())
    broken = compose()
    broken["services"]["redis"]["healthcheck"]["retrys"] = 3  # a misspelt key
    with pytest.raises(jsonschema.ValidationError):
        spec.validate(broken)


def test_compose_file_with_docker_compose_when_installed() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("Docker Compose is not installed here: the schema test validates instead")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(ROOT / ".env.example"),
         "config", "--quiet"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_compose_describes_the_production_shape() -> None:
    services = compose()["services"]
    assert set(services) == RIDEFLOW | {"redis", "postgres"}
    assert "--appendonly" in services["redis"]["command"]
    assert "postgis" in services["postgres"]["image"]
    for name in RIDEFLOW:
        s = services[name]
        assert s["command"][0] == {"migrate": "db"}.get(name, name.split("-")[0])
        env = s["environment"]
        assert env["RIDEFLOW_ENV"] == "production" and env["RIDEFLOW_REDIS_URL"].startswith(
            "redis://redis:"
        )
        assert "@postgres:5432/" in env["RIDEFLOW_DATABASE_URL"]
        if name == "migrate":
            assert s["depends_on"] == {"postgres": {"condition": "service_healthy"}}
            continue
        assert env["RIDEFLOW_DATABASE_AUTO_MIGRATE"] == "false"  # only `migrate` migrates
        assert s["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    for name, s in services.items():
        if name != "migrate":
            assert s["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api-1"]["healthcheck"]["test"])


def test_every_variable_compose_reads_is_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = (ROOT / ".env.example").read_text()
    given = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    assert used and used <= given, used - given


def test_the_dockerfile_is_multi_stage_slim_non_root_and_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) >= 2 and all(s.endswith("-slim") for s in stages)
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["rideflow"\]', text, re.MULTILINE)
