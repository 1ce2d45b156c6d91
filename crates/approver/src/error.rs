//! What can go wrong with the approvers file, a ceremony or the enrolment page.

use std::io;

/// An approver error. Every message about the file names it and says what to do; none carries
/// a challenge, a credential, a token or a browser's response.
#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    /// The origin the pages are served from cannot be a WebAuthn relying party.
    #[error("`{origin}` cannot be the origin of the approval pages: {reason}")]
    Origin { origin: String, reason: String },
    #[error("cannot {action} the approvers file `{file}`: {source}")]
    Io {
        action: &'static str,
        file: String,
        #[source]
        source: io::Error,
    },
    /// The file (or its lock file) is not something Portcullis will trust passkeys from.
    #[error("refusing the approvers file `{file}`: {reason}")]
    Refused { file: String, reason: String },
    /// The file is there but does not hold what this version writes.
    #[error(
        "the approvers file `{file}` cannot be read: {reason}; restore it, or move it aside and \
         enrol again with `portcullis approver enroll`"
    )]
    Corrupt { file: String, reason: String },
    #[error(
        "nobody has enrolled a passkey to approve with (`{file}` has none): run \
         `portcullis approver enroll`"
    )]
    NobodyEnrolled { file: String },
    #[error("`{name}` cannot be an approver's name: {reason}")]
    Name { name: String, reason: String },
    /// What the browser sent is not the response of the ceremony asked for.
    #[error("the browser's answer is not a passkey response: {reason}")]
    Response { reason: String },
    /// The WebAuthn checks refused the response (wrong challenge, origin, signature, no user
    /// presence or verification, replayed counter, ...).
    #[error("the passkey ceremony was refused: {reason}")]
    Ceremony { reason: String },
    /// The ceremony was begun longer ago than a person needs to answer it.
    #[error("the passkey ceremony expired: begin it again")]
    Expired,
    #[error("this passkey is already enrolled")]
    AlreadyEnrolled,
    /// The response is signed by a passkey no longer in the file.
    #[error("the passkey used is not enrolled on this machine")]
    NotEnrolled,
    #[error("cannot get random bytes: {reason}")]
    Random { reason: String },
    #[error("the enrolment page failed: {source}")]
    Serve {
        #[source]
        source: io::Error,
    },
    #[error("no passkey was enrolled within {seconds} s: run `portcullis approver enroll` again")]
    Deadline { seconds: u64 },
}
