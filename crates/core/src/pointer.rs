//! Argument pointers: where in a tool call's arguments a value lives, as config names it.
//!
//! A pointer is a JSON Pointer (RFC 6901: `/to`, `/headers/authorization`, `~1` for `/` and
//! `~0` for `~` in a key) in which a segment `*` matches every member of an object or every
//! element of an array (`/attachments/*/content`). Parsing is the only thing done here; the
//! crates that hold the JSON walk it.

use std::fmt;

/// One step of a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member by name, or an array element when the name is a decimal index.
    Key(String),
    /// Every member or element.
    Any,
}

/// A parsed argument pointer. `Display` gives back the text config wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentPointer {
    text: String,
    segments: Vec<Segment>,
}

impl ArgumentPointer {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not an argument pointer: it must start with `/` (like `/password`)"
            ));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    key.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => {
                        return Err(format!(
                            "`{text}` is not an argument pointer: `~` must be followed by `0` or `1`"
                        ));
                    }
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for ArgumentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::{ArgumentPointer, Segment};

    fn key(name: &str) -> Segment {
        Segment::Key(name.to_owned())
    }

    #[test]
    fn parses_keys_escapes_and_wildcards() {
        let cases = [
            ("/password", vec![key("password")]),
            ("/a~1b/c~0d", vec![key("a/b"), key("c~d")]),
            (
                "/attachments/*/content",
                vec![key("attachments"), Segment::Any, key("content")],
            ),
            ("/items/0", vec![key("items"), key("0")]),
            ("/", vec![key("")]),
        ];
        for (text, expected) in cases {
            let pointer = ArgumentPointer::parse(text);
            assert_eq!(
                pointer.as_ref().map(|p| p.segments().to_vec()),
                Ok(expected),
                "{text}"
            );
            assert_eq!(pointer.map(|p| p.to_string()), Ok(text.to_owned()));
        }
    }

    #[test]
    fn refuses_what_is_not_a_pointer() {
        for text in ["password", "", "/a~2", "/a~"] {
            assert!(ArgumentPointer::parse(text).is_err(), "{text}");
        }
    }
}
