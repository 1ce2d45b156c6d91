//! `Approvers`: the WebAuthn relying party of this machine's approval pages, over the
//! approvers file. Enrolment adds a passkey; an assertion proves one of them was used.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;
use webauthn_rs::prelude::{
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::ApproverError;
use crate::store::{Approver, Store};

/// How long a person has to answer a ceremony, told to the browser too. A state older than
/// this is refused, so an answer captured long ago cannot be used however long the state was
/// kept.
const CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest approver's name, in characters: it is shown on every approval page.
const MAX_NAME_CHARS: usize = 64;

/// The relying party's name, which the browser and authenticator may show.
const RP_NAME: &str = "Portcullis";

/// The passkeys enrolled on this machine, and the relying party that checks them.
///
/// Every method reads the file afresh, so a passkey enrolled by another process counts at
/// once. The `finish_*` methods do blocking file I/O (a lock, a write, two fsyncs): async
/// code calls them from `spawn_blocking` or accepts a short block.
pub struct Approvers {
    store: Store,
    relying_party: Webauthn,
    origin: Url,
}

impl fmt::Debug for Approvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approvers")
            .field("file", &self.store.path())
            .field("origin", &self.origin.as_str())
            .finish_non_exhaustive()
    }
}

/// The server's half of an enrolment begun by [`Approvers::begin_enrolment`]. Single use:
/// [`Approvers::finish_enrolment`] consumes it. Kept in memory only (its `Debug` shows no
/// challenge).
pub struct Enrolment {
    name: String,
    user_id: Uuid,
    registration: PasskeyRegistration,
    begun: Instant,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The server's half of an assertion begun by [`Approvers::begin_assertion`]. Single use:
/// [`Approvers::finish_assertion`] consumes it, so one challenge approves at most once.
pub struct Assertion {
    authentication: PasskeyAuthentication,
    begun: Instant,
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion").finish_non_exhaustive()
    }
}

impl Approvers {
    /// The passkeys enrolled in `file` (JSON; absent means nobody enrolled yet), for pages
    /// served from `origin` or from any other port of its host.
    ///
    /// The relying party id is `origin`'s host, normally `localhost`, which browsers treat as
    /// a secure context over plain http. The file is read once here, so a corrupt or
    /// unreadable file is reported at start; every later call reads it again.
    pub fn open(file: PathBuf, origin: &Url) -> Result<Self, ApproverError> {
        let relying_party = relying_party(origin)?;
        let store = Store::new(file)?;
        store.read()?;
        Ok(Self {
            store,
            relying_party,
            origin: origin.clone(),
        })
    }

    /// Whether nobody has enrolled a passkey. An unreadable file is an error, never "empty".
    pub fn is_empty(&self) -> Result<bool, ApproverError> {
        Ok(self.store.read()?.approvers.is_empty())
    }

