//! The sealed `requestState` opener, with a fixed key: no text a client makes up opens, whatever
//! it is bound to; a state Portcullis sealed opens to what it sealed, only under the binding it
//! was sealed for, and not once one of its bits is flipped.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::fuzzing::{SealedRound, StateSealer};

fn sealer() -> &'static StateSealer {
    static SEALER: OnceLock<StateSealer> = OnceLock::new();
    SEALER.get_or_init(|| StateSealer::with_key(vec![7; 32]).expect("a 32-byte key"))
}

fuzz_target!(|data: &[u8]| {
    let sealer = sealer();
    let text = String::from_utf8_lossy(data);
    // A state and what it is bound to (user, tool, argument digest), as a retry brings them.
    let (state, bound_to) = text
        .split_once('\n')
        .unwrap_or((&text, "https://issuer.example\nalice\nfiles.write\n0"));
    assert!(
        sealer.open(state, bound_to).is_err(),
        "a made-up state opened"
    );

    let round = SealedRound::Page {
        id: state.to_owned(),
    };
    let sealed = sealer.seal(&round, bound_to);
    assert_eq!(sealer.open(&sealed, bound_to).ok(), Some(round));
    assert!(sealer.open(&sealed, &format!("{bound_to}.")).is_err());
    let mut flipped = sealed.into_bytes();
    let at = data.len() % flipped.len();
    let bit = data.first().map_or(0, |byte| byte % 7);
    if let Some(byte) = flipped.get_mut(at) {
        *byte ^= 1 << bit;
    }
    if let Ok(flipped) = String::from_utf8(flipped) {
        assert!(
            sealer.open(&flipped, bound_to).is_err(),
            "a state with a flipped bit opened"
        );
    }
});
