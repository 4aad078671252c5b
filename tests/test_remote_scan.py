"""Remote checkpoints through the one pipeline: the report of a checkpoint read
over plain HTTP, from the emulated Hub (revisions, subdirectories) or from an
S3-compatible server equals the report of the same files read locally (every
finding, count and summary), costs the requests the issue budgets (counted by
the servers themselves), and every fault a bad network or a lying server can
cause is named for its shard while the rest of the scan goes on.

References: the local scan of the same files (memory-mapped, the path the
project has tested against the safetensors library), the servers' own request
logs, sizes and counts computed here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from ckptscan import open_checkpoint, scan
from ckptscan.cli import main
from ckptscan.layout import discover, resolve
from ckptscan.pipeline import ScanOptions, scan_spec
from ckptscan.remote import RemoteOptions, close_sources
from ckptscan.result import Report
from ckptscan.sources import RetryPolicy
from ckptscan.synth import PLANTS, write_small_minimax

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, max_wait=1.0)
INDEX = "model.safetensors.index.json"


# ---------------------------------------------------------------- helpers


def comparable(report: Report, root: str) -> dict[str, Any]:
    """The report as a dict with its root (a directory or URL) replaced by ROOT,
    and what only a remote scan or a clock says (source, deep timings) left out."""
    d = report.to_dict()
    d.pop("source")
    if d["deep"] is not None:
        d["deep"].pop("seconds")
    return json.loads(json.dumps(d).replace(root.rstrip("/"), "ROOT"))


def remote_scan(url: str, deep: bool = False, retry: RetryPolicy = FAST,
                **options: Any) -> Report:
    specs = resolve(url, remote=RemoteOptions(retry=retry, **options))
    try:
        assert len(specs) == 1
        return scan_spec(specs[0], ScanOptions(deep=deep)).report
    finally:
        close_sources(specs)


def finding(report: Report, code: str) -> Any:
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [(f.code, f.file) for f in report.findings]
    return found[0]



@pytest.fixture
def planted(hub: Any) -> Path:
    """A MiniMax-shaped FP8 checkpoint with every planted defect, 3 shards, served."""
    d, _ = write_small_minimax(hub.root / "org" / "small", shards=3, plant=list(PLANTS))
    return d



# ---------------------------------------------------------------- the same report


@pytest.mark.parametrize("deep", [False, True])
def test_http_directory_report_equals_the_local_one(hub: Any, planted: Path, deep: bool) -> None:
    local = scan(planted, deep=deep)
    hub.clear()
    url = hub.http_url("org/small/")
    remote = remote_scan(url, deep=deep)
    assert comparable(remote, url) == comparable(local, str(planted))
    assert {f.code for f in local.findings} >= {"fp8-scale-missing", "fp8-nan"} if deep else True
    # index.json and config.json, then one request per shard (and with --deep one
    # coalesced range per shard: the tensors of a small shard are one batch)
    shards = len(list(planted.glob("*.safetensors")))
    assert hub.count() == remote.source.requests == 2 + shards * (2 if deep else 1)
    assert remote.source.url == url.rstrip("/") == remote.checkpoint
    assert remote.source.bytes is not None and remote.source.bytes > 0
    assert "url" not in local.to_dict()["source"]


def test_one_safetensors_url_is_a_shard_of_its_checkpoint(hub: Any, planted: Path) -> None:
    shard = sorted(planted.glob("*.safetensors"))[1]
    local = scan(shard)
    assert local.source.kind == "shard"
    hub.clear()
    url = hub.http_url(f"org/small/{shard.name}")
    remote = remote_scan(url)
    assert remote.source.kind == "shard" and remote.checkpoint == url
    assert comparable(remote, hub.http_url("org/small")) == comparable(local, str(planted))
    assert hub.count() == 3  # the header, index.json and config.json beside it
    # a lone single-file model (no index, no config beside it)
    lone = hub.root / "lone"
    lone.mkdir()
    shutil.copy(shard, lone / "model.safetensors")
    remote = remote_scan(hub.http_url("lone/model.safetensors"))
    local = scan(lone / "model.safetensors")
    assert remote.source.kind == local.source.kind == "file"
    assert comparable(remote, hub.http_url("lone")) == comparable(local, str(lone))


def test_hf_revision_and_subdirectory(hub: Any) -> None:
    d, _ = write_small_minimax(hub.root / "org" / "multi" / "fp8", shards=2,
                               plant=["nan_code", "dropped_scale"])
    (hub.root / "org" / "multi" / "README.md").write_text("two variants")
    commit = hub.add_revision("org/multi", "v1.0")
    local = scan(d, deep=True)
    hub.clear()
    remote = remote_scan("hf://org/multi@v1.0/fp8", deep=True)
    assert remote.checkpoint == "hf://org/multi@v1.0/fp8"
    assert remote.source.repo == "org/multi" and remote.source.revision == commit
    assert comparable(remote, "hf://org/multi@v1.0/fp8") == comparable(local, str(d))
    assert hub.count(route="api") == 1 and hub.count() == remote.source.requests
    # the same through the API entry point, and an unknown revision is a usage error
    assert comparable(scan("hf://org/multi/fp8"), "hf://org/multi/fp8") == comparable(
        scan(d), str(d))
    assert main(["report", "hf://org/multi@nope/fp8"]) == 2
    assert scan("hf://org/multi/fp8", revision="v1.0").source.revision == commit
    assert main(["report", "hf://org/multi@main/fp8", "--revision", "v1.0"]) == 2  # two revisions


def test_s3_prefix_report_equals_the_local_one(s3: Any, planted: Path) -> None:
    bucket = f"ckpt-{secrets.token_hex(4)}"
    s3.upload_dir(bucket, "models/small", planted)
    s3.clear()
    url = f"s3://{bucket}/models/small"
    remote = remote_scan(url, deep=True)
    local = scan(planted, deep=True)
    assert comparable(remote, url) == comparable(local, str(planted))
    shards = len(list(planted.glob("*.safetensors")))
    # one listing, index.json and config.json, a header and one data range per shard
    assert s3.count("GET") == remote.source.requests == 1 + 2 + 2 * shards
    assert s3.count("GET", f"/{bucket}/models/small/*.safetensors") == 2 * shards


def test_open_checkpoint_reads_a_url(hub: Any, planted: Path) -> None:
    local = open_checkpoint(str(planted))
    remote = open_checkpoint(hub.http_url("org/small/"))
    assert remote.files == local.files
    assert [len(s) for s in remote.shards] == [len(s) for s in local.shards]
    name = local.shards[0].names[3]
    assert bytes(remote.shards[0].raw(name)) == bytes(local.shards[0].raw(name))
    assert remote.index is not None and local.index is not None
    assert remote.index.weight_map == local.index.weight_map
    assert remote.config == local.config


def test_cli_report_over_http_with_json(hub: Any, planted: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(planted), "--format", "json", "--fail-on", "never"]) == 0
    local = json.loads(capsys.readouterr().out)
    hub.clear()
    assert main(["report", hub.http_url("org/small/"), "--format", "json",
                 "--max-requests", "2"]) == 1  # the planted errors
    remote = json.loads(capsys.readouterr().out)
    assert remote["source"]["requests"] == hub.count() == 5
    assert hub.peak_in_flight <= 2
    for d in (local, remote):
        d.pop("source")
    root = hub.http_url("org/small")
    assert json.loads(json.dumps(remote).replace(root, "ROOT")) == json.loads(
        json.dumps(local).replace(str(planted), "ROOT"))


# ---------------------------------------------------------------- faults


def test_each_fault_is_named_for_its_shard_and_the_rest_is_read(hub: Any, planted: Path) -> None:
    names = sorted(p.name for p in planted.glob("*.safetensors"))
    url = hub.http_url("org/small/")
    local = scan(planted)
    cases = [
        (("reset", f"org/small/{names[0]}"), {"after": 100}, "remote-unreachable", "reset"),
        (("status", f"org/small/{names[1]}"), {"status": 403}, "remote-denied", "403"),
        (("status", f"org/small/{names[2]}"), {"status": 503}, "remote-unreachable", "503"),
        (("throttle", f"org/small/{names[0]}"), {"wait": 0.3}, "remote-rate-limited",
         "gave up"),
    ]
    for (kind, match), params, code, words in cases:
        hub.clear()
        hub.inject(kind, match, **params)
        report = remote_scan(url)
        f = finding(report, code)
        shard = match.rpartition("/")[2]
        assert f.file == f"{url}{shard}" and words in f.message, (kind, f.message)
        # the others were read: every tensor the local scan counts outside that shard
        lost = f.detail.get("lost_tensors", 0)
        assert lost > 0 and report.total.tensors == local.total.tensors - lost, kind
        assert shard in report.shards.rejected
    hub.clear()


def test_a_shard_the_index_lists_that_is_not_there(hub: Any, planted: Path) -> None:
    gone = sorted(planted.glob("*.safetensors"))[2]
    gone.unlink()
    local = scan(planted)
    url = hub.http_url("org/small/")
    remote = remote_scan(url)
    assert comparable(remote, url) == comparable(local, str(planted))
    f = finding(remote, "shard-missing")
    assert f.file == f"{url}{gone.name}" and f.detail["lost_tensors"] > 0
    # on the Hub the listing says it exists: a 404 when read is the same root cause
    hub.inject("status", f"org/small/{sorted(planted.glob('*.safetensors'))[0].name}",
               status=404, where="resolve")
    remote = remote_scan("hf://org/small")
    assert {f.code for f in remote.findings if f.code == "shard-missing"} == {"shard-missing"}
    assert len([f for f in remote.findings if f.code == "shard-missing"]) == 2


def test_a_server_ignoring_range_and_a_truncated_object(hub: Any, planted: Path) -> None:
    names = sorted(p.name for p in planted.glob("*.safetensors"))
    url = hub.http_url("org/small/")
    local = scan(planted)
    hub.inject("ignore-range", f"org/small/{names[1]}")
    remote = remote_scan(url)
    f = finding(remote, "remote-range-ignored")
    assert f.file == f"{url}{names[1]}" and "ignored Range" in f.message
    assert remote.total == local.total  # read all the same, only as far as needed
    assert [x for x in comparable(remote, url)["findings"] if x["code"] !=
            "remote-range-ignored"] == comparable(local, str(planted))["findings"]
    # a truncated object is the parser's finding, as on disk
    hub.clear()
    size = os.path.getsize(planted / names[2])
    os.truncate(planted / names[2], size - 1000)
    local = scan(planted)
    remote = remote_scan(url)
    assert finding(remote, "truncated").file == f"{url}{names[2]}"
    assert comparable(remote, url) == comparable(local, str(planted))


def test_a_header_longer_than_the_limit_is_not_read(hub: Any, planted: Path) -> None:
    from ckptscan import _core

    names = sorted(p.name for p in planted.glob("*.safetensors"))
    with open(planted / names[0], "r+b") as fh:
        fh.write(struct.pack("<Q", _core.MAX_HEADER_LEN + 1))
    local = scan(planted)
    hub.clear()
    remote = remote_scan(hub.http_url("org/small/"))
    assert finding(remote, "header-too-large").file.endswith(names[0])
    assert comparable(remote, hub.http_url("org/small")) == comparable(local, str(planted))
    assert hub.sent_bytes < 2 << 20  # one predicted read per shard, nothing more


def test_an_object_that_changes_after_listing(hub: Any, planted: Path, s3: Any) -> None:
    names = sorted(p.name for p in planted.glob("*.safetensors"))
    hub.inject("change", f"org/small/{names[1]}", where="resolve")
    remote = remote_scan("hf://org/small")
    f = finding(remote, "file-changed")
    assert f.file == f"hf://org/small/{names[1]}" and "listing said" in f.message
    # S3: replaced between the listing and the read (If-Match fails); a farm's
    # listing (no reads started with it) and its scan are apart in time
    bucket = f"chg-{secrets.token_hex(4)}"
    s3.upload_dir(bucket, "c", planted)
    specs = discover([f"s3://{bucket}/c"], remote=RemoteOptions(retry=FAST)).checkpoints
    s3.client().put_object(Bucket=bucket, Key=f"c/{names[0]}",
                           Body=(planted / names[0]).read_bytes()[:-8] + b"\0" * 8)
    try:
        report = scan_spec(specs[0]).report
    finally:
        close_sources(specs)
    f = finding(report, "file-changed")
    assert f.file == f"s3://{bucket}/c/{names[0]}" and "changed" in f.message


def test_max_bytes_refuses_before_reading(hub: Any, planted: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = hub.http_url("org/small/")
    hub.clear()
    assert main(["report", url, "--deep", "--max-bytes", "1K"]) == 2
    err = capsys.readouterr().err
    assert "--max-bytes 1,024" in err and "nothing was read" in err
    assert hub.count("*.safetensors") == 3  # the headers only
    total = sum(os.path.getsize(p) for p in planted.glob("*.safetensors"))
    assert main(["report", url, "--deep", "--max-bytes", str(total), "--fail-on",
                 "never"]) == 0


def test_a_local_report_never_imports_the_remote_code(planted: Path) -> None:
    """Local checkpoints stay as they were: memory-mapped, no network client loaded."""
    import subprocess
    import sys

    code = ("import sys; from ckptscan.cli import main; "
            f"main(['report', {str(planted)!r}, '--format', 'json', '-o', '/dev/null']); "
            "print([m for m in ('ckptscan.remote', 'ckptscan.sources', 'urllib3', 'obstore') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_deep_in_small_batches_holds_few_bytes_at_once(hub: Any, planted: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Many batches: the same report, more (smaller) range requests, and never
    more than AHEAD batches' bytes fetched and not yet judged (plus the batch
    the kernels want, at most one tensor over the batch size)."""
    import ckptscan.remote.deep as remote_deep

    batch = 64 << 10
    monkeypatch.setattr(remote_deep, "BATCH_BYTES", batch)
    held: list[int] = []
    start = remote_deep.Feed._start

    def watched(self: Any, k: int) -> None:
        start(self, k)
        held.append(self._held)

    monkeypatch.setattr(remote_deep.Feed, "_start", watched)
    local = scan(planted, deep=True)
    hub.clear()
    url = hub.http_url("org/small/")
    remote = remote_scan(url, deep=True)
    assert comparable(remote, url) == comparable(local, str(planted))
    shards = len(list(planted.glob("*.safetensors")))
    data_requests = hub.count("*.safetensors") - shards  # less one header read per shard
    assert local.deep is not None
    assert 2 * shards < data_requests < local.deep.tensors  # batches, not tensors
    largest = max(r.bytes for r in local.dtypes.values())  # a bound on any one tensor
    assert held and max(held) <= (remote_deep.AHEAD + 1) * batch + largest


