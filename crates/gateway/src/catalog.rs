//! What an upstream's lists may contain before they reach a client: no name twice, every text
//! cleaned (`hygiene.rs`), and a change announced only when something changed.
//!
//! An upstream that lists one tool name twice (with two definitions) leaves it open which one a
//! call reaches and which one the person reviewed; neither is shown. The same holds for prompts,
//! resources and resource templates.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use portcullis_core::{Hints, Namespacing, UpstreamName};
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::hygiene::{self, Removed};
use crate::upstream::Catalog;

/// An upstream's lists as it sent them, every page read.
#[derive(Debug, Default)]
pub struct Listed {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
}

impl Catalog {
    /// The catalog of what `upstream` listed: each entry renamed for exposure under
    /// `namespacing` (a tool or prompt whose name cannot be exposed is hidden), every name
    /// listed twice dropped, every text cleaned and cut at `text_limit` characters, and each
    /// tool naming one of `others` (the other upstreams' exposed-name prefixes) flagged.
    pub fn from_listed(
        listed: Listed,
        namespacing: Namespacing,
        upstream: &UpstreamName,
        text_limit: usize,
        others: &[String],
    ) -> Catalog {
        let mut catalog = Catalog::default();
        for mut tool in listed.tools {
            match namespacing.expose(upstream, &tool.name) {
                Ok(exposed) => {
                    catalog.tool_names.insert(tool.name.to_string());
                    if let Some(annotations) = &tool.annotations {
                        catalog.hints.insert(
                            tool.name.to_string(),
                            Hints {
                                read_only: annotations.read_only_hint,
                                destructive: annotations.destructive_hint,
                                open_world: annotations.open_world_hint,
                            },
                        );
                    }
                    tool.name = exposed.into();
                    catalog.tools.push(tool);
                }
                Err(error) => {
                    tracing::warn!(%upstream, %error, "tool hidden: its name cannot be exposed")
                }
            }
        }
        for mut prompt in listed.prompts {
            match namespacing.expose(upstream, &prompt.name) {
                Ok(exposed) => {
                    catalog.prompt_names.insert(prompt.name.clone());
                    prompt.name = exposed;
                    catalog.prompts.push(prompt);
                }
                Err(error) => {
                    tracing::warn!(%upstream, %error, "prompt hidden: its name cannot be exposed")
                }
            }
        }
        for mut resource in listed.resources {
            resource.uri = namespacing.expose_uri(upstream, &resource.uri);
            catalog.resources.push(resource);
        }
        for mut template in listed.templates {
            template.uri_template = namespacing.expose_uri(upstream, &template.uri_template);
            catalog.templates.push(template);
        }
        catalog.drop_ambiguous(namespacing, upstream);
        catalog.clean(text_limit, others);
        catalog
    }

    /// Removes every entry whose name (tool, prompt) or URI (resource, template) the upstream
    /// listed more than once, each copy, and logs which.
    pub(crate) fn drop_ambiguous(&mut self, namespacing: Namespacing, upstream: &UpstreamName) {
        let exposed = |local: &str| namespacing.expose(upstream, local).ok();
        let dropped = drop_repeated(&mut self.tools, |tool| tool.name.to_string());
        self.tool_names
            .retain(|local| exposed(local).is_none_or(|name| !dropped.contains(&name)));
        self.hints
            .retain(|local, _| self.tool_names.contains(local));
        report(upstream, "tool", &dropped);
        let dropped = drop_repeated(&mut self.prompts, |prompt| prompt.name.clone());
        self.prompt_names
            .retain(|local| exposed(local).is_none_or(|name| !dropped.contains(&name)));
        report(upstream, "prompt", &dropped);
        let dropped = drop_repeated(&mut self.resources, |resource| resource.uri.clone());
        report(upstream, "resource", &dropped);
        let dropped = drop_repeated(&mut self.templates, |template| {
            template.uri_template.clone()
        });
        report(upstream, "resource template", &dropped);
    }

    /// Whether the client-visible lists are the same as `other`'s.
    pub(crate) fn same_lists(&self, other: &Catalog) -> bool {
        self.tools == other.tools
            && self.prompts == other.prompts
            && self.resources == other.resources
            && self.templates == other.templates
    }
}

