//! rmcp plumbing.
