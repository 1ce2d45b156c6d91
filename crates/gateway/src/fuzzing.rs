//! What the fuzz targets (`fuzz/`, cargo-fuzz) drive: the code that reads what clients and
//! upstreams send, reachable from outside the crate without becoming its API. Hidden from the
//! documentation; nothing but `fuzz/` uses it.

use rmcp::model::ClientJsonRpcMessage;

pub use crate::arguments::ArgumentCheck;
pub use crate::catalog::Listed;
pub use crate::hygiene::{Removed, clean, strip_hidden};
pub use crate::state::{SealedRound, StateError, StateSealer};
pub use crate::upstream::Catalog;

/// What the stdio transport makes of one line from a client (its newline taken off): the
/// message, `None` for a notification that is ignored, or the JSON-RPC error code and message
/// the line is answered with.
pub fn client_line(line: &[u8]) -> Result<Option<ClientJsonRpcMessage>, (i32, &'static str)> {
    crate::stdio::parse(line).map_err(|bad| bad.answer())
}
