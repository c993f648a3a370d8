"""Training the network: synthetic and real-video clips, the training loop, its state, export."""
