#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

/// A tool (and user) name that would run a script, and reverse what follows it, if it were
/// written into the page as it is.
const HOSTILE: &str = "<script>alert(1)</script>\u{202e}exe.txt\u{200b}";

fn pending(tool: &str, user: &str, request: &str, created: u64) -> Pending {
    Pending {
        id: "00ff".to_owned(),
        fingerprint: "fingerprint".to_owned(),
        user: user.to_owned(),
        tool: tool.to_owned(),
        request: request.to_owned(),
        not_by: None,
        created,
        expires: created + 600,
        standing: Standing::Waiting,
    }
}

/// Nothing of `HOSTILE` reaches the page as markup or as an invisible character.
fn assert_defused(page: &str) {
    assert!(!page.contains("<script"), "{page}");
    assert!(
        !page.contains('\u{202e}') && !page.contains('\u{200b}'),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;[U+202E]exe.txt[U+200B]"),
        "{page}"
    );
}

#[test]
fn a_pending_approval_shows_its_tool_user_and_link_but_never_its_request() {
    let page = render_pending(
        &Ok(vec![pending(
            HOSTILE,
            HOSTILE,
            "arguments: {\"password\": \"[hidden]\", \"body\": \"the quarterly numbers\"}",
            1_000,
        )]),
        1_125,
    );
    assert_defused(&page);
    assert!(
        page.contains("<a href=\"/approvals/00ff\">its page</a>"),
        "{page}"
    );
    assert!(page.contains("2 min") && page.contains("waiting"), "{page}");
    assert!(!page.contains("quarterly"), "{page}");
    assert!(!page.contains("arguments"), "{page}");
    // Nothing here approves: no form, no button.
    assert!(
        !page.contains("<form") && !page.contains("<button"),
        "{page}"
    );
}

#[test]
fn a_four_eyes_approval_says_who_may_not_approve_it() {
    let mut approval = pending("fx.send", "alice", "", 0);
    approval.not_by = Some("alice".to_owned());
    let page = render_pending(&Ok(vec![approval]), 0);
    assert!(
        page.contains("waiting for an approver other than alice"),
        "{page}"
    );
}

#[test]
fn no_pending_approval_and_an_unreadable_ledger_say_so() {
    assert_eq!(render_pending(&Ok(vec![]), 0), "<p>Nothing is waiting.</p>");
    let unreadable = render_pending(&Err(HOSTILE.to_owned()), 0);
    assert!(unreadable.contains("cannot be read"), "{unreadable}");
    assert_defused(&unreadable);
}

#[test]
fn activity_lines_are_escaped_and_newest_first_as_given() {
    let lines = vec![
        format!("2025-01-02 03:04:05.006Z  #2  call_intent  {HOSTILE}  fx.send  deny  -"),
        "2025-01-02 03:04:04.000Z  #1  call_intent  alice  fx.echo  allow  -".to_owned(),
    ];
    let page = render_activity(&Ok(lines));
    assert_defused(&page);
    let (second, first) = (page.find("#2").unwrap(), page.find("#1").unwrap());
    assert!(second < first, "{page}");
    assert_eq!(render_activity(&Ok(vec![])), "<p>No record matches.</p>");
}

#[test]
fn the_filter_form_keeps_what_was_asked_escaped() {
    let query = ActivityQuery {
        user: format!("\"><{HOSTILE}"),
        tool: "fx.echo".to_owned(),
        decision: "deny".to_owned(),
    };
    let form = render_filter(&query);
    assert!(
        form.contains("value=\"&quot;&gt;&lt;&lt;script&gt;"),
        "{form}"
    );
    assert!(form.contains("value=\"fx.echo\""), "{form}");
    assert!(
        form.contains("<option value=\"deny\" selected>deny</option>"),
        "{form}"
    );
    assert!(form.contains("method=\"get\""), "{form}");
    let filter = query.filter();
    assert_eq!(filter.tool.as_deref(), Some("fx.echo"));
    assert_eq!(ActivityQuery::default().filter(), Filter::default());
}

#[test]
fn upstream_health_and_containment_are_escaped() {
    let name = UpstreamName::new("fx").unwrap();
    let health = render_health(&[
        (
            name.clone(),
            UpstreamStatus::Ready {
                tools: 3,
                protocol: "2025-06-18".to_owned(),
            },
        ),
        (
            name.clone(),
            UpstreamStatus::Down {
                reason: HOSTILE.to_owned(),
            },
        ),
    ]);
    assert!(health.contains("<td>ready</td><td>3</td>"), "{health}");
    assert_defused(&health);

    let containment = render_containment(&[
        (
            name.clone(),
            ContainmentReport::Contained {
                description: format!("read and write:\n  /work/{HOSTILE}"),
                digest: "sha256:abc".to_owned(),
            },
        ),
        (name, ContainmentReport::Uncontained),
    ]);
    assert!(containment.contains("<td>contained</td>"), "{containment}");
    assert!(
        containment.contains("profile digest: sha256:abc"),
        "{containment}"
    );
    assert!(containment.contains("NOT CONTAINED"), "{containment}");
    assert_defused(&containment);
}

#[test]
fn ages_read_as_a_person_says_them() {
    assert_eq!(age(59), "59 s");
    assert_eq!(age(61), "1 min");
    assert_eq!(age(3_700), "1 h 1 min");
}
