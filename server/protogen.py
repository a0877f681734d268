"""Generates the Python client code beside the .proto files (`make protos`).

The generated modules are committed so that `reengage.v1` imports without a build step; a test
regenerates into a temporary folder and fails when the committed files are stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"
PACKAGE_DIR = PROTO_ROOT / "reengage" / "v1"


def proto_files() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Generates *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into out_dir."""
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    return sorted((out_dir / "reengage" / "v1").glob("*_pb2*.py*"))


def stale_files() -> list[str]:
    """Names of generated files that differ from what protoc produces now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text() for p in generate(Path(tmp))}
    committed = {p.name: p.read_text() for p in PACKAGE_DIR.glob("*_pb2*.py*")}
    return sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for generated in generate(Path(tmp)):
            (PACKAGE_DIR / generated.name).write_text(generated.read_text())
            print(f"wrote {PACKAGE_DIR / generated.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
