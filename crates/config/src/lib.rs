//! Portcullis configuration: raw TOML into a validated model, with file-and-line errors.
//!
//! Key design decision: two stages. [`raw`] mirrors the TOML with `deny_unknown_fields` and spans;
//! [`parse`] turns it once into [`Config`], whose invariants hold by construction (names valid and
//! unique, timeouts in range, one upstream in passthrough mode, loopback listener). Everything after
//! start-up trusts the model. This crate reads no files and no environment: the caller passes the
//! text and the path used in messages.
#![forbid(unsafe_code)]

mod checks;
mod credential;
mod error;
pub mod import;
mod instance;
mod launcher;
mod model;
mod raw;
mod remote;
mod sign_in;
mod state;

pub use checks::is_env_name;
pub use credential::{
    CredentialSettings, DEFAULT_KEY_ENV, Delegation, OAuthClient, ServiceCredential,
    UpstreamCredential,
};
pub use error::{ConfigError, ConfigErrors};
pub use instance::{DEFAULT_INSTANCE_IDLE, Instance, PerUser};
pub use launcher::{ContainerRun, Launcher, Package};
pub use model::{
    ApprovalSettings, Config, Containment, DEFAULT_FILE_SIZE_MB, DEFAULT_MEMORY_MB,
    DEFAULT_OPEN_FILES, DEFAULT_TOOL_SEARCH_THRESHOLD, Durability, ElicitationRule,
    EvidenceSettings, Grantee, HttpSettings, Pinning, PolicySettings, RootsFor, SandboxGrants,
    SandboxLimits, Taint, TildeRule, ToolSearch, Upstream, UpstreamTransport, parse,
};
pub use remote::{EnvHeader, Remote};
pub use sign_in::ApprovalSignIn;
pub use state::StateBackend;

#[cfg(test)]
mod tests;
