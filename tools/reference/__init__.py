"""A PyTorch model of the network as this project computes it (docs/network.md), and the fixtures made with it."""
