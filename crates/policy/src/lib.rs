//! Cedar policies for Portcullis: load and validate them against the schema, decide one request,
//! and say which policies decided it.
//!
//! Key design decision: a decision is a value, never an error. Allow, approval-required (a
//! permit carrying `@approval("required")` among the determining policies) or deny, each naming
//! the policies that produced it by their `@id`. Anything that goes wrong while evaluating
//! denies: Cedar skips a policy whose evaluation errors, which would let an erroring `forbid`
//! through, so an evaluation error is a deny here. Pure: no I/O, no clock.
#![forbid(unsafe_code)]

mod engine;

pub use engine::{Action, Decision, PolicyEngine, PolicyError, Request};

#[cfg(test)]
mod tests;
