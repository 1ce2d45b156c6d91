//! Comparing secrets. The secret type itself is `portcullis_credentials::Secret`, shared with
//! the credential store that keeps what this crate obtains.

/// Compares two strings in time that depends on their lengths only, not on where they differ:
/// the `state` a redirect brings back is compared with ours without telling an attacker how
/// much of a guess was right.
pub(crate) fn constant_time_eq(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}
