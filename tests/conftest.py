# Shared pytest fixtures. Each section belongs to its owner; append, do not rewrite.
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

# Let the tests run from a source tree where the package is not installed
# (find_spec does not import the package).
if importlib.util.find_spec("ckptscan") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


# ---- replica fixtures (owner: replica/synth) --------------------------------------
# Full-size sparse replicas of real layouts, written once per session (~0.5 s and
# ~20 MB of disk each). Treat them as read-only: to damage one, write a fresh
# replica or use ckptscan.replica.copy_replica (never shutil.copytree).


@pytest.fixture(scope="session")
def minimax_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ckptscan.replica import write_replica

    return write_replica("minimax_m2", tmp_path_factory.mktemp("minimax_m2"))


@pytest.fixture(scope="session")
def deepseek_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ckptscan.replica import write_replica

    return write_replica("deepseek_v3", tmp_path_factory.mktemp("deepseek_v3"))


@pytest.fixture(scope="session")
def llama_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ckptscan.replica import write_replica

    return write_replica("llama_bf16", tmp_path_factory.mktemp("llama_bf16"))


# ---- remote sources (owner: remote) -------------------------------------------------
# Servers on 127.0.0.1, started and stopped by the tests: ckptscan.testing.hub_server
# (plain HTTP + an emulated Hub, latency and faults on demand) and an S3-compatible
# one (moto's server mode). Each test gets its own HubServer; the S3 server is
# shared by the session (tests use their own buckets).


@pytest.fixture
def hub_server(tmp_path: Path):
    from ckptscan.testing.hub_server import HubServer

    root = tmp_path / "served"
    root.mkdir()
    with HubServer(root) as hub:
        yield hub


@pytest.fixture(scope="session")
def s3_server():
    from ckptscan.testing.s3_server import S3Server

    with S3Server() as s3:
        yield s3


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance (2 CPUs, no dashboard) for the farm's Ray tests,
    started on first use and stopped at the end of the session. Its workers
    import this ckptscan (the source tree's when that is what the tests run)."""
    import os

    import ckptscan
    import ray

    env = {}
    src = Path(__file__).resolve().parents[1] / "python"
    if Path(ckptscan.__file__).resolve().is_relative_to(src.resolve()):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src),
                                                          os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": env} if env else None)
    yield ray
    ray.shutdown()


@pytest.fixture
def hub(hub_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The emulated Hub as the endpoint, with no token and an empty HF_HOME."""
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return hub_server


@pytest.fixture
def s3(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The S3 server's credentials and endpoint in the environment, no other AWS
    setting, its buckets emptied."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    s3_server.clear()
    return s3_server
