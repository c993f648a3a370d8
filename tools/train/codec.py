"""Real codec round trips for training clips: H.264 (x264) and MPEG-4 part 2 (FFmpeg), via ctypes.

The GPU machine has no FFmpeg, no GStreamer and no network, and the PyAV wheel (35 MB) does not
fit a device call's carry beside the repository and the photos. What is there: opencv-python-
headless, whose wheel bundles FFmpeg's libavcodec (decoders for H.264 and MPEG-4 part 2, the
MPEG-4 part 2 encoder; no x264, which is GPL). So this module talks to the C libraries directly:

- H.264 encoding: libx264 (the 2.2 MB `libx264-*.so.165` of the PyAV manylinux wheel, which
  needs only libc/libm/libpthread; `tools/device/fetch_codec.sh` fetches it), looked for in
  $FLAVR_CODEC_DIR, then in PyAV's wheel (`av.libs/`), then the system's;
- decoding (H.264, MPEG-4) and MPEG-4 encoding: libavcodec + libavutil, from cv2's wheel
  (`opencv_python_headless.libs/`), else PyAV's (`av.libs/`), else the system's.

Overrides: FLAVR_CODEC_DIR=a folder with libx264*.so* (tools/device/env.sh sets it to
.gpu-train/codec on the GPU machine), FLAVR_X264=/path/libx264.so, FLAVR_AVCODEC=/path/libavcodec.so (libavutil is taken
from the same folder). A missing library raises CodecUnavailable naming what was looked for.

Only stable C entry points are used, options are set by name (x264_param_parse, av_opt_set), and
the few struct fields read or written directly (x264_param_t's size fields, x264_picture_t's
image, x264_nal_t's payload, AVFrame's data/linesize/width/height/format, AVPacket's data) have
kept their offsets for many years; each is checked once at load (CodecUnavailable if not).

Frames are 8-bit planar 4:2:0 (numpy uint8 Y [H,W], U and V [H/2,W/2]), H and W even. ctypes
releases the GIL during the C calls, so clips run in parallel on a thread pool (`roundtrip`).
"""
import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class CodecUnavailable(RuntimeError):
    pass


def _site_dirs():
    out = []
    for p in sys.path:
        if p and os.path.isdir(p):
            out.append(p)
    return out


def _find(env, pattern_dirs, patterns, system_name):
    """First library found: $env, then patterns in the folders, then the system's."""
    tried = []
    p = os.environ.get(env)
    if p:  # an explicit choice is never replaced by another library
        if os.path.isfile(p):
            return p, tried
        raise CodecUnavailable(f"${env}={p}: no such file")
    for d in pattern_dirs:
        for pat in patterns:
            hits = sorted(glob.glob(os.path.join(d, pat)))
            tried.append(os.path.join(d, pat))
            if hits:
                return hits[0], tried
    name = ctypes.util.find_library(system_name)
    tried.append(f"system lib{system_name}")
    return name, tried


def _x264_path():
    dirs = [os.environ["FLAVR_CODEC_DIR"]] if os.environ.get("FLAVR_CODEC_DIR") else []
    dirs += [os.path.join(s, "av.libs") for s in _site_dirs()]
    return _find("FLAVR_X264", dirs, ["libx264*.so*"], "x264")


def _avcodec_path():
    dirs = []
    for s in _site_dirs():
        dirs += [os.path.join(s, "opencv_python_headless.libs"), os.path.join(s, "opencv_python.libs"),
                 os.path.join(s, "av.libs")]
    return _find("FLAVR_AVCODEC", dirs, ["libavcodec*.so*"], "avcodec")


VP = ctypes.c_void_p
INT = ctypes.c_int
CP = ctypes.c_char_p
EAGAIN = -11
AVERROR_EOF = -0x20464F45  # -MKTAG('E','O','F',' ')
OPT_CHILDREN = 1           # AV_OPT_SEARCH_CHILDREN: the codec's private options too
PIX_YUV420P = 0

