//! Tool search's ranking, summaries and `portcullis.call_tool`'s unwrapping, as data.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use expect_test::{Expect, expect};
use portcullis_config::ToolSearch;
use rmcp::model::{CallToolRequestParams, Tool};
use serde_json::json;

use super::rank::{ToolIndex, summary, terms};
use super::{CALL_TOOL, SearchTool, inner_call, searching};

fn tool(name: &str, description: &str, parameters: &[&str]) -> Tool {
    let properties: serde_json::Map<String, serde_json::Value> = parameters
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": properties});
    let serde_json::Value::Object(schema) = schema else {
        unreachable!()
    };
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema))
}

fn catalog() -> Vec<Tool> {
    vec![
        tool(
            "files.read_text_file",
            "Read the complete contents of a file from the file system as text.",
            &["path", "head", "tail"],
        ),
        tool(
            "files.write_file",
            "Create a new file or completely overwrite an existing file with new content.",
            &["path", "content"],
        ),
        tool(
            "files.list_directory",
            "Get a detailed listing of all files and directories in a specified path.",
            &["path"],
        ),
        tool(
            "files.move_file",
            "Move or rename files and directories.",
            &["source", "destination"],
        ),
        tool(
            "mail.send_message",
            "Send an email message to one or more recipients.",
            &["to", "subject", "body"],
        ),
        tool(
            "github.create_issue",
            "Open a new issue in a GitHub repository.",
            &["owner", "repo", "title", "body"],
        ),
        tool(
            "github.listIssues",
            "List issues of a repository, filtered by state and labels.",
            &["owner", "repo", "state"],
        ),
        tool(
            "jira.delete_ticket",
            "Permanently delete a Jira ticket.",
            &["ticketId"],
        ),
    ]
}

fn check_search(query: &str, expected: Expect) {
    let tools = catalog();
    let index = ToolIndex::new(&tools);
    let found: Vec<String> = index
        .search(query, 3)
        .into_iter()
        .map(|entry| format!("{} {:?}", entry.name, entry.parameters))
        .collect();
    expected.assert_eq(&found.join("\n"));
}

#[test]
fn natural_queries_find_the_tool_that_does_it() {
    check_search(
        "read the contents of a text file",
        expect![[r#"
            files.read_text_file ["path", "head", "tail"]
            files.write_file ["path", "content"]
            files.move_file ["source", "destination"]"#]],
    );
    check_search(
        "email someone a message",
        expect![[r#"mail.send_message ["to", "subject", "body"]"#]],
    );
    check_search(
        "remove a ticket",
        expect![[r#"jira.delete_ticket ["ticketId"]"#]],
    );
    check_search(
        "open issues in the repo",
        expect![[r#"
            github.create_issue ["owner", "repo", "title", "body"]
            github.listIssues ["owner", "repo", "state"]"#]],
    );
    check_search(
        "make a new github issue",
        expect![[r#"
            github.create_issue ["owner", "repo", "title", "body"]
            github.listIssues ["owner", "repo", "state"]
            files.write_file ["path", "content"]"#]],
    );
    check_search(
        "rename a directory",
        expect![[r#"
        files.move_file ["source", "destination"]
        files.list_directory ["path"]"#]],
    );
}

#[test]
fn nothing_matches_nothing() {
    let tools = catalog();
    let index = ToolIndex::new(&tools);
    assert!(index.search("", 5).is_empty());
    assert!(index.search("the of and", 5).is_empty());
    assert!(index.search("kubernetes", 5).is_empty());
    assert!(index.search("file", 0).is_empty());
    assert!(ToolIndex::new(&[] as &[Tool]).search("file", 5).is_empty());
}

#[test]
fn words_are_split_stemmed_and_folded() {
    let all: Vec<String> = terms(
        "listIssues read_text_file Files listing created updates queries boxes status removing HTMLPage",
    )
    .collect();
    expect![[r#"list issu read text fil fil list creat updat query box status delet htmlpag"#]]
        .assert_eq(&all.join(" "));
}

#[test]
fn a_summary_is_the_first_sentence_of_the_first_line_and_bounded() {
    assert_eq!(
        summary("Read a file. Handles text and binary.\nMore here."),
        "Read a file."
    );
    assert_eq!(
        summary("Version 1.2 of the tool"),
        "Version 1.2 of the tool"
    );
    assert_eq!(summary(""), "");
    let long = summary(&"word ".repeat(100));
    assert_eq!(long.chars().count(), 160);
    assert!(long.ends_with("word…"), "{long}");
}

#[test]
fn the_search_tools_exist_only_when_tool_search_is_not_off() {
    let auto = ToolSearch::Auto { above: 40 };
    assert_eq!(SearchTool::named(ToolSearch::Off, CALL_TOOL), None);
    assert_eq!(SearchTool::named(auto, CALL_TOOL), Some(SearchTool::Call));
    assert_eq!(
        SearchTool::named(ToolSearch::On, "portcullis.search_tools"),
        Some(SearchTool::Search)
    );
    assert_eq!(SearchTool::named(ToolSearch::On, "fx.call_tool"), None);
    assert!(!searching(ToolSearch::Off, 10_000));
    assert!(searching(ToolSearch::On, 0));
    assert!(!searching(auto, 40));
    assert!(searching(auto, 41));
}

#[test]
fn call_tool_unwraps_to_the_call_it_names() {
    let outer = |arguments: serde_json::Value| {
        let serde_json::Value::Object(arguments) = arguments else {
            unreachable!()
        };
        let mut request = CallToolRequestParams::new(CALL_TOOL).with_arguments(arguments);
        request.request_state = Some("sealed".to_owned());
        request
    };
    let inner = inner_call(outer(
        json!({"name": "fx.send_message", "arguments": {"to": "bob@example.com"}}),
    ))
    .unwrap();
    assert_eq!(inner.name, "fx.send_message");
    assert_eq!(
        serde_json::Value::Object(inner.arguments.unwrap()),
        json!({"to": "bob@example.com"})
    );
    assert_eq!(inner.request_state.as_deref(), Some("sealed"));
    let bare = inner_call(outer(json!({"name": "fx.echo"}))).unwrap();
    assert!(bare.arguments.is_none());
    for refused in [
        json!({}),
        json!({"name": 3}),
        json!({"name": "fx.echo", "arguments": [1]}),
    ] {
        let error = inner_call(outer(refused.clone())).unwrap_err();
        assert!(error.message.contains(CALL_TOOL), "{refused}: {error:?}");
    }
}
