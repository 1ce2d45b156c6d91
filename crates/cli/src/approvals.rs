//! Approvals decided in a terminal: `portcullis approvals` lists what waits,
//! `portcullis approve ID` and `portcullis deny ID` decide one after showing the whole change
//! request. Both refuse unless a person is at a terminal (stdin and stdout are terminals): an
//! agent's tool that runs commands without one cannot answer for the person. With
//! `[state] backend = "postgres"` they read and decide the ledger the replicas share, in the
//! database the config names (never a file of this machine's, which no replica reads).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use portcullis_config::{Config, StateBackend};
use portcullis_gateway::{DecidedBy, Ledger, Pending, Standing};

/// Runs `work` on the configuration's ledger: the file of its state directory, or with
/// `[state] backend = "postgres"` the database replicas share (connected here, its schema
/// brought up to date as a replica's start would; the ledger waits for it on this thread).
fn with_ledger<T>(
    config: &Config,
    work: impl FnOnce(&Ledger) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if matches!(config.state, StateBackend::Local) {
        return work(&Ledger::beside(&config.evidence.file));
    }
    let runtime = crate::runtime()?;
    let store = runtime
        .block_on(crate::shared_state(config))?
        .context("the shared state's database is not configured")?;
    let _entered = runtime.enter();
    work(&Ledger::shared(store))
}

/// Lists the approvals of the configuration's ledger that are still live.
pub(crate) fn list(config: &Config) -> anyhow::Result<()> {
    with_ledger(config, print_list)
}

fn print_list(ledger: &Ledger) -> anyhow::Result<()> {
    let approvals = ledger.list()?;
    if approvals.is_empty() {
        println!("no approval is waiting ({})", ledger.kept_in());
        return Ok(());
    }
    for approval in approvals {
        println!(
            "{}  {}  {}  {}",
            approval.id,
            standing(&approval.standing),
            approval.tool,
            approval.user
        );
    }
    Ok(())
}

fn standing(standing: &Standing) -> String {
    match standing {
        Standing::Waiting => "waiting".to_owned(),
        Standing::Approved { by, .. } => format!("approved by {by}"),
        Standing::Declined { by, .. } => format!("declined by {by}"),
        Standing::Used { .. } => "used".to_owned(),
    }
}

/// Whether a person is at a terminal: both stdin (where the answer comes from) and stdout
/// (where the request is shown).
fn at_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The waiting approval `id`, shown whole.
fn shown(ledger: &Ledger, id: &str) -> anyhow::Result<Pending> {
    let approval = ledger
        .get(id)?
        .with_context(|| format!("no approval `{id}` is waiting (unknown, or expired)"))?;
    if approval.standing != Standing::Waiting {
        bail!(
            "approval `{id}` is already {}",
            standing(&approval.standing)
        );
    }
    println!("{}\n", approval.request);
    println!("Asked for {} as {}.", approval.tool, approval.user);
    Ok(approval)
}

/// Decides approval `id` after showing it: `approve` only when the person types `approve`.
pub(crate) fn decide(config: &Config, id: &str, approve: bool) -> anyhow::Result<()> {
    let verb = if approve { "approve" } else { "deny" };
    if !at_terminal() {
        bail!(
            "`portcullis {verb}` needs a person at an interactive terminal (stdin and stdout are not both terminals); open the approval page's link in a browser instead"
        );
    }
    with_ledger(config, |ledger| decide_in(ledger, id, approve))
}

/// Shows approval `id` and decides it as the person answers.
fn decide_in(ledger: &Ledger, id: &str, approve: bool) -> anyhow::Result<()> {
    shown(ledger, id)?;
    if approve {
        print!(
            "Type `approve` to let exactly this call run once (anything else leaves it undone): "
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "approve" {
            println!("Not approved: the call does not run.");
            return Ok(());
        }
    }
    ledger.decide(id, approve, DecidedBy::Terminal)?;
    if approve {
        println!("Approved. The identical call, made again by the client, runs once.");
    } else {
        println!("Denied. The call does not run.");
    }
    Ok(())
}

/// How long an enrolment link works.
const ENROL_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// `portcullis approver enroll`: serves a one-time enrolment page on loopback, prints its
/// link on the terminal (only there: whoever opens it enrols a passkey that approves), and
/// returns once a passkey is enrolled or the link expired.
pub(crate) fn enroll(config: &Config, name: &str) -> anyhow::Result<()> {
    if !at_terminal() {
        bail!(
            "`portcullis approver enroll` prints a link that makes whoever opens it an approver, so it runs only at an interactive terminal"
        );
    }
    let file = config.evidence.file.with_file_name("approvers.json");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let origin = url::Url::parse(&format!("http://localhost:{port}"))?;
        let approvers = portcullis_approver::Approvers::open(file.clone(), &origin)?;
        let token = portcullis_approver::enrol::one_time_token()?;
        println!("Open this link in your browser on this machine to enrol a passkey as `{name}` (it works once, for {} min):", ENROL_FOR.as_secs() / 60);
        println!("  {}/enrol/{token}", approvers.origin_on(port));
        let enrolled = portcullis_approver::enrol::serve(listener, approvers, name.to_owned(), token, ENROL_FOR).await?;
        println!("Enrolled `{enrolled}` ({}): approvals on the approval page now need this passkey.", file.display());
        anyhow::Ok(())
    })
}

/// `portcullis approver list`: who can approve on the page.
pub(crate) fn approvers(config: &Config) -> anyhow::Result<()> {
    let file = config.evidence.file.with_file_name("approvers.json");
    let origin = url::Url::parse("http://localhost")?;
    let names = portcullis_approver::Approvers::open(file.clone(), &origin)?.names()?;
    if names.is_empty() {
        println!(
            "nobody is enrolled ({}): run `portcullis approver enroll`",
            file.display()
        );
    }
    for name in names {
        println!("{name}");
    }
    Ok(())
}
