"""Farms of remote checkpoints: an S3 prefix walked whole, an organisation of the
emulated Hub (its model listing paged), a list of URLs; each checkpoint stored
under its URL and keyed by what its listing says (ETags, LFS hashes, the
commit), so that a rescan of an unchanged remote farm sends only listing
requests (counted by the servers); on Ray, one request budget for all workers.

References: the local scans of the same files, the servers' request logs, the
store read with plain sqlite3."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ckptscan import Severity, scan
from ckptscan.cli import main
from ckptscan.farm import scan_farm
from ckptscan.remote import RemoteOptions
from ckptscan.result import Report
from ckptscan.sources import RetryPolicy
from ckptscan.synth import write_small_minimax

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, max_wait=1.0)


def comparable(report: Report, root: str) -> dict[str, Any]:
    d = report.to_dict()
    d.pop("source")
    return json.loads(json.dumps(d).replace(root.rstrip("/"), "ROOT"))


def stored(db: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (kind, repo, revision, fingerprint, tensors, errors) read with sqlite3."""
    con = sqlite3.connect(db)
    try:
        return {r[0]: r[1:] for r in con.execute(
            "SELECT path, kind, repo, revision, fingerprint, tensors, errors FROM checkpoints")}
    finally:
        con.close()


def stored_report(db: Path, path: str) -> Report:
    con = sqlite3.connect(db)
    try:
        (blob,) = con.execute("SELECT report FROM checkpoints WHERE path = ?", (path,)).fetchone()
    finally:
        con.close()
    return Report.from_dict(json.loads(blob))




def org(root: Path) -> dict[str, Path]:
    """An organisation: two models, one with its checkpoint in a subdirectory
    beside a second one, and a repository without weights."""
    out = {}
    out["org/alpha"], _ = write_small_minimax(root / "org" / "alpha", shards=2, seed=1)
    out["org/beta/fp8"], _ = write_small_minimax(root / "org" / "beta" / "fp8", shards=3,
                                                 seed=2, plant=["nan_code", "dropped_scale"])
    out["org/beta/bf16"], _ = write_small_minimax(root / "org" / "beta" / "bf16", shards=1,
                                                  seed=3)
    (root / "org" / "docs").mkdir(parents=True)
    (root / "org" / "docs" / "README.md").write_text("no weights here")
    return out


# ---------------------------------------------------------------- S3


def test_s3_farm_is_stored_by_url_and_a_rescan_only_lists(s3: Any, tmp_path: Path) -> None:
    bucket = f"farm-{secrets.token_hex(4)}"
    local = {}
    for k, name in enumerate(("a", "b", "nested/c")):
        d, _ = write_small_minimax(tmp_path / "src" / name, shards=k + 1, seed=k,
                                   plant=["nan_code"] if k == 1 else None)
        s3.upload_dir(bucket, f"farm/{name}", d)
        local[f"s3://{bucket}/farm/{name}"] = d
    s3.clear()
    db = tmp_path / "farm.db"
    result = scan_farm([f"s3://{bucket}/farm/"], db=db, remote=RemoteOptions(retry=FAST))
    assert result.scanned == sorted(local) and result.failed == []
    rows = stored(db)
    assert sorted(rows) == sorted(local)
    for url, d in local.items():
        assert comparable(stored_report(db, url), url) == comparable(scan(d), str(d))
        assert rows[url][0] == "dir" and rows[url][4] == scan(d).total.tensors
    first = s3.count()
    # unchanged: the listing only (one GET of the bucket with list-type=2), nothing read
    s3.clear()
    again = scan_farm([f"s3://{bucket}/farm"], db=db, remote=RemoteOptions(retry=FAST))
    assert again.scanned == [] and sorted(again.unchanged) == sorted(local)
    assert [r.path for r in s3.log] == [f"/{bucket}"] and first > 10
    assert stored(db) == rows
    # one object replaced (new ETag): that checkpoint alone is read again
    target = local[f"s3://{bucket}/farm/b"]
    shard = sorted(target.glob("*.safetensors"))[0]
    s3.client().put_object(Bucket=bucket, Key=f"farm/b/{shard.name}",
                           Body=shard.read_bytes()[:-4] + b"\0\0\0\0")
    s3.clear()
    third = scan_farm([f"s3://{bucket}/farm"], db=db, remote=RemoteOptions(retry=FAST))
    assert third.scanned == [f"s3://{bucket}/farm/b"]
    assert s3.count("GET", f"/{bucket}/farm/a/*") == 0
    assert stored(db)[f"s3://{bucket}/farm/b"][3] != rows[f"s3://{bucket}/farm/b"][3]
    # a checkpoint deleted from the bucket is pruned like one deleted from disk
    c = s3.client()
    for obj in c.list_objects_v2(Bucket=bucket, Prefix="farm/nested/")["Contents"]:
        c.delete_object(Bucket=bucket, Key=obj["Key"])
    fourth = scan_farm([f"s3://{bucket}/farm"], db=db, remote=RemoteOptions(retry=FAST))
    assert fourth.removed == [f"s3://{bucket}/farm/nested/c"]


