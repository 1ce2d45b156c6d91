//! A message from an upstream, decoded as rmcp's client decodes it, then what Portcullis makes
//! of it: lists become the upstream's catalog (renamed, names listed twice dropped, texts
//! cleaned, every tool's input schema compiled and checked against arguments), and every
//! answer, tool results and errors included, has the secrets Portcullis holds redacted.
//! A catalog's names are exposed under the upstream's prefix within 128 characters, each once,
//! every one callable and none the upstream listed twice; its texts are shown cleanly; no
//! secret survives redaction.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Namespacing, UpstreamName};
use portcullis_fuzz::assert_clean;
use portcullis_gateway::fuzzing::{ArgumentCheck, Catalog, Listed};
use portcullis_gateway::secrets::Secrets;
use rmcp::model::{JsonRpcMessage, ServerJsonRpcMessage, ServerResult};
use serde_json::json;

/// Short enough that fuzzed texts get cut.
const TEXT_LIMIT: usize = 256;
const SECRET: &str = "fuzz-secret-5b8c1e0f";

struct Fixed {
    upstream: UpstreamName,
    others: Vec<String>,
    check: ArgumentCheck,
    secrets: Secrets,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let secrets = Secrets::default();
        secrets.register("api key of upstream files", SECRET);
        Fixed {
            upstream: UpstreamName::new("files").expect("a valid name"),
            others: vec!["mail.".to_owned()],
            check: ArgumentCheck::default(),
            secrets,
        }
    })
}

/// How many times each name occurs.
fn counts<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

fn check_catalog(listed: Listed) {
    let fixed = fixed();
    let repeated: HashSet<String> = counts(listed.tools.iter().map(|tool| tool.name.as_ref()))
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(name, _)| name.to_owned())
        .collect();
    let catalog = Catalog::from_listed(
        listed,
        Namespacing::Prefixed,
        &fixed.upstream,
        TEXT_LIMIT,
        &fixed.others,
    );
    let mut exposed = HashSet::new();
    for tool in &catalog.tools {
        assert!(tool.name.len() <= 128, "{:?} is too long", tool.name);
        let local = tool
            .name
            .strip_prefix("files.")
            .expect("exposed under the prefix");
        assert!(
            catalog.tool_names.contains(local),
            "{local:?} is not callable"
        );
        assert!(!repeated.contains(local), "{local:?} was listed twice");
        assert!(
            exposed.insert(tool.name.clone()),
            "{:?} is listed twice",
            tool.name
        );
        for text in [tool.title.as_deref(), tool.description.as_deref()]
            .into_iter()
            .flatten()
        {
            assert_clean(text, TEXT_LIMIT);
        }
        // The upstream's schema, compiled and used: an error is a refused call, never a panic.
        let _ = fixed.check.check(tool, None);
        let arguments = json!({"path": "/tmp/a", "n": 1, "tags": ["x"]});
        let _ = fixed.check.check(tool, arguments.as_object());
    }
    assert_eq!(catalog.tool_names.len(), catalog.tools.len());
    assert!(
        catalog
            .hints
            .keys()
            .all(|local| catalog.tool_names.contains(local))
    );
    for prompt in &catalog.prompts {
        assert!(prompt.name.starts_with("files.") && prompt.name.len() <= 128);
        for text in [prompt.title.as_deref(), prompt.description.as_deref()]
            .into_iter()
            .flatten()
        {
            assert_clean(text, TEXT_LIMIT);
        }
    }
    for resource in &catalog.resources {
        assert_clean(&resource.name, TEXT_LIMIT);
    }
    for template in &catalog.templates {
        assert_clean(&template.name, TEXT_LIMIT);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(data) else {
        return;
    };
    if let JsonRpcMessage::Response(response) = &message {
        let listed = match response.result.clone() {
            ServerResult::ListToolsResult(result) => Listed {
                tools: result.tools,
                ..Listed::default()
            },
            ServerResult::ListPromptsResult(result) => Listed {
                prompts: result.prompts,
                ..Listed::default()
            },
            ServerResult::ListResourcesResult(result) => Listed {
                resources: result.resources,
                ..Listed::default()
            },
            ServerResult::ListResourceTemplatesResult(result) => Listed {
                templates: result.resource_templates,
                ..Listed::default()
            },
            _ => Listed::default(),
        };
        check_catalog(listed);
    }
    if let Ok((redacted, _)) = fixed().secrets.redact(message) {
        let shown = serde_json::to_string(&redacted).expect("encodes");
        assert!(
            !shown.contains(SECRET),
            "a secret survived redaction: {shown}"
        );
    }
});
