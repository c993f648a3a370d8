"""Speed and accuracy references: the PyTorch timings, the official op sequence, synthetic weights."""
