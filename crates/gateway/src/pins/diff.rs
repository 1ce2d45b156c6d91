//! A readable difference between two definitions: the lines of their pretty-printed JSON that
//! differ (`-` pinned, `+` listed), with two lines of context around each change.

use serde_json::Value;

use super::file::sorted;

/// Lines of context kept around each change.
const CONTEXT: usize = 2;
/// Beyond this many lines on a side, the definitions are shown whole rather than compared line
/// by line (the comparison takes time and memory in the product of the two).
const MAX_LINES: usize = 2_000;

/// The line difference between `before` and `after` (either may be absent), each line
/// starting with `-`, `+` or a space; `…` between parts of the text left out.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> String {
    let lines = |value: Option<&Value>| -> Vec<String> {
        value
            .map(|value| {
                serde_json::to_string_pretty(&sorted(value))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (lines(before), lines(after));
    let operations = if old.len().max(new.len()) > MAX_LINES {
        old.iter()
            .map(|line| Line::Removed(line))
            .chain(new.iter().map(|line| Line::Added(line)))
            .collect()
    } else {
        compare(&old, &new)
    };
    render(&operations)
}

enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The longest common subsequence of lines, walked into same, removed and added lines.
fn compare<'a>(old: &'a [String], new: &'a [String]) -> Vec<Line<'a>> {
    let width = new.len() + 1;
    // common[i * width + j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![0usize; (old.len() + 1) * width];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            let value = if old.get(i) == new.get(j) {
                at(&common, (i + 1) * width + j + 1) + 1
            } else {
                at(&common, (i + 1) * width + j).max(at(&common, i * width + j + 1))
            };
            if let Some(slot) = common.get_mut(i * width + j) {
                *slot = value;
            }
        }
    }
    let mut lines = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                lines.push(Line::Same(a));
                i += 1;
                j += 1;
            }
            (Some(a), Some(_))
                if at(&common, (i + 1) * width + j) >= at(&common, i * width + j + 1) =>
            {
                lines.push(Line::Removed(a));
                i += 1;
            }
            (_, Some(b)) => {
                lines.push(Line::Added(b));
                j += 1;
            }
            (Some(a), None) => {
                lines.push(Line::Removed(a));
                i += 1;
            }
            (None, None) => return lines,
        }
    }
}

fn at(table: &[usize], index: usize) -> usize {
    table.get(index).copied().unwrap_or(0)
}

/// The changed lines with their context; unchanged stretches beyond it become `…`.
fn render(lines: &[Line<'_>]) -> String {
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !matches!(line, Line::Same(_)))
        .map(|(index, _)| index)
        .collect();
    let near_change = |index: usize| {
        changed
            .iter()
            .any(|&c| index + CONTEXT >= c && index <= c + CONTEXT)
    };
    let mut text = String::new();
    let mut skipped = false;
    for (index, line) in lines.iter().enumerate() {
        let (mark, content) = match line {
            Line::Same(content) if !near_change(index) => {
                skipped = true;
                continue;
            }
            Line::Same(content) => (' ', content),
            Line::Removed(content) => ('-', content),
            Line::Added(content) => ('+', content),
        };
        if skipped {
            text.push_str(" …\n");
            skipped = false;
        }
        text.push(mark);
        text.push_str(content);
        text.push('\n');
    }
    if skipped {
        text.push_str(" …\n");
    }
    text
}
