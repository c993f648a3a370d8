"""Checks of official_ops.py and torch_bench.py's input handling, on the CPU in float32.

    python3 -m tools.bench.test_official_ops          (or: python3 -m pytest tools/bench)
    FLAVR_OFFICIAL_SRC=DIR python3 -m tools.bench.test_official_ops   also against the official
                                                      code in DIR (a checkout, kept outside this repo)
"""
import os
import unittest

import torch

from tools.bench import official_ops
from tools.bench import torch_bench as tb
from tools.reference import flavr_ref as fr


def max_abs(a, b):
    return max(float((p - q).abs().max()) for p, q in zip(a, b))


def op_log(model, frames):
    """Every aten call of model(frames), with its first output's shape and strides."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            first = out[0] if isinstance(out, (list, tuple)) and out else out
            layout = (tuple(first.shape), first.stride()) if isinstance(first, torch.Tensor) else None
            self.calls.append((str(func), layout))
            return out

    with torch.no_grad(), Log() as log:
        model(frames)
    return log.calls


class OfficialOps(unittest.TestCase):
    def test_narrow_model_batch_and_layouts_match_reference(self):
        for n_out in (1, 3):
            ref = fr.init_random(fr.Flavr(n_out=n_out, widths=(8, 16, 32, 64)), seed=2).eval()
            ops = official_ops.from_reference(ref).eval()
            x = tb.frames_input(48, 32, torch.float32, "cpu", "ref", batch=2)
            frames = tb.frames_input(48, 32, torch.float32, "cpu", "official", batch=2)
            self.assertEqual(len(frames), 4)
            for t, f in enumerate(frames):
                self.assertEqual(tuple(f.shape), (2, 3, 32, 48))
                self.assertTrue(f.is_contiguous())
                self.assertTrue(torch.equal(f, x[:, :, t]))
            with torch.no_grad():
                want = ref(x)
                for layout in tb.LAYOUTS:
                    got = tb.set_layout(ops, layout)(frames)
                    self.assertEqual(len(got), n_out)
                    self.assertLess(max_abs(want, got), 1e-5, f"n_out {n_out}, layout {layout}")
                # Each window of a batch is computed on its own (the mean is per window).
                one = ops([f[1:2] for f in frames])
                self.assertLess(max_abs([g[1:2] for g in ops(frames)], one), 1e-5)

    def test_layouts_put_weights_in_their_formats(self):
        ops = official_ops.OfficialOpsFlavr(widths=(8, 16, 32, 64))
        tb.set_layout(ops, "cl")
        self.assertTrue(ops.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d))
        self.assertTrue(ops.decoder[1].upconv[0].weight.is_contiguous(memory_format=torch.channels_last_3d))
        self.assertTrue(ops.outconv[1].weight.is_contiguous(memory_format=torch.channels_last))
        tb.set_layout(ops, "cl3d")
        self.assertTrue(ops.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d))
        self.assertTrue(ops.outconv[1].weight.is_contiguous())
        tb.set_layout(ops, "none")
        self.assertTrue(ops.encoder.stem[0].weight.is_contiguous())
        self.assertFalse(ops.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d))

    def test_full_width_synthetic_weights_match_reference(self):
        base = tb.synth.synthesize(fr.Flavr(n_out=1), seed=1).eval()
        tb.check_arch(base, "cpu")  # raises SystemExit past 1e-4

    @unittest.skipUnless(os.environ.get("FLAVR_OFFICIAL_SRC"),
                         "FLAVR_OFFICIAL_SRC not set: no official code to compare with")
    def test_official_code_same_function(self):
        base = tb.synth.synthesize(fr.Flavr(n_out=1), seed=1).eval()
        theirs = tb.load_official(os.environ["FLAVR_OFFICIAL_SRC"], base)
        ops = official_ops.from_reference(base).eval()
        self.assertEqual(sorted(theirs.state_dict()), sorted(ops.state_dict()))
        tb.check_same(ops, theirs, "cpu")  # raises SystemExit past 1e-4
        # The same aten calls in the same order, with the same output layouts, in every layout.
        frames = tb.frames_input(64, 48, torch.float32, "cpu", "official")
        for layout in tb.LAYOUTS:
            ours_log = op_log(tb.set_layout(ops, layout), frames)
            theirs_log = op_log(tb.set_layout(theirs, layout), frames)
            self.assertEqual(ours_log, theirs_log, f"layout {layout}")
            self.assertGreater(len(ours_log), 100)


if __name__ == "__main__":
    unittest.main()
