"""Helpers for the service tests: a tiny deterministic encoder and a real server process."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

WRITE_KEY = "w" * 8 + "-write-key-for-tests"
READ_KEY = "r" * 8 + "-read-key-for-tests"


class HashEncoder:
    """Bag of hashed words: items sharing words get similar vectors (enough to test
    retrieval logic without loading a language model)."""

    model_id = "hash-bag-32"
    dim = 32

    def encode(self, texts, batch_size=None, progress=None):
        out = np.zeros((len(texts), self.dim), np.float32)
        for k, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(",", " ").split():
                out[k, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def write_keys(folder: Path) -> Path:
    path = folder / "keys.txt"
    path.write_text(f"# test keys\nwrite:{WRITE_KEY}\nread:{READ_KEY}\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``leanrec service serve`` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, folder: Path, db: str, *extra: str, port: int | None = None):
        self.folder, self.db, self.extra = folder, db, extra
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / f"server-{self.port}.log"

    def start(self, timeout: float = 120.0) -> Server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "leanrec.cli", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--db", self.db, "--data-dir", str(self.folder / "data"), "--log-level", "warning", *self.extra]
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def client(self, key: str | None = WRITE_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
