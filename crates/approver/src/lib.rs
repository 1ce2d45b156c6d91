//! The approvers of Portcullis: the passkeys people enrolled on this machine, and the WebAuthn
//! ceremonies that prove one of them is present.
//!
//! Key design decision: a link to an approval page may be shown to the agent itself, so the
//! link never approves anything; each approval needs a WebAuthn assertion signed by a passkey
//! that a person enrolled once through a link printed on their terminal
//! (`portcullis approver enroll`, served by [`enrol::serve`]). This crate decides nothing
//! about tool calls: it only says which enrolled person answered a challenge.
//!
//! # API
//!
//! - [`Approvers::open`]`(file, origin)`: the passkeys in `file` (JSON, mode 0600, replaced
//!   atomically under a lock; absent = nobody enrolled; unreadable or corrupt = an error
//!   naming the file, never "nobody"). The relying party id is `origin`'s host (normally
//!   `localhost`, a secure context over plain http); any port of that host is accepted.
//! - [`Approvers::is_empty`], [`Approvers::names`], [`Approvers::origin_on`].
//! - Enrolment: [`Approvers::begin_enrolment`]`(name)` → (options for
//!   `navigator.credentials.create`, [`Enrolment`]); [`Approvers::finish_enrolment`]`(state,
//!   response)` adds the passkey to the file.
//! - Assertion: [`Approvers::begin_assertion`]`()` → (options for `navigator.credentials.get`,
//!   [`Assertion`]), an error when nobody enrolled; [`Approvers::finish_assertion`]`(state,
//!   response)` → the approver's name, and the stored signature counter moves on.
//! - [`CEREMONY_JS`]: the browser's half, `portcullisEnrol(options)` and
//!   `portcullisAssert(options)`, each resolving to the JSON to POST back.
//! - [`enrol::serve`] and [`enrol::one_time_token`]: the one-time enrolment page.
//!
//! Ceremony states ([`Enrolment`], [`Assertion`]) stay in memory, are consumed by the
//! `finish_*` call (so a challenge is answered at most once) and expire after five minutes.
//! They are passkey ceremonies (`webauthn-rs`'s passkey API): **user presence and user
//! verification** (PIN, biometric or device unlock) are both required, at enrolment and at
//! every assertion.
//!
//! # What this crate does not do
//!
//! It decides nothing about tool calls, holds no pending approval, and never serves an
//! approval page (the gateway does, with [`CEREMONY_JS`]). It never logs a challenge, a
//! token, or a browser's response; the one-time token is printed by the CLI alone. Note that
//! `webauthn-rs-core` itself logs ceremony states (challenges included) at `trace` and
//! attestation details at `debug`: a binary's tracing filter keeps the target
//! `webauthn_rs_core` at `info` or above.
#![forbid(unsafe_code)]

mod approvers;
pub mod enrol;
mod error;
mod store;

pub use approvers::{Approvers, Assertion, Enrolment};
pub use error::ApproverError;

/// The browser side of both ceremonies, to be served as a script (no build step, no external
/// fetches). It defines `portcullisEnrol(options)` and `portcullisAssert(options)`: each takes
/// the options JSON of `begin_enrolment` / `begin_assertion`, runs
/// `navigator.credentials.create` / `get`, and resolves to the JSON object to POST back to
/// `finish_enrolment` / `finish_assertion` (or rejects with the browser's error, such as
/// `NotAllowedError` when the person cancels or holds no enrolled passkey).
pub const CEREMONY_JS: &str = include_str!("ceremony.js");

#[cfg(test)]
mod tests;
