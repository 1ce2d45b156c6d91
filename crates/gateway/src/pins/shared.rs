//! The pins in force when replicas share state (`[state] backend = "postgres"`): in the
//! database, one document per upstream, so that a definition accepted through one replica
//! (`portcullis pins accept`, or a person approving a call of it) is in force on every other,
//! and first sight under `tofu` is recorded once, by whichever replica lists the upstream first.
//!
//! The pins file beside the config seeds the database: at start, each upstream it pins that the
//! database has no pins of is recorded from it (so a reviewed file kept in git or a ConfigMap
//! still decides), and the database decides from then on; the file is not written. Every review
//! reads its upstream's pins from the database, and a poll of their versions notices another
//! replica's acceptance and has every listing reviewed again.
//!
//! Fail closed: pins that cannot be read (the database unreachable, a document that does not
//! verify) compare with nothing, so every definition of the upstream is quarantined until they
//! can be read again; a write that fails is an error, and what it would have accepted stays
//! quarantined.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use portcullis_state::{Store, StoredPins};
use serde_json::Value;

use super::file::{self, PinError, Pins, UpstreamPins};

/// The database's pins, as one book reads and writes them.
#[derive(Debug)]
pub(super) struct Shared {
    store: Store,
    /// The pins file's pins when the book was opened: what an upstream the database has no
    /// pins of is compared with (a book that records has seeded the database with them).
    seed: Pins,
    /// Each upstream's version as this book last read or wrote it: another version is another
    /// process's write.
    versions: Mutex<BTreeMap<String, i64>>,
    /// Whether the last read failed: the next one that succeeds has every listing reviewed
    /// again, since what failed was quarantined.
    unreadable: AtomicBool,
}

impl Shared {
    /// The database's pins, seeded first (when `seeding`) with each upstream of `seed` (the
    /// pins file's) that it has no pins of; returns them as the pins in force.
    pub(super) async fn open(
        store: Store,
        seed: Pins,
        seeding: bool,
    ) -> Result<(Self, Pins), PinError> {
        if seeding {
            for (upstream, pins) in &seed.upstreams {
                let seeded = store
                    .pin_first(upstream, &document(pins))
                    .await
                    .map_err(unavailable)?;
                if seeded {
                    tracing::info!(%upstream, "the pins file's pins of the upstream seeded the shared database");
                }
            }
        }
        let stored = store.all_pins().await.map_err(unavailable)?;
        let shared = Self {
            store,
            seed,
            versions: Mutex::default(),
            unreadable: AtomicBool::new(false),
        };
        let pins = shared.in_force(&stored)?;
        for (upstream, seeded) in &shared.seed.upstreams {
            if pins.upstreams.get(upstream) != Some(seeded) {
                // A file changed in git after the database was seeded does not change it.
                tracing::warn!(%upstream, "the pins file's pins of the upstream differ from the shared database's, which are in force; accept a change with `portcullis pins accept`");
            }
        }
        Ok((shared, pins))
    }

    /// `upstream`'s pins as the database holds them now (the seed's if it has none), read on
    /// this thread (`portcullis_state::wait`).
    pub(super) fn upstream(&self, upstream: &str) -> Result<Option<UpstreamPins>, PinError> {
        let read = portcullis_state::wait(self.store.upstream_pins(upstream))
            .map_err(unavailable)
            .and_then(|stored| {
                stored
                    .map(|stored| self.parsed(upstream, &stored))
                    .transpose()
            });
        let stored = self.noting(read)?;
        Ok(stored.or_else(|| self.seed.upstreams.get(upstream).cloned()))
    }

    /// Records `pins` as `upstream`'s first sight unless another process pinned it first:
    /// `None` when recorded, else the pins that were there (and stay).
    pub(super) fn pin_first(
        &self,
        upstream: &str,
        pins: &UpstreamPins,
    ) -> Result<Option<UpstreamPins>, PinError> {
        let recorded = portcullis_state::wait(self.store.pin_first(upstream, &document(pins)))
            .map_err(unavailable)?;
        if recorded {
            return Ok(None);
        }
        match self.upstream(upstream)? {
            Some(theirs) => Ok(Some(theirs)),
            None => Err(PinError::Shared(format!(
                "the pins of upstream `{upstream}` were neither recorded nor found"
            ))),
        }
    }

