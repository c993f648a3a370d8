// What the kernels and the Rust side must agree on: the parameter structs passed by value, the
// activation and pixel-format codes, and the sizes of the records the kernels index. Mirrored
// in src/cuda/params.rs (#[repr(C)] types and constants); the struct sizes are asserted on both
// sides, and a unit test there reads this file and checks every field offset and constant.
//
// Plain C++ (no CUDA keywords or types), so a host compiler can check it too:
//   g++ -std=c++17 -fsyntax-only -x c++ kernels/params.cuh
#ifndef FLAVR_PARAMS_CUH
#define FLAVR_PARAMS_CUH

// Activations (EpiParams.act; 0: none).
#define ACT_RELU 1
#define ACT_LRELU 2  // LeakyReLU(0.2)

// Pixel formats (FrameParams.format), as src/backend/pixels.rs `PixelFormat`.
#define FMT_RGB 0
#define FMT_RGBA 1
#define FMT_BGRA 2
#define FMT_RGBX 3
#define FMT_BGRX 4
#define FMT_I420 5
#define FMT_NV12 6
#define FMT_P010 7     // 10-bit codes in the top bits of 16-bit samples
#define FMT_I420_10 8  // 10-bit codes in the low bits, as the next two
#define FMT_I422_10 9
#define FMT_Y444_10 10
#define FMT_RGBA64 11

// Threads per block of every kernel; the reductions size their shared memory by it.
#define THREADS 256
// Bytes of one vector load or store (ldv / stv in common.cuh).
#define VECTOR_BYTES 16
// A frame slot is float32 [ph, pw, SLOT_CHANNELS]: R, G, B and a zero.
#define SLOT_CHANNELS 4
// Doubles per slot in the slot-sum table: the R, G, B sums and one unused.
#define SLOT_SUM_RECORD 4
// Channels of the network input: 4 frames x 2x2 pixels x 3 colours.
#define NET_IN_CHANNELS 48

// The grid of scene-cut detection (src/scene.rs GRID): at most this many boxes across, down.
#define SCENE_GRID_W 64
#define SCENE_GRID_H 36

// EpiParams::fold_keep bits.
#define FOLD_RESID 1
#define FOLD_OUT 2
#define FOLD_OUT2 4
#define FOLD_X 8

// Epilogue over channels-last [rows, c] (kernels/elementwise.cu).
struct EpiParams {
    const void *x;      // [rows, c]
    const void *resid;  // [rows, c] or null
    const float *bias;  // [c] or null
    const float *gate;  // [c] or null
    void *out;          // row stride out_stride, channel offset out_off
    void *out2;         // or null
    long long rows;
    int c, act, out_stride, out_off, out2_stride, out2_off;
    // Time fold (fold_t = 0: none): the epilogue's rows r = t * fold_p + p run over
    // [fold_t, fold_p]; fold_keep says which of x (FOLD_X), resid (FOLD_RESID), out (FOLD_OUT)
    // and out2 (FOLD_OUT2) are time-folded [fold_p, fold_t, c] (a 2-D conv's output with time
    // in channels), at row p * fold_t + t; the others are at row r. x in phase layout
    // (ph_h != 0) is never folded.
    int fold_t, fold_p, fold_keep;
    // Sub-pixel gather (ph_h = 0: none): x holds the four phases of a transposed conv
    // (weights::convt_phases) as [ph_t][ph_h + 1][ph_w + 1][4][c]; output row r = (t, Y, X) of
    // [ph_t, 2 ph_h, 2 ph_w] reads phase (Y%2, X%2) at (t, Y/2 + Y%2, X/2 + X%2).
    int ph_t, ph_h, ph_w;
    // Period of the bias and gate channels (0: c): the in-place pass over the four phases runs
    // with c = 4 x the stage's channels, which all share one bias and gate.
    int gc;
};

// The Y'CbCr constants of src/backend/pixels.rs `YuvCoeffs` (same struct, same arithmetic).
struct YuvCoeffs {
    float y_off, y_scale, c_scale, r_cr, g_cb, g_cr, b_cb, kr, kg, kb, cb_scale, cr_scale,
        y_range, c_range, c_off, code_max;
};

// A frame's layout (kernels/pixels.cu).
struct FrameParams {
    long long off[3];  // byte offset of each plane
    int stride[3];     // bytes per row of each plane
    int format, width, height, pw, ph;
    YuvCoeffs yuv;
};

// The first plane of a frame, reduced to box sums (kernels/scene.cu).
struct SceneParams {
    long long off;  // byte offset of the plane
    // Bytes per row and per pixel, bytes per sample (1 or 2), packed RGB (1: R, G, B at byte
    // offsets r, g, b of a pixel; 0: one luma sample), boxes across and down.
    int stride, bpp, sample_bytes, packed, r, g, b, gw, gh;
    int xe[65];  // box edges across (SCENE_GRID_W + 1 of them, gw + 1 used)
    int ye[37];  // and down (SCENE_GRID_H + 1, gh + 1 used)
};

static_assert(sizeof(EpiParams) == 112, "EpiParams differs from src/cuda/params.rs");
static_assert(sizeof(YuvCoeffs) == 64, "YuvCoeffs differs from src/backend/pixels.rs");
static_assert(sizeof(FrameParams) == 120, "FrameParams differs from src/cuda/params.rs");
static_assert(sizeof(SceneParams) == 456, "SceneParams differs from src/cuda/params.rs");

#endif