    /// The names of the people with an enrolled passkey, sorted, each once.
    pub fn names(&self) -> Result<Vec<String>, ApproverError> {
        let mut names: Vec<String> = self
            .store
            .read()?
            .approvers
            .into_iter()
            .map(|approver| approver.name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The origin of a page of this relying party served on `port`: the origin given to
    /// [`Approvers::open`] with its port replaced.
    pub fn origin_on(&self, port: u16) -> String {
        let scheme = self.origin.scheme();
        let host = self.origin.host_str().unwrap_or_default();
        format!("{scheme}://{host}:{port}")
    }

    /// The `Host` header of a request for such a page: its host and `port`.
    pub(crate) fn host_on(&self, port: u16) -> String {
        let host = self.origin.host_str().unwrap_or_default();
        format!("{host}:{port}")
    }

    /// Begins enrolling a passkey for `name`: the options for `navigator.credentials.create`
    /// (what [`crate::CEREMONY_JS`]'s `portcullisEnrol` takes) and the state to finish with.
    /// The passkeys already enrolled are excluded, so one authenticator is not enrolled twice.
    pub fn begin_enrolment(&self, name: &str) -> Result<(Value, Enrolment), ApproverError> {
        check_name(name)?;
        let enrolled = self.store.read()?;
        let user_id = enrolled.user_id_of(name).unwrap_or_else(Uuid::new_v4);
        let exclude = enrolled
            .approvers
            .iter()
            .map(|approver| approver.passkey.cred_id().clone())
            .collect();
        let (options, registration) = self
            .relying_party
            .start_passkey_registration(user_id, name, name, Some(exclude))
            .map_err(refused)?;
        let enrolment = Enrolment {
            name: name.to_owned(),
            user_id,
            registration,
            begun: Instant::now(),
        };
        Ok((to_json(&options)?, enrolment))
    }

    /// Checks the browser's answer to `state`'s options and adds the new passkey to the file.
    /// Refused: an expired state, an answer that fails WebAuthn's checks (challenge, origin,
    /// user presence and verification), a passkey already enrolled.
    pub fn finish_enrolment(
        &self,
        state: Enrolment,
        response: &Value,
    ) -> Result<(), ApproverError> {
        check_age(state.begun)?;
        let response: RegisterPublicKeyCredential = from_json(response)?;
        let passkey = self
            .relying_party
            .finish_passkey_registration(&response, &state.registration)
            .map_err(refused)?;
        self.store.update(|enrolled| {
            let known = enrolled
                .approvers
                .iter()
                .any(|approver| approver.passkey.cred_id() == passkey.cred_id());
            if known {
                return Err(ApproverError::AlreadyEnrolled);
            }
            enrolled.approvers.push(Approver {
                name: state.name,
                user_id: state.user_id,
                passkey,
            });
            Ok(())
        })
    }

    /// Begins an assertion by any enrolled passkey: the options for `navigator.credentials.get`
    /// (what `portcullisAssert` takes) and the state to finish with. An error when nobody has
    /// enrolled: there is then nobody who could approve.
    pub fn begin_assertion(&self) -> Result<(Value, Assertion), ApproverError> {
        let enrolled = self.store.read()?;
        if enrolled.approvers.is_empty() {
            return Err(ApproverError::NobodyEnrolled {
                file: self.store.path().display().to_string(),
            });
        }
        let (options, authentication) = self
            .relying_party
            .start_passkey_authentication(&enrolled.passkeys())
            .map_err(refused)?;
        let assertion = Assertion {
            authentication,
            begun: Instant::now(),
        };
        Ok((to_json(&options)?, assertion))
    }

    /// Checks the browser's answer to `state`'s options and returns the name of the person
    /// whose passkey signed it. The passkey API requires user presence and user verification
    /// (a PIN, biometric or device unlock), and a signature counter that went forward; the
    /// stored counter is updated. Refused: an expired state, an answer that fails those
    /// checks, a passkey no longer in the file.
    pub fn finish_assertion(
        &self,
        state: Assertion,
        response: &Value,
    ) -> Result<String, ApproverError> {
        check_age(state.begun)?;
        let response: PublicKeyCredential = from_json(response)?;
        let result = self
            .relying_party
            .finish_passkey_authentication(&response, &state.authentication)
            .map_err(refused)?;
        self.store.update(|enrolled| {
            let approver = enrolled
                .approvers
                .iter_mut()
                .find(|approver| approver.passkey.cred_id() == result.cred_id())
                .ok_or(ApproverError::NotEnrolled)?;
            approver.passkey.update_credential(&result);
            Ok(approver.name.clone())
        })
    }
}

/// The relying party for `origin`: its host is the RP id, and any port of it is accepted,
/// because the approval page may listen on a port chosen at start. The scheme must match, so
/// a page on another scheme of the same host does not count.
fn relying_party(origin: &Url) -> Result<Webauthn, ApproverError> {
    let invalid = |reason: &str| ApproverError::Origin {
        origin: origin.to_string(),
        reason: reason.to_owned(),
    };
    let Some(host) = origin.domain() else {
        return Err(invalid(
            "it has no domain name (WebAuthn needs one, for example `localhost`)",
        ));
    };
    WebauthnBuilder::new(host, origin)
        .map_err(|error| invalid(&error.to_string()))?
        .allow_any_port(true)
        .allow_subdomains(false)
        .rp_name(RP_NAME)
        .timeout(CEREMONY_TIMEOUT)
        .build()
        .map_err(|error| invalid(&error.to_string()))
}

/// A name is shown to people on every approval page and in the file: printable, short.
pub(crate) fn check_name(name: &str) -> Result<(), ApproverError> {
    let invalid = |reason: &str| ApproverError::Name {
        name: name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME_CHARS)
            .collect(),
        reason: reason.to_owned(),
    };
    if name.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(&format!(
            "it is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it has control characters"));
    }
    Ok(())
}

fn check_age(begun: Instant) -> Result<(), ApproverError> {
    if begun.elapsed() > CEREMONY_TIMEOUT {
        return Err(ApproverError::Expired);
    }
    Ok(())
}

fn to_json(options: &impl serde::Serialize) -> Result<Value, ApproverError> {
    serde_json::to_value(options).map_err(|error| ApproverError::Ceremony {
        reason: error.to_string(),
    })
}

/// The browser's answer as the type WebAuthn checks. serde's message is not passed on: it
/// can quote the value at fault, and a message is no place for a signature.
fn from_json<T: DeserializeOwned>(response: &Value) -> Result<T, ApproverError> {
    T::deserialize(response).map_err(|_| ApproverError::Response {
        reason: "it lacks the fields of a WebAuthn credential, or one of them is malformed"
            .to_owned(),
    })
}

fn refused(error: WebauthnError) -> ApproverError {
    ApproverError::Ceremony {
        reason: error.to_string(),
    }
}
