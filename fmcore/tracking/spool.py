"""The tracker's spool: a JSONL journal of records not yet delivered to MLflow, signed and private.

Line 1 is a ``state`` record (the run id, the tracking URI with any password masked); every
other line is one record (``start``, ``resume``, ``metrics``, ``tags``, ``artifact``, ``end``).
A spool is replayed by the next tracker of the same run directory, so a record in it can
create or resume an MLflow run and upload a file: it must come from this directory's own
tracker, not from whoever could write into the directory. Each line therefore carries
``mac`` = HMAC-SHA256(key, directory + record), with a key that lives *outside* every run
directory (``$FMREPRO_SPOOL_KEY_FILE``, else ``~/.config/fmrepro/spool.key``, created 0600
on first use; on a cluster the home directory is shared, so every node holds the same key).
:meth:`Spool.load` drops records without a valid signature, an artifact outside the
directory, or an unknown op, keeps a copy of the refused file beside it
(``<name>.rejected``), and says how many it dropped. The file is written 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fmcore.io import atomic_write_text

__all__ = ["OPS", "Spool", "SpoolContents", "spool_key"]

OPS = ("start", "resume", "metrics", "tags", "artifact", "input", "end")
KEY_ENV = "FMREPRO_SPOOL_KEY_FILE"


def _key_file() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "fmrepro" / "spool.key"


def spool_key() -> bytes | None:
    """The signing key (created 0600 on first use); None when it can be neither read nor created."""
    path = _key_file()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
    except FileExistsError:  # created concurrently by another job: read theirs
        pass
    except OSError:
        return None
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


@dataclass
class SpoolContents:
    """What :meth:`Spool.load` accepted: the run id of the state line, the records, what it refused."""

    run_id: str | None = None
    uri: str | None = None
    records: list[dict] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one reason per refused line


class Spool:
    """One spool file (see module docstring); every method may raise ``OSError`` (full disk)."""

    def __init__(self, path: str | Path, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.folder = self.path.resolve().parent
        self.key = spool_key() if key is None else key

    def _mac(self, rec: dict) -> str:
        message = f"{self.folder}\n{json.dumps(rec, sort_keys=True)}".encode()
        return hmac.new(self.key or b"", message, hashlib.sha256).hexdigest()

    def _line(self, rec: dict) -> str:
        return json.dumps({**rec, "mac": self._mac(rec)}) + "\n"

    def append(self, rec: dict) -> None:
        """Add one record at the end (creating the file, 0600, if needed)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(self._line(rec))

    def rewrite(self, run_id: str | None, uri: str, records: list[dict]) -> None:
        """Replace the file atomically by a state line and ``records``."""
        state = {"op": "state", "uri": uri, "run_id": run_id}
        atomic_write_text(self.path, "".join(self._line(r) for r in [state, *records]), mode=0o600)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def exists(self) -> bool:
        return self.path.exists()

    def inside(self, path: str | Path) -> bool:
        """Whether ``path`` (symlinks resolved) lies inside the spool's directory."""
        return Path(path).resolve().is_relative_to(self.folder)

    def load(self) -> SpoolContents:
        """Read the spool; refuse every line this directory's tracker did not write (module docstring)."""
        out = SpoolContents()
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                # the last line may be torn by a kill mid-append; anything else is not ours either
                out.refused.append(f"line {number}: not JSON")
                continue
            if not isinstance(rec, dict):
                out.refused.append(f"line {number}: not a record")
                continue
            mac = rec.pop("mac", None)
            if self.key is None or not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(rec)):
                out.refused.append(f"line {number}: no valid signature")
            elif rec.get("op") == "state":
                out.run_id, out.uri = rec.get("run_id"), rec.get("uri")
            elif rec.get("op") not in OPS:
                out.refused.append(f"line {number}: unknown op {rec.get('op')!r}")
            elif rec["op"] == "artifact" and not self.inside(str(rec.get("path", ""))):
                out.refused.append(f"line {number}: artifact {rec.get('path')!r} outside {self.folder}")
            else:
                out.records.append(rec)
        if out.refused:
            rejected = self.path.with_name(self.path.name + ".rejected")
            atomic_write_text(rejected, "\n".join(lines) + "\n", mode=0o600)
        return out
