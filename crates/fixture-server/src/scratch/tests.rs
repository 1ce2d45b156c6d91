//! Tests for `scratch`.
