//! A bearer token from the wire to an identity envelope: the `Authorization` header, the JWT
//! header read before any key is chosen, and the verified claims checked and mapped.
//!
//! The claim rules are strict on purpose: each claim is read with exactly one type, and a
//! claim of another type rejects the token rather than being guessed at (a `groups` number, a
//! `scope` array where a string belongs), because a guess is where a widened identity hides.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use portcullis_core::{
    ActingMode, EnvelopeParts, IdentityEnvelope, ResourceServerSettings, UserId,
};
use serde_json::{Map, Value};

use crate::{RejectReason, Rejection};

/// Longer tokens are refused before any parsing: real access tokens are a few kilobytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token text of a request. Its `Debug` is redacted: it is a credential.
#[derive(Clone, Copy)]
pub(crate) struct BearerToken<'a>(&'a str);

impl<'a> BearerToken<'a> {
    pub(crate) fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer_token(header: Option<&str>) -> Result<BearerToken<'_>, RejectReason> {
    let header = header.ok_or(RejectReason::MissingToken)?;
    let (scheme, token) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(RejectReason::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.contains(char::is_whitespace) {
        return Err(RejectReason::Malformed);
    }
    Ok(BearerToken(token))
}

/// What the JWT header says before its signature is checked: only which key and which
/// algorithm, and only asymmetric algorithms pass. Embedded keys (`jwk`, `jku`, `x5u`, `x5c`)
/// are never read: the issuer's JWKS is the only source of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnverifiedHeader {
    pub(crate) algorithm: Algorithm,
    pub(crate) kid: String,
}

pub(crate) fn unverified_header(token: BearerToken<'_>) -> Result<UnverifiedHeader, RejectReason> {
    let mut parts = token.as_str().split('.');
    let (Some(encoded), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RejectReason::Malformed);
    };
    let decoded = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| RejectReason::Malformed)?;
    // A map, not a derived struct: serde would also read a struct from a JSON array.
    let header: Map<String, Value> =
        serde_json::from_slice(&decoded).map_err(|_| RejectReason::Malformed)?;
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(RejectReason::Malformed);
    };
    let algorithm = match alg.as_str() {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        // `none` and HS256/384/512 above all: an unsigned token, or one "signed" with a key
        // the attacker can read (the public key taken as an HMAC secret).
        _ => return Err(RejectReason::DisallowedAlgorithm),
    };
    let kid = match header.get("kid") {
        None => return Err(RejectReason::MissingKeyId),
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err(RejectReason::Malformed),
    };
    Ok(UnverifiedHeader { algorithm, kid })
}

/// The verified claims checked against the settings at `now` (see [`envelope`]), with the
/// scopes the settings require; and who the claims say they are, for the log.
pub(crate) fn accepted(
    claims: &Map<String, Value>,
    settings: &ResourceServerSettings,
    now: u64,
) -> (Result<Arc<IdentityEnvelope>, Rejection>, Claimed) {
    let claimed = claimed(claims, settings);
    let envelope = match envelope(claims, settings, now) {
        Ok(envelope) => envelope,
        Err(reason) => return (Err(Rejection::new(reason)), claimed),
    };
    let required = &settings.required_scopes;
    if !envelope.has_scopes(required) {
        let required = required.iter().cloned().collect();
        return (Err(Rejection::insufficient_scope(required)), claimed);
    }
    (Ok(Arc::new(envelope)), claimed)
}

