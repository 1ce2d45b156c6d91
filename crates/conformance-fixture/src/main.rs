//! The MCP server that the official conformance suite's server scenarios expect, served over
//! stdio so that Portcullis (in passthrough mode) fronts it. Answers are written as the
//! scenarios describe them; the definitions live in `catalog.rs`.

mod catalog;
mod handler;

use rmcp::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let running = handler::Conformance::new()?
        .serve(rmcp::transport::stdio())
        .await?;
    running.waiting().await?;
    Ok(())
}
