"""Regenerates embedding_cache/embedding_cache.desc from the repository's proto with protoc.

The client ships the service description as a binary FileDescriptorSet (a data file) instead of generated
*_pb2.py code, so the package works with every protobuf runtime from 3.21/4.21 (Debian 12) to current
releases. Run this after changing protos/embeddingcache/v1/embedding_cache.proto:

    python3 src/python/generate_descriptor.py [--protoc PATH]

protoc is taken from --protoc, $EMBCACHE_PROTOC, or the Grpc.Tools package in the NuGet cache
($NUGET_PACKAGES or ~/.nuget/packages), which `dotnet restore` of the solution fills.
tests/python/test_client.py checks that the shipped file matches the proto.
"""
import glob
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROTO_ROOT = os.path.join(REPO, "protos")
PROTO_FILE = "embeddingcache/v1/embedding_cache.proto"
OUTPUT = os.path.join(HERE, "embedding_cache", "embedding_cache.desc")


def find_protoc():
    """Path of a protoc binary, or None: $EMBCACHE_PROTOC, else the newest Grpc.Tools in the NuGet cache."""
    explicit = os.environ.get("EMBCACHE_PROTOC")
    if explicit:
        return explicit
    cache = os.environ.get("NUGET_PACKAGES") or os.path.join(os.path.expanduser("~"), ".nuget", "packages")
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "macosx", "windows": "windows"}.get(platform.system().lower(), "linux")
    folder = "macosx_universal" if system == "macosx" else f"{system}_{arch}"
    exe = "protoc.exe" if system == "windows" else "protoc"
    candidates = glob.glob(os.path.join(cache, "grpc.tools", "*", "tools", folder, exe))

    def version(path):
        parts = path.split(os.sep)[-4].split(".")
        return tuple(int(p) if p.isdigit() else 0 for p in parts)

    return max(candidates, key=version) if candidates else None


def generate(output, protoc=None, proto_root=PROTO_ROOT):
    """Runs protoc to write the FileDescriptorSet of the proto to `output`."""
    protoc = protoc or find_protoc()
    if not protoc:
        raise SystemExit("protoc not found: pass --protoc, set EMBCACHE_PROTOC, or `dotnet restore` the solution")
    if not os.access(protoc, os.X_OK):
        os.chmod(protoc, 0o755)  # NuGet extracts package files without the executable bit
    subprocess.run([protoc, "-I", proto_root, f"--descriptor_set_out={output}", PROTO_FILE], check=True)


if __name__ == "__main__":
    path = sys.argv[sys.argv.index("--protoc") + 1] if "--protoc" in sys.argv else None
    generate(OUTPUT, path)
    print(f"wrote {os.path.relpath(OUTPUT)}")
