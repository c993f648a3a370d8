//! CUDA engine (being written)
