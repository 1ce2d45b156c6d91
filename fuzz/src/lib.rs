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

/// Asserts that `text` is shown cleanly: no hidden character (a tab is spacing, not hidden), no
/// padding that could push words out of view (no run of spaces wider than 32 columns, a tab
/// counting 8; no more than two blank lines in a row), and at most `limit` characters.
pub fn assert_clean(text: &str, limit: usize) {
    assert!(
        !text.chars().any(|c| hidden(c) && c != '\t'),
        "hidden character in {text:?}"
    );
    let mut blank_lines = 0;
    for line in text.split('\n') {
        let mut width = 0;
        for c in line.chars() {
            if c.is_whitespace() {
                width += if c == '\t' { 8 } else { 1 };
                assert!(width <= 32, "a run of spaces wider than 32 columns in {text:?}");
            } else {
                width = 0;
            }
        }
        if line.chars().all(char::is_whitespace) {
            blank_lines += 1;
            assert!(blank_lines <= 2, "more than two blank lines in a row in {text:?}");
        } else {
            blank_lines = 0;
        }
    }
    let length = text.chars().count();
    assert!(
        length <= limit,
        "{length} characters over the limit {limit}"
    );
}
