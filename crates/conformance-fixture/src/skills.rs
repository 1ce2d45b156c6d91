//! The skills extension (SEP-2640): one skill, `pdf-processing`, with its `SKILL.md` and one
//! supporting file in a subdirectory, served by `skills/list`, `skills/get`,
//! `resources/directory/read` and `resources/read`. Held in memory: the scenarios need a skill
//! to inspect, not a directory tree on disk.

use rmcp::ErrorData as McpError;
use rmcp::model::{
    GetSkillResult, ListResourcesResult, ListSkillsResult, ReadResourceResult, Skill, sha256_digest,
};
use serde_json::{Value, json};

use crate::rounds::{finished, from_json};

const NAME: &str = "pdf-processing";
const DESCRIPTION: &str = "Extract, fill, and assemble PDF documents";
const SKILL_URI: &str = "skill://pdf-processing/SKILL.md";
const SKILL_DIR: &str = "skill://pdf-processing/";
const REFERENCES_DIR: &str = "skill://pdf-processing/references/";
const FORMS_URI: &str = "skill://pdf-processing/references/FORMS.md";
const MARKDOWN: &str = "text/markdown";
/// The MIME type SEP-2640 gives a directory entry, so clients know to descend.
const DIRECTORY: &str = "inode/directory";
const SKILL_MD: &str = "---\nname: pdf-processing\ndescription: Extract, fill, and assemble PDF documents\n---\n\n\
     Read references/FORMS.md before filling a form.\n";
const FORMS_MD: &str = "# Forms\n\nFill each field, then flatten the document.\n";

/// The skill's files: URI and content.
const FILES: [(&str, &str); 2] = [(SKILL_URI, SKILL_MD), (FORMS_URI, FORMS_MD)];

/// The skill's entry, with the digest and size of each file.
fn skill() -> Result<Skill, McpError> {
    let resources: Vec<Value> = FILES
        .iter()
        .map(|(uri, text)| {
            json!({ "uri": uri, "digest": sha256_digest(text.as_bytes()), "size": text.len() })
        })
        .collect();
    from_json(json!({ "uri": SKILL_URI,
        "frontmatter": { "name": NAME, "description": DESCRIPTION },
        "resources": resources }))
}

/// `skills/list`: the one skill.
pub(crate) fn list() -> Result<ListSkillsResult, McpError> {
    Ok(ListSkillsResult::with_all_items(vec![skill()?]))
}

/// `skills/get`: the skill's entry, or `-32602` for any other URI.
pub(crate) fn get(uri: &str) -> Result<GetSkillResult, McpError> {
    if uri != SKILL_URI {
        return Err(McpError::invalid_params(
            format!("no skill at `{uri}`"),
            None,
        ));
    }
    Ok(GetSkillResult::new(skill()?))
}

/// The resources the skill adds to `resources/list`: its `SKILL.md`, named and described as
/// its frontmatter says.
pub(crate) fn resources() -> Vec<Value> {
    vec![
        json!({ "uri": SKILL_URI, "name": NAME, "description": DESCRIPTION,
        "mimeType": MARKDOWN }),
    ]
}

/// `resources/read` of one of the skill's files, or `None` if `uri` is not one.
pub(crate) fn read(uri: &str) -> Option<Result<ReadResourceResult, McpError>> {
    let (_, text) = FILES.iter().find(|(file, _)| *file == uri)?;
    Some(finished(
        json!({ "contents": [{ "uri": uri, "mimeType": MARKDOWN, "text": text }] }),
    ))
}

/// `resources/directory/read`: the direct children of the skill's directory or of its
/// `references/` subdirectory; `-32602` for anything else, files included.
pub(crate) fn read_directory(uri: &str) -> Result<ListResourcesResult, McpError> {
    let children = match uri.strip_suffix('/').unwrap_or(uri) {
        "skill://pdf-processing" => json!([
            { "uri": SKILL_URI, "name": "SKILL.md", "mimeType": MARKDOWN },
            { "uri": REFERENCES_DIR, "name": "references", "mimeType": DIRECTORY }
        ]),
        "skill://pdf-processing/references" => {
            json!([{ "uri": FORMS_URI, "name": "FORMS.md", "mimeType": MARKDOWN }])
        }
        _ => {
            return Err(McpError::invalid_params(
                format!("`{uri}` is not a directory (try `{SKILL_DIR}`)"),
                None,
            ));
        }
    };
    Ok(ListResourcesResult::with_all_items(from_json(children)?))
}
