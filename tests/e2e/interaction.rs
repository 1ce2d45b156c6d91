//! What passes between the person and an upstream during a call, with rmcp's client: the
//! upstream's own questions (labelled with its name, in both eras), progress, and cancellation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction, NumberOrString,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, RequestMetaObject,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext, RoleClient,
};
use rmcp::transport::TokioChildProcess;
use serde_json::json;

use crate::rust_client::{
    client_info, question, request, serve_command, text, tool_names, wait_until_listed,
};
use crate::support::{Config, Scratch, Upstream};

/// A client that answers every question with `accept, confirm=true` and records what it saw.
#[derive(Clone, Default)]
struct Person {
    questions: Arc<Mutex<Vec<String>>>,
    progress: Arc<Mutex<Vec<f64>>>,
    tool_list_changes: Arc<Mutex<usize>>,
}

impl ClientHandler for Person {
    fn get_info(&self) -> ClientConfig {
        client_info(json!({"elicitation": {"form": {}}}), "e2e-person")
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        if let Ok(mut questions) = self.questions.lock() {
            questions.push(question(&request));
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": true})))
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Ok(mut changes) = self.tool_list_changes.lock() {
            *changes += 1;
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.push(params.progress);
        }
    }
}

async fn start(
    config: &std::path::Path,
    person: Person,
    lifecycle: ClientLifecycleMode,
) -> rmcp::service::RunningService<RoleClient, Person> {
    let transport = TokioChildProcess::new(serve_command(config)).unwrap_or_else(|e| panic!("{e}"));
    let client = person
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    wait_until_listed(&client, Duration::from_secs(20)).await;
    client
}

fn fixture_config(scratch: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let work = scratch.sub("work");
    // Unpinned: a test adds a tool at run time and expects it listed, which pinning would
    // quarantine (tests/e2e/pins.rs).
    let fx = Upstream::fixture("fx", &work).pinning("off");
    let config = scratch.config(Config::relay().upstream(fx));
    (config, work)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_question_reaches_the_person_labelled_in_both_eras() {
    for lifecycle in [
        ClientLifecycleMode::Initialize,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    ] {
        let scratch = Scratch::new();
        let (config, _) = fixture_config(&scratch);
        let person = Person::default();
        let client = start(&config, person.clone(), lifecycle.clone()).await;
        // rmcp's client drives input-required rounds through the handler in the stateless era.
        let result = client
            .call_tool(request("fx.ask", json!({"question": "Proceed?"})))
            .await
            .unwrap_or_else(|e| panic!("{lifecycle:?}: {e}"));
        assert_eq!(
            text(&result),
            "answer: accept confirm=true",
            "{lifecycle:?}"
        );
        let questions = person
            .questions
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default();
        assert_eq!(
            questions,
            vec!["[upstream `fx` asks] Proceed?".to_owned()],
            "{lifecycle:?}"
        );
        client.cancel().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_the_caller_and_cancellation_reaches_the_upstream() {
    let scratch = Scratch::new();
    let (config, work) = fixture_config(&scratch);
    let person = Person::default();
    let client = start(&config, person.clone(), ClientLifecycleMode::Initialize).await;

    let mut meta = RequestMetaObject::default();
    meta.set_progress_token(ProgressToken(NumberOrString::String("mine".into())));
    let mut params = request("fx.slow", json!({"ms": 500, "steps": 5}));
    params.meta = Some(meta);
    let result = client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("slow: {e}"));
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let progress = person
        .progress
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0, 5.0]);

    // Abandoning the call sends notifications/cancelled; Portcullis cancels the upstream call.
    let params = request("fx.slow", json!({"ms": 20_000, "steps": 20}));
    let abandoned =
        tokio::time::timeout(Duration::from_millis(700), client.call_tool(params)).await;
    assert!(abandoned.is_err(), "the slow call should still be running");
    let log = work.join("cancelled.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream never saw the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.cancel().await.ok();
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_upstream_tool_is_announced_and_listed_in_both_eras() {
    // Session era: the client is told through notifications/tools/list_changed.
    let scratch = Scratch::new();
    let (config, _) = fixture_config(&scratch);
    let person = Person::default();
    let client = start(&config, person.clone(), ClientLifecycleMode::Initialize).await;
    let before = *person
        .tool_list_changes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let result = client
        .call_tool(request("fx.add_tool", json!({"name": "fresh"})))
        .await
        .unwrap_or_else(|e| panic!("add_tool: {e}"));
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let changes = person.tool_list_changes.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            changes.lock().map(|c| *c > before).unwrap_or(false)
        })
        .await,
        "no tools/list_changed reached the client"
    );
    let names = tool_names(&client).await;
    assert!(names.contains(&"fx.fresh".to_owned()), "{names:?}");
    client.cancel().await.ok();

    // Stateless era: the client holds subscriptions/listen open and hears the change there.
    let scratch = Scratch::new();
    let (config, _) = fixture_config(&scratch);
    let client = start(
        &config,
        Person::default(),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await;
    let mut subscription = client
        .peer()
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .unwrap_or_else(|e| panic!("subscriptions/listen: {e}"));
    client
        .call_tool(request("fx.add_tool", json!({"name": "later"})))
        .await
        .unwrap_or_else(|e| panic!("add_tool: {e}"));
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match subscription.next().await {
                Ok(Some(ServerNotification::ToolListChangedNotification(_))) => return true,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(heard, Ok(true), "no tools list change on the subscription");
    let names = tool_names(&client).await;
    assert!(names.contains(&"fx.later".to_owned()), "{names:?}");
    client.cancel().await.ok();
}
