//! Description hygiene, on any text: what a client is shown has no control, bidirectional or
//! invisible character and no padding wide or long enough to hide words, fits the limit (the note saying it was cut included),
//! counts what it removed, and cleaning it again changes nothing; a prompt's text (hidden
//! characters only) likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{assert_clean, hidden};
use portcullis_gateway::fuzzing::{Removed, clean, strip_hidden};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // From the smallest `text_limit` config accepts (64), so that short inputs get cut too.
    let limit = 64 + usize::from(first) * 4;
    let (cleaned, removed) = clean(text, limit);
    assert_clean(&cleaned, limit);
    if removed.cut == 0 {
        assert_eq!(
            text.chars().count() - removed.hidden - removed.padding,
            cleaned.chars().count(),
            "what was removed is not what was counted"
        );
    }
    assert_eq!(
        clean(&cleaned, limit),
        (cleaned.clone(), Removed::default())
    );

    let (visible, _) = strip_hidden(text);
    assert!(
        !visible.chars().any(|c| hidden(c) && c != '\t'),
        "hidden character in {visible:?}"
    );
    assert_eq!(strip_hidden(&visible), (visible.clone(), 0));
});
