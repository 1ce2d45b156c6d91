//! Pagination of `tools/list` and names of dynamic tools.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

fn tools(n_tools: usize) -> Vec<Tool> {
    (0..n_tools)
        .map(|index| trivial_tool(&format!("t{index}"), "test"))
        .collect()
}

fn names(result: &ListToolsResult) -> Vec<String> {
    result
        .tools
        .iter()
        .map(|tool| tool.name.to_string())
        .collect()
}

#[test]
fn without_a_page_size_everything_is_one_page() {
    let result = paginate(tools(3), None, None).unwrap();
    assert_eq!(names(&result), ["t0", "t1", "t2"]);
    assert_eq!(result.next_cursor, None);
    assert!(paginate(tools(3), Some("page-1"), None).is_err());
}

#[test]
fn cursors_walk_every_page_once() {
    let page_size = NonZeroUsize::new(2);
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut n_pages = 0;
    loop {
        let result = paginate(tools(5), cursor.as_deref(), page_size).unwrap();
        n_pages += 1;
        seen.extend(names(&result));
        cursor = result.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(n_pages, 3);
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
}

#[test]
fn an_exact_multiple_has_no_empty_last_page() {
    let first = paginate(tools(4), None, NonZeroUsize::new(2)).unwrap();
    let second = paginate(tools(4), first.next_cursor.as_deref(), NonZeroUsize::new(2)).unwrap();
    assert_eq!(names(&second), ["t2", "t3"]);
    assert_eq!(second.next_cursor, None);
}

#[test]
fn bad_cursors_are_invalid_params() {
    for cursor in ["", "page-", "page-x", "page-5", "page-99", "5", "page--1"] {
        let error = paginate(tools(5), Some(cursor), NonZeroUsize::new(2)).unwrap_err();
        assert_eq!(
            error.code,
            rmcp::model::ErrorCode::INVALID_PARAMS,
            "{cursor}"
        );
    }
}

#[test]
fn dynamic_tool_names() {
    let long = "a".repeat(MAX_TOOL_NAME_LEN);
    let too_long = "a".repeat(MAX_TOOL_NAME_LEN + 1);
    let cases: &[(&str, bool)] = &[
        ("dyn1", true),
        ("a.b-c_d", true),
        (&long, true),
        ("", false),
        (&too_long, false),
        ("has space", false),
        ("slash/name", false),
        ("é", false),
    ];
    for (name, valid) in cases {
        assert_eq!(check_dynamic_tool_name(name).is_ok(), *valid, "{name}");
    }
}

#[test]
fn trivial_tools_echo_or_name_themselves() {
    let mut arguments = rmcp::model::JsonObject::new();
    arguments.insert("text".into(), "hello".into());
    let with_text = CallToolRequestParams::new("extra_1").with_arguments(arguments);
    let result = call_trivial_tool("extra_1", &with_text);
    assert_eq!(
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .unwrap()
            .text,
        "hello"
    );
    let without = CallToolRequestParams::new("extra_1");
    let result = call_trivial_tool("extra_1", &without);
    assert_eq!(
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .unwrap()
            .text,
        "extra_1"
    );
}
