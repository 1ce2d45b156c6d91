-- Delegated grants (each user's OAuth tokens for an upstream) and known recipients, shared by every
-- replica: a grant stored, refreshed or removed through one is what every other uses at its next call.

-- One grant per user (issuer and subject) and upstream. `sealed` is the grant encrypted with the
-- credential store key and bound to these three columns (`PGRNT1` || nonce || ciphertext): the
-- database never holds a token in the clear, and a row moved to another user does not decrypt.
-- A refresh holds the row's lock (`SELECT ... FOR UPDATE`) from reading it to writing the
-- refreshed one, so a rotating refresh token is spent once.
CREATE TABLE delegated_grant (
    issuer text NOT NULL,
    subject text NOT NULL,
    upstream text NOT NULL,
    sealed bytea NOT NULL,
    written_by text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject, upstream)
);

-- The recipients each user has approved a call to (`user_name` is issuer and subject as the
-- gateway writes them), so that a recipient approved through one replica is not "new" on
-- another. Rows are only added: a recipient is known from its first approval on.
CREATE TABLE known_recipient (
    user_name text NOT NULL,
    recipient text NOT NULL,
    known_since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, recipient)
);
