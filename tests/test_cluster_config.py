"""cluster/aws.yaml: valid for the installed Ray's cluster launcher, and the properties the
cluster depends on. Offline: Ray's own prepare/validate steps, no AWS, no Ray started."""

import json
import re
import socket
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.specifiers import SpecifierSet
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "cluster" / "aws.yaml"
RAY_PIN = re.compile(r"""ray\[([a-z,]+)\]==([^\s"']+)""")


def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a connection (AWS, PyPI, a Ray cluster) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the cluster config check tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def config(offline) -> dict:
    """The config as `ray up` sees it: merged with Ray's AWS defaults, then validated."""
    prepared = prepare_config(raw_config())
    validate_config(prepared)
    return prepared


def head(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def workers(config: dict) -> dict[str, dict]:
    types = config["available_node_types"]
    return {name: spec for name, spec in types.items() if name != config["head_node_type"]}


def is_spot(spec: dict) -> bool:
    return spec["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"


def start_command(commands: list[str]) -> str:
    (command,) = [c for c in commands if "ray start" in c]
    return command


def test_the_commands_are_the_configs_own_not_rays_defaults():
    # A key left out is filled from Ray's defaults.yaml, which installs a nightly wheel.
    raw = raw_config()
    for key in (
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
    ):
        assert key in raw, key
    assert not {"head_node", "worker_nodes", "min_workers"} & raw.keys()
    assert raw["auth"]["ssh_user"] == "ubuntu"


def test_rays_validation_rejects_what_its_schema_forbids(offline):
    # The checks the other tests rely on are live: the same calls reject a broken config.
    fractional = raw_config()
    next(iter(workers(fractional).values()))["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(fractional))
    legacy = raw_config()
    legacy["head_node"] = {"InstanceType": "m5.large"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(legacy))


def test_the_head_runs_the_driver_and_no_trial(config):
    resources = head(config)["resources"]
    assert resources["CPU"] == 0
    assert resources.get("GPU", 0) == 0
    assert head(config)["max_workers"] == 0
    assert "InstanceMarketOptions" not in head(config)["node_config"]  # never preempted
    command = start_command(config["head_start_ray_commands"])
    assert "--num-cpus=0" in command.split()
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in command.split()


def test_every_worker_type_has_a_gpu_and_whole_resources(config):
    assert workers(config)
    for name, spec in workers(config).items():
        resources = spec["resources"]
        assert all(type(value) is int for value in resources.values()), name
        assert resources.get("GPU", 0) >= 1, name
        assert resources.get("CPU", 0) >= 1, name
        assert 0 <= spec["min_workers"] <= spec["max_workers"], name
    assert config["max_workers"] >= sum(s["min_workers"] for s in workers(config).values())
    assert config["idle_timeout_minutes"] > 0


def test_spot_workers_come_first_and_on_demand_is_the_smaller_fallback(config):
    spot = [spec for spec in workers(config).values() if is_spot(spec)]
    on_demand = [spec for spec in workers(config).values() if not is_spot(spec)]
    assert spot and on_demand
    assert max(s["priority"] for s in on_demand) < min(s["priority"] for s in spot)
    assert max(s["max_workers"] for s in on_demand) < min(s["max_workers"] for s in spot)


def test_every_node_installs_the_installed_ray_and_no_nightly(config):
    for key in ("head_setup_commands", "worker_setup_commands"):
        pins = [pin for command in config[key] for pin in RAY_PIN.findall(command)]
        assert pins, key
        for extras, version in pins:
            assert version == ray.__version__, (key, version)
            assert {"default", "tune"} <= set(extras.split(",")), (key, extras)
    text = json.dumps(config)
    for nightly in ("ray-wheels", "nightly", ".whl", "dev0", "ray-3.0"):
        assert nightly not in text, nightly


def _venv_python(commands: list[str]) -> str:
    (python,) = {m for c in commands for m in re.findall(r"--python (\S+/bin/python)", c)}
    return python


def test_every_node_gets_the_projects_python(config):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = config[key]
        venvs = [re.search(r"uv venv --python (\S+) .*?(\S+)$", c) for c in commands]
        ((version, venv),) = [m.groups() for m in venvs if m]
        assert version == running, (key, version)
        assert version + ".0" in SpecifierSet(project["requires-python"])
        # Ray and raydm go into that environment, and it comes first on PATH.
        assert _venv_python(commands) == f"{venv}/bin/python", key
        venv_bin = venv.replace("~", "$HOME", 1) + "/bin"
        assert any(f'export PATH="{venv_bin}:$PATH"' in c for c in commands), key


def test_raydm_is_installed_from_the_synced_project(config):
    for key in ("head_setup_commands", "worker_setup_commands"):
        installs = [c for c in config[key] if RAY_PIN.search(c)]
        (editable,) = {m for c in installs for m in re.findall(r"-e (\S+)", c)}
        assert editable in config["file_mounts"], key
    # `ray up` runs from the repository root, so the local side of the mount is that root.
    local = (ROOT / config["file_mounts"][editable]).resolve()
    assert local == ROOT
    assert tomllib.loads((local / "pyproject.toml").read_text())["project"]["name"] == "raydm"
    for kept in ("search_spaces", "raydm", "pyproject.toml"):
        assert (local / kept).exists()
        assert not any(fnmatch(kept, pattern) for pattern in config["rsync_exclude"]), kept


def test_nothing_is_open_to_the_world(config):
    text = json.dumps(config)
    assert "0.0.0.0" not in text
    assert "::/0" not in text
    # Ray adds SSH from 0.0.0.0/0 to any security group it creates; naming the groups in
    # every node type is what stops it creating one.
    for name, spec in config["available_node_types"].items():
        assert spec["node_config"].get("SecurityGroupIds"), name


def test_the_dashboard_listens_on_loopback_and_workers_join_the_head(config):
    command = start_command(config["head_start_ray_commands"]).split()
    assert "--head" in command
    assert [a for a in command if a.startswith("--dashboard-host")] == [
        "--dashboard-host=127.0.0.1"
    ]
    assert "--port=6379" in command
    worker = start_command(config["worker_start_ray_commands"]).split()
    assert "--address=$RAY_HEAD_IP:6379" in worker
    assert config["head_start_ray_commands"][0] == "ray stop"
    assert config["worker_start_ray_commands"][0] == "ray stop"


def test_every_node_has_an_instance_profile_and_the_pinned_ami(config):
    amis = set()
    for name, spec in config["available_node_types"].items():
        node = spec["node_config"]
        profile = node.get("IamInstanceProfile", {})
        assert re.fullmatch(r"arn:aws:iam::\S+:instance-profile/\S+", profile.get("Arn", "")), name
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", node.get("ImageId", "")), name
        amis.add(node["ImageId"])
    assert len(amis) == 1
