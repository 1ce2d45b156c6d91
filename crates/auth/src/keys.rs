//! The issuer's signing keys (its JWKS), as the keys we are willing to verify with.
//!
//! A key enters the set only when it is an asymmetric signing key we can use: RSA of at least
//! 2048 bits, EC P-256 or P-384, or Ed25519, with a `kid`, not marked for encryption. Each
//! key fixes the algorithms a token may claim for it, so the token's own header never chooses
//! how it is verified (algorithm confusion). Symmetric (`oct`) keys are never loaded: a
//! resource server sharing a secret with its issuer could forge the issuer's tokens.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::RejectReason;

/// The most keys read from one JWKS; providers publish a handful.
const MAX_KEYS: usize = 64;
/// RSA keys below this size are refused (RFC 7518 §3.3 requires 2048 bits).
const MIN_RSA_BITS: usize = 2048;

/// What a key is, which fixes the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn verifies(self, algorithm: Algorithm) -> bool {
        match self {
            Self::Rsa => matches!(
                algorithm,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            Self::EcP256 => algorithm == Algorithm::ES256,
            Self::EcP384 => algorithm == Algorithm::ES384,
            Self::Ed25519 => algorithm == Algorithm::EdDSA,
        }
    }
}

/// One key of the issuer's, ready to verify signatures.
#[derive(Debug)]
pub(crate) struct VerificationKey {
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one: then only that algorithm.
    declared: Option<Algorithm>,
    decoding: DecodingKey,
}

impl VerificationKey {
    /// Checks the signature of `token` made with `algorithm` and returns its claims, unchecked
    /// otherwise: the claims are validated by the caller against its own clock.
    pub(crate) fn verify(
        &self,
        token: &str,
        algorithm: Algorithm,
    ) -> Result<Map<String, Value>, RejectReason> {
        if !self.kind.verifies(algorithm) || self.declared.is_some_and(|alg| alg != algorithm) {
            return Err(RejectReason::KeyMismatch);
        }
        let mut validation = Validation::new(algorithm);
        // INVARIANT: jsonwebtoken checks the signature only. Its claim checks read the system
        // clock and accept several shapes we refuse; `token::envelope` does them all instead.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => Err(match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => RejectReason::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_) => RejectReason::KeyMismatch,
                _ => RejectReason::Malformed,
            }),
        }
    }
}

/// The usable keys of one JWKS, by `kid`, and when it was fetched.
#[derive(Debug)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerificationKey>>,
    pub(crate) fetched_at: Instant,
}

impl KeySet {
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.keys.get(kid).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads a JWKS document. Keys we cannot use are skipped (a provider may publish
    /// encryption keys or algorithms we do not support beside the ones it signs with); a kid
    /// that appears on two usable keys is dropped, since which one is meant is unknowable.
    pub fn parse(body: &[u8], fetched_at: Instant) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document = serde_json::from_slice(body)?;
        if document.keys.len() > MAX_KEYS {
            tracing::warn!(
                n_keys = document.keys.len(),
                "the issuer's key set is long; only the first {MAX_KEYS} keys are read"
            );
        }
        let mut keys = HashMap::new();
        let mut duplicated = Vec::new();
        for value in document.keys.into_iter().take(MAX_KEYS) {
            match usable_key(value) {
                Ok((kid, key)) => match keys.entry(kid) {
                    Entry::Occupied(entry) => duplicated.push(entry.key().clone()),
                    Entry::Vacant(entry) => {
                        entry.insert(Arc::new(key));
                    }
                },
                Err(skipped) => tracing::debug!(
                    kid = ?skipped.kid,
                    why = skipped.why,
                    "skipped a key of the issuer's"
                ),
            }
        }
        for kid in duplicated {
            if keys.remove(&kid).is_some() {
                tracing::warn!(
                    ?kid,
                    "the issuer publishes two keys with one kid; using neither"
                );
            }
        }
        Ok(Self { keys, fetched_at })
    }
}

struct Skipped {
    kid: Option<String>,
    why: &'static str,
}

fn usable_key(value: Value) -> Result<(String, VerificationKey), Skipped> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| Skipped {
        kid: None,
        why: "not a key we can read",
    })?;
    let skip = |why| Skipped {
        kid: jwk.common.key_id.clone(),
        why,
    };
    let kid = jwk.common.key_id.clone().ok_or_else(|| skip("no kid"))?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err(skip("not a signing key")),
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err(skip("not a verification key"));
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err(skip("an unsupported curve")),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err(skip("an unsupported curve")),
        },
        AlgorithmParameters::OctetKey(_) => return Err(skip("a symmetric key")),
        _ => return Err(skip("an unsupported key type")),
    };
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => match Algorithm::try_from(declared) {
            Ok(algorithm) if kind.verifies(algorithm) => Some(algorithm),
            _ => return Err(skip("an algorithm it cannot sign with")),
        },
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| skip("malformed key material"))?;
    if !well_sized(kind, decoding.kind()) {
        return Err(skip("key material of the wrong size"));
    }
    Ok((
        kid,
        VerificationKey {
            kind,
            declared,
            decoding,
        },
    ))
}

/// Checks key sizes up front, so a short RSA modulus or a truncated point is refused when the
/// keys are read rather than at the first token.
fn well_sized(kind: KeyKind, material: &DecodingKeyKind) -> bool {
    match (kind, material) {
        (KeyKind::Rsa, DecodingKeyKind::RsaModulusExponent { n, .. }) => {
            let mut significant = n.iter().skip_while(|byte| **byte == 0);
            match significant.next() {
                Some(first) => {
                    let rest = significant.count();
                    let bits = rest * 8 + (8 - first.leading_zeros() as usize);
                    bits >= MIN_RSA_BITS
                }
                None => false,
            }
        }
        // An uncompressed point: 0x04, then x and y.
        (KeyKind::EcP256, DecodingKeyKind::SecretOrDer(point)) => point.len() == 65,
        (KeyKind::EcP384, DecodingKeyKind::SecretOrDer(point)) => point.len() == 97,
        (KeyKind::Ed25519, DecodingKeyKind::SecretOrDer(point)) => point.len() == 32,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
