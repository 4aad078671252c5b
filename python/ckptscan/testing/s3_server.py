"""An S3-compatible server on loopback for tests and benchmarks: moto's
server mode (`ThreadedMotoServer`), with every request logged so that tests
count what a client sent, and helpers to fill buckets.

    with S3Server() as s3:
        s3.upload_dir("bucket", "ckpt", tmp_path / "ckpt")
        os.environ.update(s3.env())           # AWS_ENDPOINT_URL and test keys
        ... open_source("s3://bucket/ckpt") ...
        s3.count("GET", "ckpt/*.safetensors")

Needs the test extra (moto[server], boto3).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class S3Request:
    method: str
    path: str  # /bucket/key, unquoted
    range: str | None
    if_match: str | None


@dataclass
class S3Server:
    """moto on 127.0.0.1 (a free port), with a request log."""

    log: list[S3Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._moto: Any = None

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        server = self

        class Logged(ThreadedMotoServer):
            def _server_entry(self) -> None:
                # moto's own entry point, with the app wrapped by a request log
                from moto.moto_server.werkzeug_app import (
                    DomainDispatcherApplication,
                    create_backend_app,
                )
                from werkzeug.serving import make_server

                app = DomainDispatcherApplication(create_backend_app)

                def logged(environ: dict[str, Any], start_response: Any) -> Any:
                    server._note(environ)
                    return app(environ, start_response)

                self._server = make_server(self._ip_address, self._port, logged, threaded=True)
                self._server_ready_event.set()
                self._server.serve_forever()

        self._moto = Logged(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        return self

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> S3Server:
        return self.start() if self._moto is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment for a client of this server (moto accepts any keys)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing-secret-key", "AWS_REGION": "us-east-1"}

    def client(self) -> Any:
        boto3 = importlib.import_module("boto3")  # untyped
        env = self.env()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=env["AWS_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def upload_dir(self, bucket: str, prefix: str, directory: Path) -> list[str]:
        """Puts every file under `directory` at `prefix/`; creates the bucket. Returns the keys."""
        c = self.client()
        with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou):
            c.create_bucket(Bucket=bucket)
        keys = []
        for p in sorted(Path(directory).rglob("*")):
            if p.is_file():
                key = f"{prefix.strip('/')}/{p.relative_to(directory).as_posix()}".lstrip("/")
                c.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())
                keys.append(key)
        return keys

    def _note(self, environ: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(S3Request(environ.get("REQUEST_METHOD", ""),
                                      unquote(environ.get("PATH_INFO", "")),
                                      environ.get("HTTP_RANGE"), environ.get("HTTP_IF_MATCH")))

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    def count(self, method: str | None = None, match: str | None = None) -> int:
        """Requests logged with `method`, whose /bucket/key path matches `match`."""
        with self._lock:
            return sum(1 for r in self.log if (method is None or r.method == method)
                       and (match is None or fnmatch.fnmatch(r.path, match)))
