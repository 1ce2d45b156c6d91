//! The `WWW-Authenticate` header of an upstream's 401 (RFC 9110 §11.6.1, RFC 6750 §3,
//! RFC 9728 §5.1): where its protected resource metadata is, and which scopes it wants.
//!
//! The header is the upstream's words: the parser never fails, keeps only parameters of the
//! first `Bearer` challenge that are well-formed and unambiguous (a parameter given twice is
//! dropped), and stops at the first malformed byte, keeping what came before.

use url::Url;

/// Longest `error` code kept; real ones are a few words.
const MAX_ERROR_LEN: usize = 128;

/// What an upstream's `Bearer` challenge says. Every member is `None` when the header has no
/// `Bearer` challenge, or the parameter is missing, repeated or malformed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `resource_metadata` (RFC 9728 §5.1): where to fetch the protected resource metadata.
    /// An absolute URL; whether it may be fetched is the fetcher's rules' decision.
    pub resource_metadata: Option<Url>,
    /// `scope`: the scopes the request needs, each a valid scope token (RFC 6749 §3.3).
    pub scope: Option<Vec<String>>,
    /// `error` (RFC 6750 §3.1), such as `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
}

/// Parses a `WWW-Authenticate` value. Several header lines may be joined with `, ` first
/// (RFC 9110 §5.3), as several challenges in one line are.
pub fn parse_www_authenticate(header: &str) -> Challenge {
    let challenges = challenges(header);
    let Some((_, params)) = challenges
        .iter()
        .find(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
    else {
        return Challenge::default();
    };
    let single = |name: &str| {
        let mut values = params
            .iter()
            .filter(|(param, _)| param.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    };
    Challenge {
        resource_metadata: single("resource_metadata").and_then(|value| Url::parse(value).ok()),
        scope: single("scope").and_then(scopes),
        error: single("error")
            .filter(|error| !error.is_empty() && error.len() <= MAX_ERROR_LEN)
            .filter(|error| error.bytes().all(is_error_char))
            .map(str::to_owned),
    }
}

/// A space-delimited scope list, if every scope in it is a valid scope token: a list we
/// cannot read entirely is not read at all.
fn scopes(value: &str) -> Option<Vec<String>> {
    let scopes: Vec<String> = value
        .split(' ')
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    (!scopes.is_empty() && scopes.iter().all(|scope| is_scope_token(scope))).then_some(scopes)
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|byte| matches!(byte, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// RFC 6749 §5.2: the characters of `error` and `error_description`.
pub(crate) fn is_error_char(byte: u8) -> bool {
    matches!(byte, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)
}

type Params = Vec<(String, String)>;

/// Every challenge in the header, in order: its scheme and its parameters (none for a
/// `token68` challenge such as `Basic`'s).
fn challenges(header: &str) -> Vec<(String, Params)> {
    let mut cursor = Cursor {
        bytes: header.as_bytes(),
        at: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            break;
        }
        let Some(scheme) = cursor.token() else {
            break;
        };
        let mut params = Vec::new();
        let complete = cursor.params(&mut params);
        challenges.push((scheme, params));
        if !complete {
            break;
        }
    }
    challenges
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(&accept) {
            self.at += 1;
        }
        let taken = self.bytes.get(start..self.at)?;
        (!taken.is_empty()).then(|| String::from_utf8_lossy(taken).into_owned())
    }

    /// RFC 9110 §5.6.2: `token = 1*tchar`.
    fn token(&mut self) -> Option<String> {
        self.take_while(is_tchar)
    }

    /// RFC 9110 §5.6.4: a quoted string, its quoted pairs unescaped. `None` when it is not
    /// terminated.
    fn quoted(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        let mut value = Vec::new();
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'"' => return Some(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => {
                    let escaped = self.peek()?;
                    self.at += 1;
                    value.push(escaped);
                }
                // Control characters are not `qdtext`.
                0x00..=0x08 | 0x0a..=0x1f | 0x7f => return None,
                _ => value.push(byte),
            }
        }
    }

    /// The rest of one challenge after its scheme: a `token68`, or a list of parameters up to
    /// the next challenge's scheme. Returns whether the challenge ended well-formed.
    fn params(&mut self, params: &mut Params) -> bool {
        self.skip_spaces();
        let start = self.at;
        if self.take_while(is_token68_char).is_some() {
            while self.peek() == Some(b'=') {
                self.at += 1;
            }
            self.skip_spaces();
            if self.at_end() || self.peek() == Some(b',') {
                return true;
            }
            self.at = start;
        }
        loop {
            self.skip_separators();
            if self.at_end() {
                return true;
            }
            let start = self.at;
            let Some(name) = self.token() else {
                return false;
            };
            self.skip_spaces();
            if self.peek() != Some(b'=') {
                // A token without `=`: the next challenge's scheme.
                self.at = start;
                return true;
            }
            self.at += 1;
            self.skip_spaces();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.token()
            };
            let Some(value) = value else {
                return false;
            };
            params.push((name, value));
            self.skip_spaces();
            if !self.at_end() && self.peek() != Some(b',') {
                return false;
            }
        }
    }
}

/// RFC 9110 §5.6.2: `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 9110 §11.2: the characters of a `token68` before its trailing `=`s.
fn is_token68_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}