# x264_param_t: uint32 cpu; int i_threads, i_lookahead_threads, b_sliced_threads, b_deterministic,
# b_cpu_independent, i_sync_lookahead; int i_width (28), i_height (32), i_csp (36), i_bitdepth (40)
X264_W, X264_H, X264_CSP, X264_DEPTH = 28, 32, 36, 40
X264_CSP_I420 = 2
# x264_picture_t: int i_type, i_qpplus1, i_pic_struct, b_keyframe; int64 i_pts (16), i_dts; ptr param;
# x264_image_t img (40): int i_csp (40), i_plane (44), i_stride[4] (48), uint8 *plane[4] (64)
PIC_PTS, IMG_CSP, IMG_NPLANE, IMG_STRIDE, IMG_PLANE = 16, 40, 44, 48, 64
NAL_PAYLOAD = 24  # x264_nal_t: int ref_idc, type, long_startcode, first_mb, last_mb, i_payload; uint8 *p_payload
# AVFrame: uint8 *data[8] (0); int linesize[8] (64); uint8 **extended_data (96); int width (104),
# height (108), nb_samples (112), format (116).   AVPacket: buf, int64 pts, dts; uint8 *data (24); int size (32)
FR_LINESIZE, FR_W, FR_H, FR_FMT = 64, 104, 108, 116
PKT_DATA, PKT_SIZE = 24, 32


def _i32(addr, off):
    return ctypes.c_int.from_address(addr + off)


def _ptr(addr, off):
    return ctypes.c_void_p.from_address(addr + off)


class _Libs:
    """The loaded libraries and their function signatures (one instance per process)."""

    def __init__(self, need_x264):
        path, tried = _avcodec_path()
        if not path:
            raise CodecUnavailable("libavcodec not found (tried: " + "; ".join(tried) + "): install "
                                   "opencv-python-headless or PyAV, or set FLAVR_AVCODEC")
        folder = os.path.dirname(path)
        util = sorted(glob.glob(os.path.join(folder, "libavutil*.so*"))) if folder else []
        try:
            self.avutil = ctypes.CDLL(util[0] if util else (ctypes.util.find_library("avutil") or "libavutil.so"),
                                      mode=ctypes.RTLD_GLOBAL)
            self.avcodec = ctypes.CDLL(path)
        except OSError as e:
            raise CodecUnavailable(f"cannot load {path}: {e}") from e
        self.avcodec_path = path
        a, u = self.avcodec, self.avutil
        for f, res, args in [
            (a.avcodec_find_encoder_by_name, VP, [CP]), (a.avcodec_find_decoder_by_name, VP, [CP]),
            (a.avcodec_alloc_context3, VP, [VP]), (a.avcodec_open2, INT, [VP, VP, VP]),
            (a.avcodec_free_context, None, [VP]), (a.avcodec_send_packet, INT, [VP, VP]),
            (a.avcodec_receive_frame, INT, [VP, VP]), (a.avcodec_send_frame, INT, [VP, VP]),
            (a.avcodec_receive_packet, INT, [VP, VP]), (a.av_packet_alloc, VP, []),
            (a.av_packet_free, None, [VP]), (a.av_new_packet, INT, [VP, INT]), (a.av_packet_unref, None, [VP]),
            (u.av_frame_alloc, VP, []), (u.av_frame_free, None, [VP]), (u.av_frame_unref, None, [VP]),
            (u.av_frame_get_buffer, INT, [VP, INT]), (u.av_opt_set, INT, [VP, CP, CP, INT]),
            (u.av_log_set_level, None, [INT]),
        ]:
            f.restype, f.argtypes = res, args
        u.av_log_set_level(16)  # AV_LOG_ERROR: no per-clip chatter
        self.x264 = None
        if need_x264:
            self._load_x264()
        self._check_layout()

    def _load_x264(self):
        path, tried = _x264_path()
        if not path:
            raise CodecUnavailable("libx264 not found (tried: " + "; ".join(tried) + "): run "
                                   "tools/device/fetch_codec.sh, or set FLAVR_X264")
        try:
            x = ctypes.CDLL(path)
        except OSError as e:
            raise CodecUnavailable(f"cannot load {path}: {e}") from e
        opener = None
        for build in range(200, 140, -1):  # x264_encoder_open is versioned: x264_encoder_open_<X264_BUILD>
            opener = getattr(x, f"x264_encoder_open_{build}", None)
            if opener is not None:
                break
        if opener is None:
            raise CodecUnavailable(f"{path}: no x264_encoder_open_<build> symbol")
        for f, res, args in [
            (x.x264_param_default_preset, INT, [VP, CP, CP]), (x.x264_param_parse, INT, [VP, CP, CP]),
            (x.x264_param_apply_profile, INT, [VP, CP]), (opener, VP, [VP]), (x.x264_picture_init, None, [VP]),
            (x.x264_encoder_encode, INT, [VP, VP, VP, VP, VP]), (x.x264_encoder_close, None, [VP]),
            (x.x264_encoder_delayed_frames, INT, [VP]),
        ]:
            f.restype, f.argtypes = res, args
        self.x264, self.x264_open, self.x264_path = x, opener, path
        p = ctypes.create_string_buffer(4096)
        if x.x264_param_default_preset(p, b"medium", None) < 0:
            raise CodecUnavailable(f"{path}: x264_param_default_preset failed")
        a = ctypes.addressof(p)
        if (_i32(a, X264_CSP).value, _i32(a, X264_DEPTH).value) != (X264_CSP_I420, 8):
            raise CodecUnavailable(f"{path}: x264_param_t layout is not the one this module knows "
                                   f"(i_csp {_i32(a, X264_CSP).value}, i_bitdepth {_i32(a, X264_DEPTH).value})")

    def _check_layout(self):
        fr = self.avutil.av_frame_alloc()
        try:
            _i32(fr, FR_W).value, _i32(fr, FR_H).value, _i32(fr, FR_FMT).value = 36, 20, PIX_YUV420P
            if self.avutil.av_frame_get_buffer(fr, 0) < 0:
                raise CodecUnavailable("AVFrame layout is not the one this module knows (av_frame_get_buffer failed)")
            ls = [_i32(fr, FR_LINESIZE + 4 * i).value for i in range(3)]
            if not (ls[0] >= 36 and ls[1] >= 18 and ls[2] >= 18 and all(_ptr(fr, 8 * i).value for i in range(3))):
                raise CodecUnavailable(f"AVFrame layout is not the one this module knows (linesizes {ls})")
        finally:
            self.avutil.av_frame_free(ctypes.byref(VP(fr)))