    /// Changes `upstream`'s pins with `change` under the row's lock (starting from the seed's
    /// when the database has none), and returns `change`'s value and the pins written.
    pub(super) fn change<T>(
        &self,
        upstream: &str,
        change: impl FnOnce(&mut UpstreamPins) -> T,
    ) -> Result<(T, UpstreamPins), PinError> {
        let seed = self.seed.upstreams.get(upstream).cloned();
        let changed = portcullis_state::wait(self.store.change_pins(upstream, |before| {
            let mut pins = match before {
                Some(text) => parse(upstream, text)?,
                None => seed.unwrap_or_default(),
            };
            let value = change(&mut pins);
            Ok::<_, PinError>((document(&pins), (value, pins)))
        }))
        .map_err(unavailable)?;
        let ((value, pins), version) = changed?;
        self.known().insert(upstream.to_owned(), version);
        Ok((value, pins))
    }

    /// The pins in force, read again when another process changed them since this book last
    /// read or wrote them, or when the last read failed: `None` when nothing changed (or the
    /// database still cannot be read: that was reported when it began).
    pub(super) fn reload_if_changed(&self) -> Option<Result<Pins, PinError>> {
        let versions = match portcullis_state::wait(self.store.pins_versions()) {
            Ok(versions) => versions,
            Err(error) => {
                let began = !self.unreadable.swap(true, Ordering::SeqCst);
                return began.then(|| Err(unavailable(error)));
            }
        };
        let was_unreadable = self.unreadable.load(Ordering::SeqCst);
        if !was_unreadable && versions == *self.known() {
            return None;
        }
        let read = portcullis_state::wait(self.store.all_pins())
            .map_err(unavailable)
            .and_then(|stored| self.in_force(&stored));
        Some(self.noting(read))
    }

    /// `stored` (every upstream's) verified, with the seed's pins of every upstream it lacks;
    /// their versions become the ones this book knows.
    fn in_force(&self, stored: &BTreeMap<String, StoredPins>) -> Result<Pins, PinError> {
        let mut pins = self.seed.clone();
        for (upstream, kept) in stored {
            pins.upstreams
                .insert(upstream.clone(), self.parsed(upstream, kept)?);
        }
        *self.known() = stored
            .iter()
            .map(|(upstream, kept)| (upstream.clone(), kept.version))
            .collect();
        Ok(pins)
    }

    /// `kept` verified, its version noted as known.
    fn parsed(&self, upstream: &str, kept: &StoredPins) -> Result<UpstreamPins, PinError> {
        let pins = parse(upstream, &kept.document)?;
        self.known().insert(upstream.to_owned(), kept.version);
        Ok(pins)
    }

    /// `read`, noting whether it failed (see `unreadable`).
    fn noting<T>(&self, read: Result<T, PinError>) -> Result<T, PinError> {
        self.unreadable.store(read.is_err(), Ordering::SeqCst);
        read
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A database error as a pins error (its words never hold the connection string).
fn unavailable(error: portcullis_state::StoreError) -> PinError {
    PinError::Shared(error.to_string())
}

/// One upstream's pins as the database keeps them: compact JSON, keys sorted.
fn document(pins: &UpstreamPins) -> String {
    let value = serde_json::to_value(pins).unwrap_or(Value::Null);
    file::sorted(&value).to_string()
}

/// The pins a document holds, every digest verified as the file's are.
fn parse(upstream: &str, text: &str) -> Result<UpstreamPins, PinError> {
    let corrupt = |reason: String| {
        PinError::Shared(format!(
            "the pins of upstream `{upstream}` are corrupt: {reason}; remove the upstream's row from `upstream_pins` to pin it afresh"
        ))
    };
    // serde_json's messages can quote the text; only the position is passed on.
    let pins: UpstreamPins = serde_json::from_str(text).map_err(|error| {
        corrupt(format!(
            "not a pins document at line {}, column {}",
            error.line(),
            error.column()
        ))
    })?;
    file::verify(upstream, &pins).map_err(corrupt)?;
    Ok(pins)
}
