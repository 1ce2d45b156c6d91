//! The rungs of the approval ladder past the client's own form: the approval page, opened by
//! the client (URL elicitation) or handed back as a link in a tool result, and the identical
//! retry that finds its approval decided there.
//!
//! The link alone approves nothing: the page asks for the enrolled approver's passkey, and a
//! terminal for `portcullis approve ID`. What the client gets back while an approval waits is
//! a tool error (nothing ran) that names the link and asks for exactly the same call once the
//! person approved; only a call with the same fingerprint, by the same user, claims it, once.

use std::time::{Duration, Instant};

use portcullis_policy::ApprovalRule;
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use rmcp::service::{RequestContext, RoleServer};

use super::CallContext;
use super::asking::{Approval, Asking};
use super::permit::{CallAction, PendingApproval};
use crate::approval::ledger::{DecidedBy, Ledger, LedgerError, NewPending, Pending, Standing};
use crate::approval::quirks::{Rung, quirk};
use crate::approval::{APPROVAL_KEY, Answer, ChangeRequest, Chosen};
use crate::evidence::CallRecord;
use crate::server::{PortcullisServer, declares_form_elicitation, declares_url_elicitation};
use crate::state::SealedRound;

/// How often a call whose client opened the page looks for the person's decision.
const DECISION_POLL: Duration = Duration::from_millis(250);

/// The rungs this request's client can climb.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ladder {
    pub form: bool,
    pub url: bool,
    /// The approval page listens (rungs past the form exist).
    pub page: bool,
}

impl Ladder {
    /// What the client declared on this request, less what its quirk says it does not do.
    pub(super) fn of(context: &RequestContext<RoleServer>, page: bool) -> Self {
        let quirk = context
            .client_info()
            .and_then(|info| quirk(&info.name, &info.version));
        if let Some(quirk) = quirk {
            tracing::info!(client = quirk.name, skipped = ?quirk.skip, evidence = quirk.evidence, "this client is known not to do what it declares; those approval rungs are skipped");
        }
        let skipped = quirk.map_or(&[][..], |quirk| quirk.skip);
        Self {
            form: declares_form_elicitation(context) && !skipped.contains(&Rung::Form),
            url: page && declares_url_elicitation(context) && !skipped.contains(&Rung::Url),
            page,
        }
    }
}

impl PortcullisServer {
    /// Runs `work` on the ledger off the async threads (it reads and writes a locked file, or
    /// waits for the shared database on the thread).
    async fn in_ledger<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, String> {
        let gateway = self.gateway.clone();
        tokio::task::spawn_blocking(move || work(&gateway.approvals.ledger))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    }

