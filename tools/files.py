"""Files the tools fetch, check and keep: sha256 of a file, a Debian package unpacked."""
import hashlib
import os
import subprocess


def sha256(path):
    """The sha256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def debian_package(package, version, folder, quiet=False):
    """`package` at `version`, downloaded with apt-get into `folder` and unpacked into
    `folder/x` (kept: a second call unpacks nothing); returns `folder/x`."""
    root = os.path.join(folder, "x")
    if not os.path.isdir(root):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL if quiet else None)
        debs = [f for f in os.listdir(folder) if f.endswith(".deb")]
        subprocess.run(["dpkg-deb", "-x", os.path.join(folder, debs[0]), root], check=True)
    return root
