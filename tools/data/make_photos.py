#!/usr/bin/env python3
"""Build the training photographs from Debian's wallpaper packages.

    python3 -m tools.data.make_photos --out .gpu-train/photos        (as root, or with apt access)

Steps (deterministic for the same package versions):
1. `apt-get download` the packages below (no install: nothing on the system changes) and unpack
   each with `dpkg-deb -x` into a temporary folder.
2. Take the files of SOURCES (hand-picked: real photographs, plus a few detailed renders and
   paintings; vector art, logos, flat gradients, screenshots and the same picture at other sizes
   are left out), convert to RGB, resize (Lanczos) so the short side is --short px, cap the long
   side at 16:9, and save as JPEG (--quality, 4:4:4 chroma, so the training code alone decides
   on chroma subsampling).
3. Photos marked `val` go to `val/` (held out: validation clips only), the others to `train/`.
4. Write `sources.tsv` (split, output, package, version, path in the package, source size,
   sha256 of the source file) and `SUMMARY.txt` (counts and bytes) beside them, and compare
   sources.tsv with the committed tools/data/photos-sources.tsv (a warning if they differ).

Needs Pillow (Debian: python3-pil; or `pip install pillow`).
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

from tools.files import sha256

PACKAGES = [
    "plasma-workspace-wallpapers",
    "mate-backgrounds",
    "lxqt-themes",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "gnome-backgrounds",
    "ukui-wallpapers",
]

# (split, kind, package, path inside the package). kind: photo | art (detailed renders and
# paintings: flat shaded areas and sharp edges, closer to animation than photographs are).
PW = "usr/share/wallpapers"
SOURCES = [
    # plasma-workspace-wallpapers: each wallpaper is one picture shipped under many names.
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/BytheWater/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/ColdRipple/contents/images/2560x1600.jpg"),
    ("val", "photo", "plasma-workspace-wallpapers", f"{PW}/ColorfulCups/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/DarkestHour/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/EveningGlow/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/FallenLeaf/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/Grey/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/Kite/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/OneStandsOut/contents/images/2560x1600.jpg"),
    ("val", "photo", "plasma-workspace-wallpapers", f"{PW}/Path/contents/images/2560x1600.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/Volna/contents/images/5120x2880.jpg"),
    ("train", "photo", "plasma-workspace-wallpapers", f"{PW}/summer_1am/contents/images/2560x1600.jpg"),
    ("train", "art", "plasma-workspace-wallpapers", f"{PW}/SafeLanding/contents/images/5120x2880.jpg"),
    ("train", "art", "plasma-workspace-wallpapers", f"{PW}/Autumn/contents/images/2560x1600.jpg"),
    ("train", "art", "plasma-workspace-wallpapers", f"{PW}/Altai/contents/images/5120x2880.png"),
    # mate-backgrounds
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Aqua.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Blinds.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Dune.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/FreshFlower.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Garden.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/GreenMeadow.jpg"),
    ("val", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/LadyBird.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/RainDrops.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Storm.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/TwoWings.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/Wood.jpg"),
    ("train", "photo", "mate-backgrounds", "usr/share/backgrounds/mate/nature/YellowFlower.jpg"),
    ("train", "art", "mate-backgrounds", "usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg"),
    # lxqt-themes
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/Butterfly-Kenneth-Wimer.jpg"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/Valendas.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/after-the-rain.jpg"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/appleflower.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/beam.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/butterfly.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/cloud.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/drop.png"),
    ("val", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/flowers.png"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/fog.jpg"),
    ("train", "photo", "lxqt-themes", "usr/share/lxqt/wallpapers/this-is-not-windows.jpg"),
    # lomiri-wallpapers-16.04 (Ubuntu's 16.04 photo contest)
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/Dragonfly_by_Bolly.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/Picture_0B_by_freespace.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/Picture_1A_by_freespace.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/free_by_Peter_Nerlich.jpg"),
    ("val", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    ("val", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg"),
    ("train", "photo", "lomiri-wallpapers-16.04", "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg"),
    # lomiri-wallpapers-20.04
    ("train", "photo", "lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    ("train", "art", "lomiri-wallpapers-20.04", "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg"),
    # gnome-backgrounds: 3D renders with fine repeated structure
    ("train", "art", "gnome-backgrounds", "usr/share/backgrounds/gnome/truchet-l.webp"),
    ("train", "art", "gnome-backgrounds", "usr/share/backgrounds/gnome/pixels-l.webp"),
    # ukui-wallpapers: renders
    ("train", "art", "ukui-wallpapers", "usr/share/backgrounds/goldfish.png"),
    ("train", "art", "ukui-wallpapers", "usr/share/backgrounds/the-mouse.jpg"),
    ("train", "art", "ukui-wallpapers", "usr/share/backgrounds/rhythm.jpg"),
]


def fetch(packages, work):
    """apt-get download + dpkg-deb -x; returns {package: (version, root folder)}."""
    debs = os.path.join(work, "deb")
    os.makedirs(debs, exist_ok=True)
    subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True)
    roots = {}
    for f in sorted(os.listdir(debs)):
        if not f.endswith(".deb"):
            continue
        name, version = f.split("_")[:2]
        version = version.replace("%3a", ":")
        root = os.path.join(work, "x", name)
        os.makedirs(root, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", os.path.join(debs, f), root], check=True)
        roots[name] = (version, root)
    missing = [p for p in packages if p not in roots]
    if missing:
        sys.exit(f"packages not downloaded: {missing}")
    return roots


def convert(src, short, quality):
    """RGB, short side `short` (never enlarged), long side at most 16:9, as JPEG bytes."""
    im = Image.open(src)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    w, h = im.size
    s = min(short / min(w, h), 1.0)
    nw, nh = round(w * s), round(h * s)
    im = im.resize((nw, nh), Image.LANCZOS, reducing_gap=3.0)
    lim = round(min(nw, nh) * 16 / 9)
    if nw > lim:
        x0 = (nw - lim) // 2
        im = im.crop((x0, 0, x0 + lim, nh))
    elif nh > lim:
        y0 = (nh - lim) // 2
        im = im.crop((0, y0, nw, y0 + lim))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue(), im.size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (replaced)")
    ap.add_argument("--short", type=int, default=720, help="short side in pixels")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality")
    ap.add_argument("--work", default=None, help="keep the downloads here (default: a temp dir)")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="flavr-photos-")
    roots = fetch(PACKAGES, work)
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    for split in ("train", "val"):
        os.makedirs(os.path.join(args.out, split))
    rows = []
    total = {"train": 0, "val": 0}
    count = {"train": 0, "val": 0}
    for split, kind, pkg, rel in SOURCES:
        version, root = roots[pkg]
        src = os.path.join(root, rel)
        if not os.path.isfile(src):
            sys.exit(f"{pkg} {version} has no {rel}")
        data, size = convert(src, args.short, args.quality)
        stem = os.path.splitext(os.path.basename(rel))[0]
        if stem[0].isdigit():  # plasma's files are named by size: use the wallpaper's name
            stem = rel.split("/")[3]
        name = f"{kind}-{pkg.split('-')[0]}-{stem}.jpg"
        with open(os.path.join(args.out, split, name), "wb") as f:
            f.write(data)
        total[split] += len(data)
        count[split] += 1
        src_size = "x".join(map(str, Image.open(src).size))
        rows.append((split, f"{split}/{name}", kind, pkg, version, rel, src_size,
                     "x".join(map(str, size)), sha256(src)))
        print(f"{split:5s} {len(data) // 1024:5d} KiB {size[0]}x{size[1]} {name}")
    header = "split\tfile\tkind\tpackage\tversion\tpath\tsource_size\tsize\tsource_sha256\n"
    text = header + "".join("\t".join(r) + "\n" for r in rows)
    with open(os.path.join(args.out, "sources.tsv"), "w") as f:
        f.write(text)
    # The committed list of the set the model was trained on: say so if this one differs
    # (another package version, or other settings).
    ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "photos-sources.tsv")
    if os.path.isfile(ref):
        with open(ref) as f:
            old = f.read()
        if old != text:
            a, b = set(old.splitlines()), set(text.splitlines())
            print(f"WARNING: differs from {ref}:", file=sys.stderr)
            for line in sorted(a - b):
                print(f"  was: {line}", file=sys.stderr)
            for line in sorted(b - a):
                print(f"  now: {line}", file=sys.stderr)
        else:
            print(f"same sources and sizes as {os.path.basename(ref)}")
    summary = (f"train: {count['train']} images, {total['train'] / 1e6:.1f} MB; "
               f"val: {count['val']} images, {total['val'] / 1e6:.1f} MB; "
               f"short side {args.short}, JPEG q{args.quality} 4:4:4\n")
    with open(os.path.join(args.out, "SUMMARY.txt"), "w") as f:
        f.write(summary)
    print(summary, end="")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