    /// The identical retry: an approval already opened for this very action and user, as
    /// the page or a terminal left it. `Err` hands the pending approval back when there is
    /// none, so that the person is asked.
    pub(super) async fn decided_on_page(
        &self,
        call: &CallContext<'_>,
        pending: PendingApproval,
        shown: &CallAction,
        record: &CallRecord,
        asking: &Asking<'_>,
    ) -> Result<Approval, PendingApproval> {
        let (user, fingerprint) = (call.envelope.user().to_string(), asking.fingerprint.clone());
        let found = match self
            .in_ledger(move |ledger| ledger.find(&user, &fingerprint))
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return Err(pending),
            // An unreadable ledger approves nothing, and nothing is asked on top of it.
            Err(message) => return Ok(asking.refused(Answer::Failed(message))),
        };
        Ok(match &found.standing {
            Standing::Approved { by, .. } => {
                self.claim(found.id.clone(), pending, shown, record, asking, by)
                    .await
            }
            Standing::Declined { by, .. } => {
                // A record that cannot be written leaves the refusal as it is (nothing runs).
                let declined = Answer::Declined.as_str();
                let _ = self
                    .record_rung(record, asking, declined, Rung::Pending, Some(by))
                    .await;
                asking.refused(Answer::Declined)
            }
            Standing::Waiting => self.still_pending(call, record, asking, &found).await,
            Standing::Used { .. } => asking.refused(Answer::Failed(
                "its approval was already used by another call".to_owned(),
            )),
        })
    }

    /// Claims the approved approval `id` for this action, once, and turns it into the permit.
    async fn claim(
        &self,
        id: String,
        pending: PendingApproval,
        shown: &CallAction,
        record: &CallRecord,
        asking: &Asking<'_>,
        by: &str,
    ) -> Approval {
        let fingerprint = asking.fingerprint.clone();
        match self
            .in_ledger(move |ledger| ledger.claim(&id, &fingerprint))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return asking.refused(Answer::Failed(
                    "its approval was already used by another call".to_owned(),
                ));
            }
            Err(message) => return asking.refused(Answer::Failed(message)),
        }
        let approved = Answer::Approved(Chosen::ThisCall);
        if let Err(failure) = self
            .record_rung(record, asking, approved.as_str(), Rung::Pending, Some(by))
            .await
        {
            return asking.refused(failure);
        }
        asking.conclude(pending, shown, approved, None)
    }

    /// The rungs past the form: the approval opened in the ledger, the client asked to open
    /// its page when it can, else the link handed back for an identical retry.
    #[expect(
        clippy::too_many_arguments,
        reason = "one approval's parts, passed through"
    )]
    pub(super) async fn ask_on_page(
        &self,
        call: &CallContext<'_>,
        change: &ChangeRequest<'_>,
        pending: PendingApproval,
        shown: &CallAction,
        record: &CallRecord,
        asking: &Asking<'_>,
        ladder: Ladder,
    ) -> Approval {
        let timeout = self.gateway.approvals.timeout;
        if !ladder.page {
            let _ = self
                .record_rung(
                    record,
                    asking,
                    Answer::Unavailable.as_str(),
                    Rung::Form,
                    None,
                )
                .await;
            return asking.refused(Answer::Unavailable);
        }
        let new = (
            asking.fingerprint.clone(),
            call.envelope.user().to_string(),
            call.request.name.to_string(),
            change.full_message(),
            (pending.rule == ApprovalRule::Other).then(|| call.envelope.user().subject.clone()),
        );
        let opened = self
            .in_ledger(move |ledger| {
                let (fingerprint, user, tool, request, not_by) = new;
                ledger.open(NewPending {
                    fingerprint: &fingerprint,
                    user: &user,
                    tool: &tool,
                    request,
                    ttl: timeout,
                    not_by,
                })
            })
            .await;
        let opened = match opened {
            Ok(opened) => opened,
            Err(message) => return asking.refused(Answer::Failed(message)),
        };
        if ladder.url && call.stateless {
            return self.ask_url_stateless(call, record, asking, &opened).await;
        }
        if ladder.url {
            match self.ask_url(call, record, asking, &opened).await {
                Ok(Some(by)) => {
                    return self
                        .claim(opened.id.clone(), pending, shown, record, asking, &by)
                        .await;
                }
                Ok(None) => {}
                Err(refusal) => return asking.refused(refusal),
            }
        }
        self.still_pending(call, record, asking, &opened).await
    }

    /// The client is asked to open the page (URL elicitation) and the call waits for the
    /// person's decision there. `Ok(Some(by))`: approved by that approver; `Ok(None)`: no
    /// decision came (the client did not open it, or nobody decided in time), so the link is
    /// handed back; `Err`: declined, or the asking could not be recorded.
    async fn ask_url(
        &self,
        call: &CallContext<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
        opened: &Pending,
    ) -> Result<Option<String>, Answer> {
        let timeout = self.gateway.approvals.timeout;
        self.record_rung(record, asking, "asked", Rung::Url, None)
            .await?;
        let params = self.page_params(call, &opened.id);
        let started = Instant::now();
        let asked = call.context.peer.create_elicitation(params);
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(result)) if result.action == ElicitationAction::Accept => {}
            Ok(Ok(result)) if result.action == ElicitationAction::Decline => {
                let id = opened.id.clone();
                let _ = self
                    .in_ledger(move |ledger| {
                        ledger.decide(&id, false, DecidedBy::Other("the client"))
                    })
                    .await;
                self.record_rung(record, asking, Answer::Declined.as_str(), Rung::Url, None)
                    .await?;
                return Err(Answer::Declined);
            }
            _ => return Ok(None),
        }
        let left = timeout.saturating_sub(started.elapsed());
        match self.decision(call, &opened.id, left).await {
            Some(Standing::Approved { by, .. }) => Ok(Some(by)),
            Some(Standing::Declined { by, .. }) => {
                self.record_rung(
                    record,
                    asking,
                    Answer::Declined.as_str(),
                    Rung::Url,
                    Some(&by),
                )
                .await?;
                Err(Answer::Declined)
            }
            Some(Standing::Waiting | Standing::Used { .. }) | None => Ok(None),
        }
    }

    /// A stateless client that opens links is asked to open the page with an input-required
    /// round; its retry (sealed to this approval) finds the decision made there.
    async fn ask_url_stateless(
        &self,
        call: &CallContext<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
        opened: &Pending,
    ) -> Approval {
        let round = SealedRound::Page {
            id: opened.id.clone(),
        };
        self.ask_round(
            call,
            record,
            asking,
            (Rung::Url, round),
            self.page_params(call, &opened.id),
        )
        .await
    }

    /// A stateless retry from the page's round: whether the client declined it there (then
    /// the approval is declined, finally, and recorded so).
    pub(super) async fn declined_in_client(
        &self,
        call: &CallContext<'_>,
        id: &str,
        record: &CallRecord,
        asking: &Asking<'_>,
    ) -> bool {
        let declined = call
            .request
            .input_responses
            .as_ref()
            .and_then(|responses| responses.get(APPROVAL_KEY))
            .and_then(|value| serde_json::from_value::<ElicitResult>(value.clone()).ok())
            .is_some_and(|answer| answer.action == ElicitationAction::Decline);
        if !declined {
            return false;
        }
        let id = id.to_owned();
        let _ = self
            .in_ledger(move |ledger| ledger.decide(&id, false, DecidedBy::Other("the client")))
            .await;
        let _ = self
            .record_rung(record, asking, Answer::Declined.as_str(), Rung::Url, None)
            .await;
        true
    }

    /// The URL elicitation that sends the person to approval `id`'s page.
    fn page_params(&self, call: &CallContext<'_>, id: &str) -> ElicitRequestParams {
        ElicitRequestParams::UrlElicitationParams {
            meta: None,
            message: format!(
                "Portcullis asks you to approve `{}` on its approval page, which shows exactly what the call does; approving there takes your passkey.",
                call.request.name
            ),
            url: self.link(id),
            elicitation_id: id.to_owned(),
        }
    }

    /// The person's decision on approval `id`, once there is one within `left`; `None` when
    /// there is none by then, or the client gave up on the call.
    async fn decision(&self, call: &CallContext<'_>, id: &str, left: Duration) -> Option<Standing> {
        let deadline = tokio::time::Instant::now() + left;
        loop {
            let id = id.to_owned();
            match self.in_ledger(move |ledger| ledger.get(&id)).await {
                Ok(Some(found)) if found.standing != Standing::Waiting => {
                    return Some(found.standing);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + DECISION_POLL)) => {}
                () = call.context.ct.cancelled() => return None,
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The link to approval `id` on the page.
    fn link(&self, id: &str) -> String {
        let base = self.gateway.approvals.page.get().map_or("", String::as_str);
        format!("{base}/approvals/{id}")
    }

    /// Not run yet: the tool error that hands the link back and asks for the identical call
    /// once the person approved.
    async fn still_pending(
        &self,
        call: &CallContext<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
        opened: &Pending,
    ) -> Approval {
        if let Err(failure) = self
            .record_rung(record, asking, "pending", Rung::Pending, None)
            .await
        {
            return asking.refused(failure);
        }
        let minutes = opened.expires.saturating_sub(opened.created).div_ceil(60);
        Approval::Pending {
            message: format!(
                "portcullis did not run `{tool}`: it waits for a person's approval, which this client cannot ask for itself. \
                 Show the person this link, where they can read exactly what the call does and approve it with their passkey: {link} \
                 (or, in a terminal: portcullis approve {id}). \
                 Once they have approved, make exactly the same call again (same tool, same arguments): it then runs, once. \
                 No other call is covered, and nothing runs unless they approve within {minutes} min of the first request.",
                tool = call.request.name,
                link = self.link(&opened.id),
                id = opened.id,
            ),
            decision: asking.decision.clone(),
        }
    }
}
