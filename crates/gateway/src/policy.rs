//! The live policy: loaded from the files config names (or the shipped ones), swapped whole on
//! reload, and kept as it was when a reload fails.
//!
//! Reload happens on SIGHUP and when a policy or schema file changes (polled: two seconds is
//! fast enough for a person editing a policy and costs one `stat` per file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use portcullis_config::PolicySettings;
use portcullis_policy::{
    PolicyEngine, PolicyError, Problem, SHIPPED_POLICY, SHIPPED_SCHEMA, Source,
};
use tokio_util::sync::CancellationToken;

/// How often policy files are checked for changes.
pub(crate) const POLL: Duration = Duration::from_secs(2);

/// The name the shipped schema and policy are reported under.
const SHIPPED: &str = "<shipped>";

/// Reads and compiles the policies `settings` names; every problem names its file and line.
pub fn load_policy(settings: &PolicySettings) -> Result<PolicyEngine, PolicyError> {
    let unreadable = |path: &Path, error: std::io::Error| {
        PolicyError(vec![Problem {
            file: path.display().to_string(),
            position: None,
            message: format!("cannot read it: {error}"),
        }])
    };
    let schema = match &settings.schema {
        None => Source {
            name: format!("{SHIPPED}/portcullis.cedarschema"),
            text: SHIPPED_SCHEMA.to_owned(),
        },
        Some(path) => Source {
            name: path.display().to_string(),
            text: std::fs::read_to_string(path).map_err(|e| unreadable(path, e))?,
        },
    };
    let mut files = Vec::new();
    if settings.policies.is_empty() {
        files.push(Source {
            name: format!("{SHIPPED}/default.cedar"),
            text: SHIPPED_POLICY.to_owned(),
        });
    }
    for path in policy_files(settings).map_err(|(path, e)| unreadable(&path, e))? {
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
        files.push(Source {
            name: path.display().to_string(),
            text,
        });
    }
    PolicyEngine::load(&schema, &files)
}

/// The policy files config names: files as they are, directories' `*.cedar` in name order.
fn policy_files(settings: &PolicySettings) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    for path in &settings.policies {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| (path.clone(), e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cedar") && p.is_file())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Every file and directory whose change means a reload, with its modification time.
fn fingerprint(settings: &PolicySettings) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut watched: Vec<PathBuf> = settings.schema.iter().cloned().collect();
    watched.extend(settings.policies.iter().cloned());
    if let Ok(files) = policy_files(settings) {
        watched.extend(files);
    }
    watched
        .into_iter()
        .map(|path| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            (path, modified)
        })
        .collect()
}

/// The policy in force, and how to replace it.
pub(crate) struct PolicyStore {
    settings: PolicySettings,
    current: ArcSwap<PolicyEngine>,
    /// Increases by one at each successful reload; decisions and logs name it.
    version: AtomicU64,
}

impl PolicyStore {
    pub(crate) fn new(settings: PolicySettings, engine: PolicyEngine) -> Self {
        Self {
            settings,
            current: ArcSwap::from_pointee(engine),
            version: AtomicU64::new(1),
        }
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<PolicyEngine>> {
        self.current.load()
    }

    /// The policy in force, held: decisions made under it can be told apart from a reload's.
    pub(crate) fn engine(&self) -> Arc<PolicyEngine> {
        self.current.load_full()
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Loads the files again; on any problem the policy in force stays and the log says why.
    /// `Ok` carries the new version, `Err` the problems (the version in force is unchanged).
    pub(crate) fn reload(&self, why: &str) -> Result<u64, String> {
        match load_policy(&self.settings) {
            Ok(engine) => Ok(self.put_in_force(engine, why)),
            Err(problems) => {
                tracing::error!(
                    why,
                    version = self.version(),
                    problems = %problems,
                    "policy reload failed; the previous policy stays in force"
                );
                Err(problems.to_string())
            }
        }
    }

    /// Puts `engine` in force as the next version, which it returns.
    pub(crate) fn put_in_force(&self, engine: PolicyEngine, why: &str) -> u64 {
        let policies = engine.len();
        self.current.store(Arc::new(engine));
        let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(why, policies, version, "policy reloaded");
        version
    }

    /// Reloads on SIGHUP and on file changes until shutdown; `reloaded` runs after each
    /// attempt, with its outcome.
    pub(crate) async fn watch(
        self: Arc<Self>,
        shutdown: CancellationToken,
        reloaded: impl AsyncFn(Result<u64, String>),
    ) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; policy files are still watched");
                None
            }
        };
        let mut seen = fingerprint(&self.settings);
        let mut ticker = tokio::time::interval(POLL);
        loop {
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
                _ = ticker.tick() => {
                    let now = fingerprint(&self.settings);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "a policy file changed"
                }
            };
            reloaded(self.reload(why)).await;
        }
    }
}