impl Catalog {
    /// Cleans every text of the lists (see `hygiene.rs`), and keeps what was removed, by the
    /// exposed name (or URI) of each entry that had anything removed; flags each tool whose
    /// description names another upstream's tools (`others`: their exposed-name prefixes) or
    /// tells the model what to do.
    pub(crate) fn clean(&mut self, limit: usize, others: &[String]) {
        let mut cleaned: BTreeMap<String, Removed> = BTreeMap::new();
        let mut note = |name: String, removed: Removed| {
            if !removed.is_empty() {
                cleaned.insert(name, removed);
            }
        };
        let mut flagged = BTreeMap::new();
        for tool in &mut self.tools {
            note(tool.name.to_string(), hygiene::clean_tool(tool, limit));
            let said = format!(
                "{} {}",
                tool.title.as_deref().unwrap_or_default(),
                tool.description.as_deref().unwrap_or_default()
            );
            if let Some(why) = hygiene::shadowing(&said, others) {
                flagged.insert(tool.name.to_string(), why);
            }
        }
        self.flagged = flagged;
        for prompt in &mut self.prompts {
            note(prompt.name.clone(), hygiene::clean_prompt(prompt, limit));
        }
        for resource in &mut self.resources {
            note(
                resource.uri.clone(),
                hygiene::clean_resource(resource, limit),
            );
        }
        for template in &mut self.templates {
            note(
                template.uri_template.clone(),
                hygiene::clean_template(template, limit),
            );
        }
        self.cleaned = cleaned;
    }

    /// What the upstream's start record says of its lists beside their size: what cleaning
    /// removed, the tools flagged, and what its pins made of them; each part after `; `.
    pub(crate) fn start_notes(&self) -> String {
        let removed = self.removed();
        let mut notes = if removed.is_empty() {
            String::new()
        } else {
            format!("; its lists cleaned: {removed}")
        };
        for (tool, why) in &self.flagged {
            notes.push_str(&format!("; `{tool}` flagged, {why}"));
        }
        if self.review.first_sight > 0 {
            notes.push_str(&format!(
                "; {} definitions pinned at first sight",
                self.review.first_sight
            ));
        }
        if !self.quarantined.is_empty() {
            notes.push_str(&format!(
                "; {} tools quarantined until accepted",
                self.quarantined.len()
            ));
        }
        notes
    }

    /// Everything removed from the lists, summed.
    pub(crate) fn removed(&self) -> Removed {
        let mut all = Removed::default();
        for removed in self.cleaned.values() {
            all.add(*removed);
        }
        all
    }
}

/// Removes every item whose key occurs more than once; returns those keys, in first-seen order.
fn drop_repeated<T, K: Eq + Hash + Clone>(items: &mut Vec<T>, key: impl Fn(&T) -> K) -> Vec<K> {
    let mut counts: HashMap<K, usize> = HashMap::new();
    let mut order = Vec::new();
    for item in items.iter() {
        let count = counts.entry(key(item)).or_insert(0);
        if *count == 1 {
            order.push(key(item));
        }
        *count += 1;
    }
    if order.is_empty() {
        return order;
    }
    items.retain(|item| counts.get(&key(item)).is_some_and(|count| *count == 1));
    order
}

fn report(upstream: &UpstreamName, kind: &str, dropped: &[String]) {
    for name in dropped {
        tracing::warn!(
            %upstream,
            kind,
            name = %name,
            "hidden: the upstream lists this name more than once, so which definition a request would reach is not known"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::drop_repeated;

    #[test]
    fn every_copy_of_a_repeated_key_is_dropped() {
        let mut items = vec!["a", "b", "a", "c", "b", "a", "d"];
        let dropped = drop_repeated(&mut items, |item| item.to_string());
        assert_eq!(dropped, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(items, vec!["c", "d"]);
        let mut unique = vec![1, 2, 3];
        assert!(drop_repeated(&mut unique, |n| *n).is_empty());
        assert_eq!(unique, vec![1, 2, 3]);
    }
}
