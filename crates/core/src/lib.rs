//! Pure domain types of Portcullis: names, identities, effects and surfaces, resource-server
//! settings.
//!
//! Key design decision: this crate does no I/O, no async, reads no clock and no environment.
//! Everything that decides (names today; identities, effects, roots and decisions as they land)
//! is a plain function over values, so it builds and tests in seconds and cannot be bypassed by
//! the transport that carries it.
#![forbid(unsafe_code)]

pub mod causes;
pub mod clock;
pub mod effect;
pub mod evidence;
pub mod host;
pub mod identity;
pub mod names;
pub mod pointer;
pub mod resource_server;
pub mod source;

pub use effect::{Effect, Hints, Surface, ToolRules};
pub use evidence::{EvidenceRecord, SCHEMA_VERSION as EVIDENCE_SCHEMA_VERSION};
pub use host::{HostError, HostName, HostPort};
pub use identity::{ActingMode, EnvelopeParts, IdentityEnvelope, LOCAL_ISSUER, UserId};
pub use names::{
    ExposedName, NameError, Namespacing, RESERVED_NAMESPACE, UpstreamName, is_reserved,
};
pub use pointer::ArgumentPointer;
pub use resource_server::{ClaimNames, ResourceServerSettings};