_LIBS = {}
_LOCK = threading.Lock()


def libs(need_x264=True):
    """The loaded libraries (CodecUnavailable with the reason if they cannot be had)."""
    with _LOCK:
        key = bool(need_x264)
        if key not in _LIBS:
            _LIBS[key] = _Libs(need_x264)
        return _LIBS[key]


def available(codec="h264"):
    """None if `codec` ('h264' or 'mpeg4') can be round-tripped here, else the reason."""
    try:
        L = libs(need_x264=codec == "h264")
        dec = {"h264": b"h264", "mpeg4": b"mpeg4"}[codec]
        if not L.avcodec.avcodec_find_decoder_by_name(dec):
            return f"{L.avcodec_path} has no {codec} decoder"
        if codec == "mpeg4" and not L.avcodec.avcodec_find_encoder_by_name(b"mpeg4"):
            return f"{L.avcodec_path} has no mpeg4 encoder"
    except CodecUnavailable as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------------------------


def _frame_planes(fr, w, h):
    """Copy of a decoded AVFrame's Y, U, V planes (checks its size and format)."""
    fw, fh, fmt = _i32(fr, FR_W).value, _i32(fr, FR_H).value, _i32(fr, FR_FMT).value
    if (fw, fh) != (w, h) or fmt != PIX_YUV420P:
        raise RuntimeError(f"decoder returned {fw}x{fh} format {fmt}, expected {w}x{h} yuv420p (0)")
    out = []
    for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
        ls = _i32(fr, FR_LINESIZE + 4 * i).value
        buf = (ctypes.c_uint8 * (ls * ph)).from_address(_ptr(fr, 8 * i).value)
        out.append(np.frombuffer(buf, np.uint8).reshape(ph, ls)[:, :pw].copy())
    return out


def _alloc(L, codec, what):
    """`codec` (what avcodec_find_* returned for `what`), a context for it, a packet, a frame."""
    if not codec:
        raise CodecUnavailable(f"{L.avcodec_path} has no {what}")
    return codec, L.avcodec.avcodec_alloc_context3(codec), L.avcodec.av_packet_alloc(), L.avutil.av_frame_alloc()


def _free(L, ctx, pkt, fr):
    """Frees a codec context, a packet and a frame."""
    L.avutil.av_frame_free(ctypes.byref(VP(fr)))
    L.avcodec.av_packet_free(ctypes.byref(VP(pkt)))
    L.avcodec.avcodec_free_context(ctypes.byref(VP(ctx)))


def _drain(receive, what, take):
    """Calls `take()` for each frame or packet `receive()` hands over, until the codec wants more
    input (EAGAIN) or is done (EOF); a negative status is an error of `what`."""
    while True:
        r = receive()
        if r in (EAGAIN, AVERROR_EOF):
            return
        if r < 0:
            raise RuntimeError(f"{what} error {r}")
        take()