# ---------------------------------------------------------------- the Hub


def test_hub_organisation_farm_and_rescan(hub: Any, tmp_path: Path) -> None:
    models = org(hub.root)
    hub.page_size = 1  # the model listing in three pages (Link: rel="next")
    db = tmp_path / "farm.db"
    result = scan_farm(["hf://org"], db=db)
    want = {f"hf://{k}" for k in models}
    assert set(result.scanned) == want and result.failed == []
    assert hub.count(route="api") == 3 + 3  # three pages, one listing per model
    rows = stored(db)
    for key, d in models.items():
        url = f"hf://{key}"
        repo = "/".join(key.split("/")[:2])
        assert rows[url][:3] == ("hf-snapshot", repo, hub.commit(repo))
        assert comparable(stored_report(db, url), url) == comparable(scan(d), str(d))
    hub.clear()
    again = scan_farm(["hf://org"], db=db)
    assert again.scanned == [] and set(again.unchanged) == want
    assert hub.count() == hub.count(route="api") == 6  # listings only
    assert stored(db) == rows
    # a new commit of one model: that model's checkpoints are read again
    hub.page_size = 1000
    (hub.root / "org" / "alpha" / "README.md").write_text("edited")
    commit = hub.new_commit("org/alpha")
    third = scan_farm(["hf://org"], db=db)
    assert third.scanned == ["hf://org/alpha"]
    assert stored(db)["hf://org/alpha"][2] == commit


def test_farm_from_a_file_of_urls_and_paths(hub: Any, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    models = org(hub.root)
    local, _ = write_small_minimax(tmp_path / "local" / "ckpt", shards=1)
    listing = tmp_path / "roots.txt"
    listing.write_text("# checkpoints to watch\n"
                       "hf://org/beta/fp8\n\n"
                       f"{hub.http_url('org/alpha/')}\n"
                       f"{local}\n")
    db = tmp_path / "farm.db"
    assert main(["farm", "--from-file", str(listing), "--db", str(db), "--format", "json",
                 "--fail-on", "never"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert sorted(r["path"] for r in rows) == sorted(
        ["hf://org/beta/fp8", hub.http_url("org/alpha"), str(local)])
    by_path = {r["path"]: r for r in rows}
    planted = scan(models["org/beta/fp8"])
    assert by_path["hf://org/beta/fp8"]["errors"] == planted.count(Severity.ERROR) > 0
    # unreadable roots are notes, and keep what was stored
    hub.inject("status", "org/alpha/*", status=500)
    assert main(["farm", hub.http_url("org/alpha/"), "--db", str(db), "--fail-on",
                 "never", "--prune"]) == 0
    err = capsys.readouterr().err
    assert "cannot list" in err and "server-error" in err
    assert hub.http_url("org/alpha") in stored(db)


# ---------------------------------------------------------------- Ray


def test_ray_farm_over_the_hub_shares_one_request_budget(hub: Any, tmp_path: Path,
                                                         ray_instance: Any) -> None:
    org(hub.root)
    hub.latency = 0.02
    local_db, ray_db = tmp_path / "threads.db", tmp_path / "ray.db"
    scan_farm(["hf://org"], db=local_db)
    hub.clear()
    result = scan_farm(["hf://org"], db=ray_db, ray=True, remote=RemoteOptions(max_requests=2))
    assert len(result.scanned) == 3 and result.failed == []
    # two workers, each with sources of their own, never more than 2 requests in flight
    assert hub.peak_in_flight <= 2
    from test_farm import db_dump

    assert db_dump(ray_db) == db_dump(local_db)