/// The verified claims checked against the settings at `now` and mapped to an envelope.
///
/// The envelope's lifetime is the window in which this token is accepted, leeway included:
/// from `nbf` (else `iat`, else the epoch) less the leeway, to `exp` plus the leeway. So an
/// envelope just accepted is always valid at `now`.
pub(crate) fn envelope(
    claims: &Map<String, Value>,
    settings: &ResourceServerSettings,
    now: u64,
) -> Result<IdentityEnvelope, RejectReason> {
    let issuer = string(claims, "iss")?.ok_or(RejectReason::MissingClaim("iss"))?;
    if issuer != settings.issuer {
        return Err(RejectReason::WrongIssuer);
    }
    let audience =
        strings(claims, "aud", Separator::None)?.ok_or(RejectReason::MissingClaim("aud"))?;
    // RFC 8707: the token must name this resource; one minted for another is not ours to honour.
    if !audience.contains(&settings.resource) {
        return Err(RejectReason::WrongAudience);
    }

    let leeway = settings.leeway_secs;
    let expires =
        numeric_date(claims, "exp", Round::Down)?.ok_or(RejectReason::MissingClaim("exp"))?;
    if now >= expires.saturating_add(leeway) {
        return Err(RejectReason::Expired);
    }
    let not_before = numeric_date(claims, "nbf", Round::Up)?;
    let issued_at = numeric_date(claims, "iat", Round::Up)?;
    // A token issued in the future is treated like one not valid yet: its lifetime would
    // otherwise start after `now`.
    let starts = not_before.or(issued_at).unwrap_or(0);
    if starts > now.saturating_add(leeway) {
        return Err(RejectReason::NotYetValid);
    }

    let subject = string(claims, "sub")?
        .filter(|subject| !subject.is_empty())
        .ok_or(RejectReason::MissingClaim("sub"))?;
    let client = match string(claims, &settings.claims.client)? {
        Some(client) => Some(client),
        None => string(claims, "azp")?,
    };
    let groups = strings(claims, &settings.claims.groups, Separator::Space)?.unwrap_or_default();
    let tenant = string(claims, &settings.claims.tenant)?;
    let scopes = scopes(claims)?;

    Ok(IdentityEnvelope::new(EnvelopeParts {
        user: UserId {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        },
        client: client.map(str::to_owned),
        mode: ActingMode::Delegated,
        groups,
        tenant: tenant.map(str::to_owned),
        scopes,
        usable_credentials: BTreeSet::new(),
        forbidden_credentials: BTreeSet::new(),
        lifetime: Some((
            starts.saturating_sub(leeway),
            expires.saturating_add(leeway),
        )),
    }))
}

/// Who verified claims say they are, for logging a rejection that comes after the signature
/// was checked (an expired token, a missing scope). Read leniently: it only labels a log line.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) user: Option<UserId>,
    pub(crate) client: Option<String>,
}

pub(crate) fn claimed(claims: &Map<String, Value>, settings: &ResourceServerSettings) -> Claimed {
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(value)) => Some(value.clone()),
        _ => None,
    };
    let user = match (text("iss"), text("sub")) {
        (Some(issuer), Some(subject)) => Some(UserId { issuer, subject }),
        _ => None,
    };
    Claimed {
        user,
        client: text(&settings.claims.client).or_else(|| text("azp")),
    }
}

/// Scopes from `scope` (a space-separated string, RFC 9068 / RFC 8693) or `scp` (an array, or
/// a space-separated string as some providers write it). When both are present they must
/// agree: taking either one over the other would be a guess.
fn scopes(claims: &Map<String, Value>) -> Result<BTreeSet<String>, RejectReason> {
    let scope = match claims.get("scope") {
        None => None,
        Some(Value::String(scope)) => Some(split_spaces(scope)),
        Some(_) => return Err(RejectReason::InvalidClaim("scope".to_owned())),
    };
    let scp = strings(claims, "scp", Separator::Space)?;
    match (scope, scp) {
        (Some(scope), Some(scp)) if scope != scp => {
            Err(RejectReason::InvalidClaim("scope".to_owned()))
        }
        (Some(scopes), _) | (None, Some(scopes)) => Ok(scopes),
        (None, None) => Ok(BTreeSet::new()),
    }
}

/// A string claim; absent is `None`, any other type (`null` included) rejects.
fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, RejectReason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(RejectReason::InvalidClaim(name.to_owned())),
    }
}

#[derive(Clone, Copy)]
enum Separator {
    /// A single string is one value (`aud`).
    None,
    /// A single string holds values separated by spaces (`groups`, `scp`).
    Space,
}

/// An array of strings, or a single string read per `separator`; absent is `None`.
fn strings(
    claims: &Map<String, Value>,
    name: &str,
    separator: Separator,
) -> Result<Option<BTreeSet<String>>, RejectReason> {
    let invalid = || RejectReason::InvalidClaim(name.to_owned());
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(match separator {
            Separator::None => BTreeSet::from([value.clone()]),
            Separator::Space => split_spaces(value),
        })),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| match value {
                Value::String(value) => Ok(value.clone()),
                _ => Err(invalid()),
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

fn split_spaces(value: &str) -> BTreeSet<String> {
    value
        .split(' ')
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which way a fractional NumericDate is rounded: always towards the shorter lifetime.
#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, a non-negative number.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
    round: Round,
) -> Result<Option<u64>, RejectReason> {
    let invalid = || RejectReason::InvalidClaim(name.to_owned());
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(invalid());
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // Below 2^53 a float is exact and its rounding fits a u64.
        Some(seconds) if seconds.is_finite() && (0.0..9.0e15).contains(&seconds) => {
            let rounded = match round {
                Round::Down => seconds.floor(),
                Round::Up => seconds.ceil(),
            };
            // Exact: checked above to be finite, non-negative and below 2^53.
            Ok(Some(rounded as u64))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests;
