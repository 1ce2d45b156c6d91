//! Cedar policies for Portcullis: load and validate them against the schema, decide one request,
//! and say which policies decided it.
//!
//! Key design decision: a decision is a value, never an error. Allow, approval-required (a
//! permit carrying `@approval("required")` among the determining policies) or deny, each naming
//! the policies that produced it by their `@id`. `@approval` takes `"required"`, `"once"` (the
//! answer covers this one call only) or `"other"` (someone other than the call's subject
//! approves); the strictest of the determining permits wins, and any other value fails the load. Anything that goes wrong while evaluating
//! denies: Cedar skips a policy whose evaluation errors, which would let an erroring `forbid`
//! through, so an evaluation error is a deny here. Pure: no I/O, no clock (the caller passes
//! the time and the texts).
#![forbid(unsafe_code)]

mod call;
mod decision;
mod engine;
mod memo;

pub use call::{CallDecision, CallInput, Hidden, decide_call, decide_listing, decide_visible_call};
pub use decision::{ApprovalRule, Decision, PolicyRef, Verdict};
pub use engine::{Action, Facts, PolicyEngine, PolicyError, Problem, Request, Source, Target};

/// The shipped schema, used when config names none.
pub const SHIPPED_SCHEMA: &str = include_str!("../../../config/portcullis.cedarschema");
/// The shipped default policy, used when config names none.
pub const SHIPPED_POLICY: &str = include_str!("../../../config/policies/default.cedar");

#[cfg(test)]
mod tests;