def test_a_server_ignoring_range_serves_a_header_longer_than_the_first_read(
        hub: Any) -> None:
    """No index to predict from: a 256 KiB first read, a header longer than that,
    and a server that answers every Range with the whole object: the header is
    read again from the start, as far as needed, instead of failing."""
    import numpy as np
    from ckptscan.sources.headers import SPECULATIVE_READ
    from safetensors.numpy import save_file

    d = hub.root / "wide"
    d.mkdir()
    tensors = {f"model.layers.{i}.mlp.experts.{j}.w{k}.weight": np.full((2,), i + j, np.float32)
               for i in range(40) for j in range(32) for k in range(3)}
    save_file(tensors, str(d / "model.safetensors"))
    with open(d / "model.safetensors", "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    assert header > SPECULATIVE_READ
    hub.inject("ignore-range", "wide/model.safetensors")
    url = hub.http_url("wide/model.safetensors")
    remote = remote_scan(url)
    local = scan(d / "model.safetensors")
    assert remote.total.tensors == len(tensors)
    assert [f.code for f in remote.findings] == ["remote-range-ignored"] + [
        f.code for f in local.findings]
    # read: the first 256 KiB, then the header from the start; nothing past it
    assert remote.source.bytes is not None
    assert SPECULATIVE_READ + header < remote.source.bytes < SPECULATIVE_READ + header + 4096
