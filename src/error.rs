//! Errors
