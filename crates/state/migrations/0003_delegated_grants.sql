-- Delegated grants (each user's OAuth tokens for an upstream), shared by every replica so that a
-- grant stored, refreshed or removed through one is what every other uses at its next call.

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
