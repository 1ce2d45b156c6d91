//! Fixture MCP server.
fn main() {}