def _decode(L, name, packets, w, h):
    a, u = L.avcodec, L.avutil
    codec, ctx, pkt, fr = _alloc(L, a.avcodec_find_decoder_by_name(name), f"{name.decode()} decoder")
    out = []
    try:
        u.av_opt_set(ctx, b"threads", b"1", OPT_CHILDREN)
        if a.avcodec_open2(ctx, codec, None) < 0:
            raise RuntimeError(f"cannot open the {name.decode()} decoder")

        def take():
            out.append(_frame_planes(fr, w, h))
            u.av_frame_unref(fr)

        def drain():
            _drain(lambda: a.avcodec_receive_frame(ctx, fr), f"{name.decode()} decoder", take)

        for data in packets:
            if a.av_new_packet(pkt, len(data)) < 0:
                raise MemoryError("av_new_packet")
            ctypes.memmove(_ptr(pkt, PKT_DATA).value, data, len(data))
            r = a.avcodec_send_packet(ctx, pkt)
            a.av_packet_unref(pkt)
            if r < 0:
                raise RuntimeError(f"{name.decode()} decoder refused a packet ({r})")
            drain()
        a.avcodec_send_packet(ctx, None)
        drain()
    finally:
        _free(L, ctx, pkt, fr)
    return out


def _set_x264(x, p, key, val):
    if x.x264_param_parse(p, key.encode(), str(val).encode()) != 0:
        raise ValueError(f"x264 rejects {key}={val}")


def encode_h264(frames, crf=23.0, preset="veryfast", bframes=2, keyint=250, tune=None, aq=None, aud=False):
    """x264 encoding of 4:2:0 frames [(Y, U, V)...]: a list of access units (Annex B bytes);
    aud: an access unit delimiter before each (what decode_annexb splits a stream at)."""
    L = libs(need_x264=True)
    x = L.x264
    h, w = check_frames(frames)
    p = ctypes.create_string_buffer(4096)
    if x.x264_param_default_preset(p, preset.encode(), tune.encode() if tune else None) < 0:
        raise ValueError(f"x264 preset {preset!r} / tune {tune!r} unknown")
    a = ctypes.addressof(p)
    _i32(a, X264_W).value, _i32(a, X264_H).value, _i32(a, X264_CSP).value = w, h, X264_CSP_I420
    for k, v in (("threads", 1), ("lookahead-threads", 1), ("crf", f"{crf:.2f}"), ("bframes", bframes),
                 ("keyint", keyint), ("min-keyint", min(keyint, 25)), ("fps", "25"), ("annexb", 1),
                 ("repeat-headers", 1), ("sync-lookahead", 0), ("log", -1)):
        _set_x264(x, p, k, v)
    if aq is not None:
        _set_x264(x, p, "aq-strength", f"{aq:.2f}")
    if aud:
        _set_x264(x, p, "aud", 1)
    x.x264_param_apply_profile(p, b"high")
    enc = L.x264_open(p)
    if not enc:
        raise RuntimeError(f"x264_encoder_open failed for {w}x{h}")
    pic = ctypes.create_string_buffer(2048)
    pa = ctypes.addressof(pic)
    out_pic = ctypes.create_string_buffer(2048)
    nal = VP()
    nnal = INT()
    units = []

    def take(size):
        if size < 0:
            raise RuntimeError("x264_encoder_encode failed")
        if size:
            units.append(ctypes.string_at(_ptr(nal.value, NAL_PAYLOAD).value, size))
    try:
        for t, planes in enumerate(frames):
            planes = [np.ascontiguousarray(q) for q in planes]
            x.x264_picture_init(pic)
            _i32(pa, IMG_CSP).value, _i32(pa, IMG_NPLANE).value = X264_CSP_I420, 3
            ctypes.c_int64.from_address(pa + PIC_PTS).value = t
            for i, q in enumerate(planes):
                _i32(pa, IMG_STRIDE + 4 * i).value = q.shape[1]
                _ptr(pa, IMG_PLANE + 8 * i).value = q.ctypes.data
            take(x.x264_encoder_encode(enc, ctypes.byref(nal), ctypes.byref(nnal), pic, out_pic))
        while x.x264_encoder_delayed_frames(enc) > 0:
            take(x.x264_encoder_encode(enc, ctypes.byref(nal), ctypes.byref(nnal), None, out_pic))
    finally:
        x.x264_encoder_close(enc)
    return units


