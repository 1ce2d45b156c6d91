//! Tests for `server`.
