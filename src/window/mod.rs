//! Frame window (being written)
