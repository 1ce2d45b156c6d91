//! Tests for `resources`.