def encode_mpeg4(frames, qscale=5.0, bframes=0, gop=12):
    """FFmpeg's MPEG-4 part 2 encoder at a fixed quantiser (2 best .. 31 worst; qmin = qmax, as the
    frame's own quality field, which `-qscale` would use, is not reachable here): packets."""
    L = libs(need_x264=False)
    a, u = L.avcodec, L.avutil
    h, w = check_frames(frames)
    codec, ctx, pkt, fr = _alloc(L, a.avcodec_find_encoder_by_name(b"mpeg4"), "mpeg4 encoder")
    units = []
    try:
        for k, v in (("video_size", f"{w}x{h}"), ("pixel_format", "yuv420p"), ("time_base", "1/25"),
                     ("g", str(gop)), ("bf", str(bframes)), ("threads", "1"),
                     ("qmin", str(int(qscale))), ("qmax", str(int(qscale)))):
            if u.av_opt_set(ctx, k.encode(), v.encode(), OPT_CHILDREN) < 0:
                raise RuntimeError(f"mpeg4 encoder: cannot set {k}={v}")
        if a.avcodec_open2(ctx, codec, None) < 0:
            raise RuntimeError(f"cannot open the mpeg4 encoder for {w}x{h}")

        def take():
            units.append(ctypes.string_at(_ptr(pkt, PKT_DATA).value, _i32(pkt, PKT_SIZE).value))
            a.av_packet_unref(pkt)

        def drain():
            _drain(lambda: a.avcodec_receive_packet(ctx, pkt), "mpeg4 encoder", take)

        for planes in frames:
            _i32(fr, FR_W).value, _i32(fr, FR_H).value, _i32(fr, FR_FMT).value = w, h, PIX_YUV420P
            if u.av_frame_get_buffer(fr, 0) < 0:
                raise MemoryError("av_frame_get_buffer")
            for i, q in enumerate(planes):
                ls = _i32(fr, FR_LINESIZE + 4 * i).value
                ph, pw = q.shape
                dst = np.frombuffer((ctypes.c_uint8 * (ls * ph)).from_address(_ptr(fr, 8 * i).value),
                                    np.uint8).reshape(ph, ls)
                dst[:, :pw] = q
            if a.avcodec_send_frame(ctx, fr) < 0:
                raise RuntimeError("mpeg4 encoder refused a frame")
            u.av_frame_unref(fr)
            drain()
        a.avcodec_send_frame(ctx, None)
        drain()
    finally:
        _free(L, ctx, pkt, fr)
    return units


def check_frames(frames):
    """(h, w) of a list of 4:2:0 frames [(Y, U, V)...]; ValueError if they are not that."""
    if not frames:
        raise ValueError("no frames")
    h, w = frames[0][0].shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs an even size, got {w}x{h}")
    for k, f in enumerate(frames):
        shapes = tuple(np.shape(q) for q in f)
        if len(f) != 3 or shapes != ((h, w), (h // 2, w // 2), (h // 2, w // 2)) or any(q.dtype != np.uint8 for q in f):
            raise ValueError(f"frame {k}: planes {shapes}, expected uint8 {(h, w)}, {(h // 2, w // 2)} x 2")
    return h, w


def roundtrip_one(frames, codec, **opts):
    """Encode and decode one clip of 4:2:0 frames; the decoded frames in display order."""
    h, w = check_frames(frames)
    if codec == "h264":
        units = encode_h264(frames, **opts)
        dec = _decode(libs(True), b"h264", units, w, h)
    elif codec == "mpeg4":
        units = encode_mpeg4(frames, **opts)
        dec = _decode(libs(False), b"mpeg4", units, w, h)
    else:
        raise ValueError(f"unknown codec {codec!r} (h264 or mpeg4)")
    if len(dec) != len(frames):
        raise RuntimeError(f"{codec}: {len(frames)} frames in, {len(dec)} decoded")
    return dec


_POOL = {}


def roundtrip(jobs, threads=None):
    """Many clips at once: jobs = [(frames, codec, opts), ...] -> [decoded frames, ...]. Runs on a
    thread pool (the C calls release the GIL); threads defaults to the CPU count."""
    n = threads or max(1, min(32, os.cpu_count() or 1))
    if n == 1 or len(jobs) == 1:
        return [roundtrip_one(f, c, **o) for f, c, o in jobs]
    if n not in _POOL:
        _POOL[n] = ThreadPoolExecutor(n, thread_name_prefix="codec")
    return list(_POOL[n].map(lambda j: roundtrip_one(j[0], j[1], **j[2]), jobs))


AUD = b"\x00\x00\x00\x01\x09"  # start code + access unit delimiter NAL (x264 --aud)


def decode_annexb(data, width, height):
    """A raw H.264 stream with an access unit delimiter before every frame (tools/data/
    make_videos.py writes them) -> its frames as (Y, U, V) uint8 planes, in display order."""
    starts = []
    i = data.find(AUD)
    while i >= 0:
        starts.append(i)
        i = data.find(AUD, i + len(AUD))
    if not starts or starts[0] != 0:
        raise ValueError("not an H.264 stream with access unit delimiters (x264 --aud) before every frame")
    units = [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]
    return _decode(libs(need_x264=False), b"h264", units, width, height)
