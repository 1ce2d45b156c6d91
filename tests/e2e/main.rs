//! End-to-end tests: real MCP clients and servers around a real Portcullis process.
//!
//! Run by `scripts/test.sh`, which builds the workspace and installs the official clients and
//! servers first. Every network test uses loopback only and bounded waits.
#![expect(clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]

mod agreement;
mod approval;
mod boundaries;
mod cli;
mod console;
mod containment;
mod credentials;
mod environment;
mod evidence;
mod faults;
mod http_guard;
mod identity;
mod import;
mod instances;
mod interaction;
mod ladder;
mod launchers;
mod official_clients;
mod passkey;
mod pins;
mod relay;
mod remote;
mod replicas;
mod roots;
mod rust_client;
mod scoped_approval;
mod secrets;
mod sign_in;
mod starts;
mod support;
mod tool_search;
