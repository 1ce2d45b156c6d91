//! End-to-end tests: real MCP clients and servers around a real Portcullis process.
