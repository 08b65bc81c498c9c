#!/usr/bin/env python3
"""Writes a one-layer image archive in the `docker save` layout from a directory tree.

There is no registry here, and containerd imports this layout directly
(`ctr -n k8s.io images import FILE`): a tar holding `manifest.json`, the image config and one
layer tar. Files keep their modes; symlinks stay symlinks; owners are root; times are zero so
the same tree gives the same image id.

usage: oci-archive.py --tag NAME:TAG --entrypoint CMD [--env K=V ...] --out FILE ROOTDIR
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_bytes(root):
    """The layer: every file under `root`, sorted, owned by root, at time zero."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--entrypoint", required=True, action="append")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("root")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        sys.exit(f"oci-archive.py: {args.root}: not a directory")

    layer = layer_bytes(args.root)
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": args.entrypoint, "Env": args.env},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [args.tag], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as tar:
        add(tar, f"{diff_id}/layer.tar", layer)
        add(tar, config_name, config)
        add(tar, "manifest.json", manifest)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
