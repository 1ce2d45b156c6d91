//! What more than one fuzz target asserts of the texts Portcullis shows.

/// Whether `c` must never reach a client in a cleaned text: a control character (newline
/// aside), a bidirectional mark, embedding, override or isolate, a zero-width character, a
/// Unicode tag or a variation selector. Written out here rather than taken from the gateway's
/// own list, so that the targets check that list instead of repeating it.
pub fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
            | '\u{e0000}'..='\u{e007f}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}')
}

/// Asserts that `text` is shown cleanly: no hidden character, no padding (no space or blank
/// line at either end, no run of spaces, at most one blank line in a row), and at most `limit`
/// characters.
pub fn assert_clean(text: &str, limit: usize) {
    assert!(!text.chars().any(hidden), "hidden character in {text:?}");
    assert!(
        !text.starts_with([' ', '\n']) && !text.ends_with([' ', '\n']),
        "padding at an end of {text:?}"
    );
    for padding in ["  ", "\n\n\n", " \n", "\n "] {
        assert!(!text.contains(padding), "{padding:?} in {text:?}");
    }
    let length = text.chars().count();
    assert!(
        length <= limit,
        "{length} characters over the limit {limit}"
    );
}
