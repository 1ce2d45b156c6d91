//! Tests for `ask`.
